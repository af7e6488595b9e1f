"""Issue 11: logs that help in an outage — one line when the database goes, one when it
is back; a poll that runs long is one line per job, not a warning per tick."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sqlalchemy import Engine, text

from monitor.backoff import Backoff
from monitor.config import parse_config
from monitor.notify.outbox import Dispatcher
from monitor.outage import DatabaseOutage, LongPollFilter
from monitor.service import Service
from monitor.store.db import make_engine

# a PostgreSQL URL where nothing listens: every connect is refused, at once
DOWN = "postgresql://monitor@127.0.0.1:9/monitor"


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records
            if r.name.startswith("monitor")]


async def test_a_database_outage_is_one_line_then_one_line_when_it_is_back(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    down = make_engine(DOWN)
    current = {"engine": down}

    def touch() -> None:
        with current["engine"].connect() as conn:
            conn.execute(text("SELECT 1"))

    async def job() -> None:
        await asyncio.to_thread(touch)

    service = Service(parse_config({}, env={}), engine)
    service.outage = DatabaseOutage(Backoff(0.1, 0.2))
    service.add_periodic("probe", __import__("datetime").timedelta(seconds=0.02), job)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.sleep(1.5)  # ~75 ticks with the database down
    current["engine"] = engine
    deadline = time.monotonic() + 10
    while service.outage.down:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    stop.set()
    await task
    down.dispose()
    lines = [line for line in _lines(caplog) if not line.startswith("DEBUG")]
    unreachable = [line for line in lines if "database unreachable since" in line]
    back = [line for line in lines if "database back after" in line]
    assert len(unreachable) == 1 and "retrying every" in unreachable[0]
    assert len(back) == 1
    assert not [line for line in lines if "probe failed" in line]
    assert "Traceback" not in caplog.text


async def test_the_dispatcher_logs_no_traceback_in_an_outage(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    down = make_engine(DOWN)
    config = parse_config({"notify": {"poll_interval": "0.02s"}}, env={})
    outage = DatabaseOutage(Backoff(0.05, 0.1))
    dispatcher = Dispatcher(down, config, [], outage=outage)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    await asyncio.sleep(1.0)
    stop.set()
    await task
    down.dispose()
    assert outage.failures >= 2  # it kept retrying, with backoff
    lines = _lines(caplog)
    assert len(lines) == 1 and "database unreachable since" in lines[0], lines
    assert not any(r.exc_info for r in caplog.records)


def test_statement_errors_are_not_an_outage() -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    outage = DatabaseOutage()
    assert not outage.failed(ProgrammingError("SELECT x", {}, Exception("no such column")))
    assert not outage.failed(OperationalError("INSERT", {}, Exception("database is locked")))
    assert not outage.down


def test_a_long_poll_is_one_line_per_job(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    ours = logging.getLogger("monitor.service")
    flt = LongPollFilter(ours)
    scheduler_log.addFilter(flt)
    try:
        for job in ["poll mastodon a#metoo"] * 5 + ["poll mastodon b#metoo"] * 3:
            # what APScheduler 3 logs on every skipped tick
            scheduler_log.warning('Execution of job "%s" skipped: maximum number of running '
                                  'instances reached (%d)', job, 1)
        scheduler_log.warning("something else")
    finally:
        scheduler_log.removeFilter(flt)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "poll mastodon a#metoo runs longer than its interval; its next ticks are skipped until "
        "it ends (said once per job)",
        "poll mastodon b#metoo runs longer than its interval; its next ticks are skipped until "
        "it ends (said once per job)",
        "something else",
    ]


def test_a_missing_table_is_not_an_outage() -> None:
    from sqlalchemy.exc import OperationalError

    outage = DatabaseOutage()
    assert not outage.failed(OperationalError("SELECT", {}, Exception("no such table: posts")))
    assert outage.failed(OperationalError("connect", {}, Exception(
        'connection to server at "127.0.0.1", port 9 failed: Connection refused')))
