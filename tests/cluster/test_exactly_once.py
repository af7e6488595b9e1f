"""Issue 14: evaluation and dispatch across processes. Each has one runner (an advisory
role that fails over); and even when two processes evaluate the same instant at once (the
moment of a hand-over), every announcement is written once: the outbox's idempotency key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.detect.engine import evaluate
from monitor.locks import RoleLock
from monitor.store.db import make_engine, migrate
from tests.conftest import pg_schema_url
from tests.detect.synth import START
from tests.detect.test_engine import LIFE, alert_rows, config, outbox_rows, seed_shift

pytestmark = pytest.mark.postgres


@pytest.fixture
def two() -> Iterator[tuple[Engine, Engine]]:
    for url in pg_schema_url():
        first, second = make_engine(url), make_engine(url)
        migrate(first)
        yield first, second
        first.dispose()
        second.dispose()


def test_two_processes_evaluating_the_same_instants_announce_each_once(
        two: tuple[Engine, Engine]) -> None:
    first = two[0]
    t0 = START + timedelta(days=1, hours=1)
    seed_shift(first, t0 + timedelta(hours=2))
    cfg = config(LIFE)
    kinds: list[str] = []
    lock = threading.Lock()

    def run(engine: Engine, at: object) -> None:
        try:
            report = evaluate(engine, cfg, at)  # type: ignore[arg-type]
        except SQLAlchemyError:
            return  # the loser of a race may fail; it must never announce twice
        with lock:
            kinds.extend(kind for _, kind in report.announcements)

    for minute in range(0, 125, 5):
        at = t0 + timedelta(minutes=minute)
        threads = [threading.Thread(target=run, args=(engine, at)) for engine in two]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # what is announced is what the outbox holds: once per announcement, whichever
    # process wrote it (both reports may say "firing" in a race: only one row exists)
    keys = [r.idempotency_key for r in outbox_rows(first)]
    assert len(keys) == len(set(keys)) == 2  # firing, then one repeat an hour later
    assert [r.kind for r in outbox_rows(first)] == ["firing", "repeat"]
    assert set(kinds) == {"firing", "repeat"}
    assert len(alert_rows(first)) == 1


def test_the_evaluator_role_fails_over_to_the_other_process(two: tuple[Engine, Engine]) -> None:
    first, second = two
    a, b = RoleLock(first, "evaluator"), RoleLock(second, "evaluator")
    assert a.held() and not b.held()
    assert RoleLock.held_roles(first) == ["evaluator"] and RoleLock.held_roles(second) == []
    assert a._conn is not None
    a._conn.invalidate()  # the holder's connection dies (as with kill -9)
    a._conn = None
    assert b.held()
    assert RoleLock.held_roles(second) == ["evaluator"]
    assert not a.held()  # the old holder stands by now
