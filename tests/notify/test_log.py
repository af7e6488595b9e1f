"""The log notifier: on by default, one line per alert, no post text."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitor.config import Config, parse_config
from monitor.notify.log import LogNotifier
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from tests.notify.conftest import add_outbox, open_outbox, payload, store_posts


def test_defaults_log_on_email_and_mqtt_off() -> None:
    config = Config()
    assert config.notify.log.enabled and not config.notify.email.enabled
    assert not config.notify.mqtt.enabled
    assert [type(n) for n in build_notifiers(config)] == [LogNotifier]


async def test_running_dispatcher_logs_each_alert_once_without_post_text(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    # stored text exists, but the log line is built from the alert payload only
    store_posts(engine, now=now, days=1)
    config = parse_config({"privacy": {"store_text": True},
                           "notify": {"poll_interval": "0.05s"}}, env={})
    dispatcher = Dispatcher(engine, config, build_notifiers(config, engine))
    add_outbox(engine, payload(since=now - timedelta(minutes=40)), created_at=now)
    add_outbox(engine, payload(state="resolved", since=now - timedelta(hours=3),
                               resolved_at=now, summary="#metoo volume back to usual"),
               kind="resolved", created_at=now)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="monitor.alerts"):
        task = asyncio.create_task(dispatcher.run(stop))
        for _ in range(200):
            if open_outbox(engine) == 0:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # more passes: nothing is logged twice
        stop.set()
        await asyncio.wait_for(task, 5)
    lines = [r.getMessage() for r in caplog.records if r.name == "monitor.alerts"]
    assert len(lines) == 2
    firing, resolved = lines
    assert firing.startswith("alert FIRING metoo-spike #metoo value=4.2 threshold=3 baseline=1 "
                             "since=")
    assert "source=mastodon key=" in firing and firing.endswith(": #metoo volume 4.2x usual")
    assert resolved.startswith("alert RESOLVED metoo-spike #metoo value=4.2")
    assert " at=" in resolved
    assert [r.levelno for r in caplog.records if r.name == "monitor.alerts"] == [
        logging.WARNING, logging.INFO]
    assert not any("post " in line or "example.social" in line for line in lines)
