"""Issue 11, overload: a dashboard query past the request budget ends on the server too.

The budget used to answer 503 while PostgreSQL went on with the query for a
client that had given up. Here the query is made slow for real (it waits on a
lock that another connection holds) and the dashboard's budget is 1 s.
"""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import text

from monitor.config import parse_config
from monitor.store.budget import budgeted
from monitor.store.db import make_engine, migrate
from tests.conftest import pg_schema_url
from tests.web.conftest import serve

WAITING = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE :blocker = ANY(pg_blocking_pids(pid)) AND query LIKE '%tag_buckets%'"
)


@pytest.mark.postgres
def test_a_query_past_the_budget_is_cancelled_on_the_server_and_answered_503() -> None:
    for url in pg_schema_url():
        engine = make_engine(url)
        migrate(engine)
        config = parse_config({"database": {"url": url}, "web": {"request_budget": "1s"}},
                              env={})
        blocker = engine.connect()
        try:
            blocker_pid = blocker.execute(text("SELECT pg_backend_pid()")).scalar_one()
            # as slow as we like: every read of tag_buckets waits for this transaction
            blocker.execute(text("LOCK TABLE tag_buckets IN ACCESS EXCLUSIVE MODE"))
            with serve(engine, config) as base, engine.connect() as watch:
                started = time.monotonic()
                r = httpx.get(base + "/api/series", params={"tag": "metoo", "since": "1d"},
                              timeout=30)
                assert r.status_code == 503, r.text
                assert time.monotonic() - started < 5
                # the server ends the query within the budget (plus slack): it does not
                # wait on for a client that has its answer already
                deadline = time.monotonic() + 3
                while watch.execute(WAITING, {"blocker": blocker_pid}).scalar_one():
                    watch.rollback()
                    assert time.monotonic() < deadline, "the dashboard's query runs on"
                    time.sleep(0.1)
        finally:
            blocker.rollback()
            blocker.close()
            engine.dispose()


def test_sqlite_reads_keep_their_engine(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/b.db")
    assert budgeted(engine, 1.0) is engine
    engine.dispose()
