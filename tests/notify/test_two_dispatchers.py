"""Two service processes on one PostgreSQL never send an alert twice (issue 11): the
delivery role is an advisory lock, so only one dispatcher works the outbox at a time
and the other takes over when the holder's connection dies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.locks import RoleLock
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from monitor.store.db import make_engine, migrate
from tests.conftest import pg_schema_url
from tests.notify.conftest import add_outbox, open_outbox, payload

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_engines() -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one fresh PostgreSQL schema: two processes' worth of connections."""
    for url in pg_schema_url():
        first, second = make_engine(url), make_engine(url)
        migrate(first)
        yield first, second
        first.dispose()
        second.dispose()


async def test_two_dispatchers_on_one_database_send_each_alert_once(
    pg_engines: tuple[Engine, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = pg_engines
    now = datetime.now(UTC)
    config = parse_config({"notify": {"poll_interval": "0.05s"}}, env={})
    for i in range(12):
        add_outbox(first, payload(tag=f"tag{i}", rule=f"rule{i}",
                                  since=now - timedelta(minutes=30)), created_at=now)
    dispatchers = [Dispatcher(engine, config, build_notifiers(config, engine),
                              role=RoleLock(engine, "dispatcher"))
                   for engine in (first, second)]
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="monitor.alerts"):
        tasks = [asyncio.create_task(d.run(stop)) for d in dispatchers]
        for _ in range(300):
            if open_outbox(first) == 0:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # more passes by both: nothing goes out twice
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    sent = [r.getMessage() for r in caplog.records if r.name == "monitor.alerts"]
    assert open_outbox(first) == 0
    assert len(sent) == 12
    assert sorted({line.split()[2] for line in sent}) == sorted(f"rule{i}" for i in range(12))
    holders = [d.role for d in dispatchers if d.role is not None and d.role.held()]
    assert len(holders) == 1  # exactly one of the two plays the role
