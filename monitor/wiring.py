"""Assemble the whole service: collection, then detection, notification and the dashboard.

``Service`` (monitor/service.py) runs sources → enrich → store; this module
hooks the later stages onto it, so each stage stays unaware of the others.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.config import Config
from monitor.service import Service

__all__ = ["DETECT_EVERY", "build_service"]

log = logging.getLogger("monitor.wiring")

# Rules are evaluated every minute: a new 5-minute bucket is seen within a
# minute of closing, and evaluating an instant twice changes nothing.
DETECT_EVERY = timedelta(minutes=1)


def build_service(config: Config, engine: Engine) -> Service:
    """A Service with detection, the notification dispatcher and the dashboard attached."""
    from monitor.detect.engine import evaluate
    from monitor.locks import RoleLock
    from monitor.notify.wiring import attach
    from monitor.privacy_jobs import retention_ages, retention_job

    service = Service(config, engine)
    if config.rules:
        # one evaluator per database (PostgreSQL advisory lock; SQLite has the run lock)
        evaluator = RoleLock(engine, "evaluator")

        async def detect() -> None:
            if await asyncio.to_thread(evaluator.held):
                # service.config: the followed tags as changed at run time (`monitor tags`)
                await asyncio.to_thread(evaluate, engine, service.config, datetime.now(UTC))

        service.add_periodic("detect", DETECT_EVERY, detect)
    ages = retention_ages(config)
    if ages.any:
        # privacy.retention: clear text/authors and delete old rows, batch by batch; in
        # one process of a cluster at a time (PostgreSQL advisory lock; SQLite: always)
        retention = RoleLock(engine, "retention")
        job = retention_job(config, engine, service.exclusive, service.clock)

        async def retain() -> None:
            if await asyncio.to_thread(retention.held):
                await job()

        service.add_periodic("retention", config.privacy.retention.every, retain)
    attach(service, engine, config)
    if config.web.enabled:
        from monitor.web.server import serve

        service.add_background("web", lambda: serve(engine, config))
    return service
