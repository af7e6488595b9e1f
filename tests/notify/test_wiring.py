"""Delivery inside the real service: the dispatcher runs in the background."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.notify.wiring import attach
from monitor.service import Service
from tests.notify.conftest import add_outbox, open_outbox, payload
from tests.notify.test_mqtt import clear_retained, collect, subscriber

pytestmark = pytest.mark.mqtt


async def test_service_delivers_outbox_rows_to_log_and_mqtt(
    engine: Engine, mqtt_broker: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    host, port = mqtt_broker
    prefix = f"hm-test-{uuid.uuid4().hex[:10]}"
    config = parse_config({"notify": {
        "poll_interval": "0.05s",
        "mqtt": {"enabled": True, "host": host, "port": port, "prefix": prefix},
    }}, env={})
    service = Service(config, engine)
    attach(service, engine, config)
    now = datetime.now(UTC)
    add_outbox(engine, payload(since=now - timedelta(minutes=30)), created_at=now)
    stop = asyncio.Event()
    try:
        async with subscriber(host, port, f"{prefix}/#") as sub:
            with caplog.at_level(logging.WARNING, logger="monitor.alerts"):
                task = asyncio.create_task(service.run(stop))
                got = await collect(sub, 2)  # status "online" and the alert event
                for _ in range(100):
                    if open_outbox(engine) == 0:
                        break
                    await asyncio.sleep(0.05)
                stop.set()
                await asyncio.wait_for(task, 15)
            [offline] = await collect(sub, 1)
    finally:
        await clear_retained(host, port, [f"{prefix}/status"])
    by_topic = {m.topic.value: m.payload for m in got}
    assert by_topic[f"{prefix}/status"] == b"online"
    event = json.loads(by_topic[f"{prefix}/alerts/metoo-spike/metoo"])  # type: ignore[arg-type]
    assert event["state"] == "firing"
    assert offline.topic.value == f"{prefix}/status" and offline.payload == b"offline"
    assert open_outbox(engine) == 0
    assert any(r.getMessage().startswith("alert FIRING metoo-spike #metoo")
               for r in caplog.records)
