"""Wire delivery into the running service (the lead calls :func:`attach` once).

Kept apart from :mod:`monitor.service` on purpose: notify only needs the two
extension points, so it depends on a small protocol, not on the service.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Engine

from monitor.config import Config
from monitor.errors import NotifyError
from monitor.locks import RoleLock
from monitor.notify.mqtt import MqttNotifier, publish_tag_states
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from monitor.store.schema import BUCKET_SECONDS

__all__ = ["ServiceHooks", "attach"]

log = logging.getLogger("monitor.notify")


class ServiceHooks(Protocol):
    def add_periodic(self, name: str, interval: timedelta,
                     fn: Callable[[], Awaitable[None]]) -> None: ...

    def add_background(self, name: str, factory: Callable[[], Awaitable[None]]) -> None: ...


def attach(service: ServiceHooks, engine: Engine, config: Config) -> Dispatcher:
    """Run the dispatcher in the background; publish MQTT tag state once per bucket."""
    notifiers = build_notifiers(config, engine)
    dispatcher = Dispatcher(engine, config, notifiers, role=RoleLock(engine, "dispatcher"),
                            outage=getattr(service, "outage", None))
    service.add_background("notify", dispatcher.run)
    mqtt = next((n for n in notifiers if isinstance(n, MqttNotifier)), None)
    if mqtt is not None:
        publisher = mqtt.publisher

        async def tag_state() -> None:
            try:
                await publish_tag_states(publisher, engine, config)
            except NotifyError as exc:  # only the newest state matters: try next bucket
                log.warning("mqtt tag state not published: %s", exc)

        service.add_periodic("mqtt-tag-state", timedelta(seconds=BUCKET_SECONDS), tag_state)
    return dispatcher
