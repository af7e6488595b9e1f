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
    from monitor.notify.wiring import attach

    service = Service(config, engine)
    if config.rules:

        async def detect() -> None:
            await asyncio.to_thread(evaluate, engine, config, datetime.now(UTC))

        service.add_periodic("detect", DETECT_EVERY, detect)
    attach(service, engine, config)
    if config.web.enabled:
        from monitor.web.server import serve

        service.add_background("web", lambda: serve(engine, config))
    return service
