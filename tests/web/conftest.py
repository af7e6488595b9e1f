"""A real uvicorn server on 127.0.0.1 (a free port) over a seeded database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from sqlalchemy import Engine

from monitor.config import Config, parse_config
from monitor.store.schema import alerts
from monitor.store.write import write_batch
from monitor.web.app import create_app
from tests.analyse.seed import bucket_rows, lagged_pair, scored

EVIL_TAG = "x<img src=x onerror=\"window.__pwned=1\">"
EVIL_TEXT = "<script>window.__pwned=2</script> speak up <b>now</b>"


@contextmanager
def serve(engine: Engine, config: Config) -> Iterator[str]:
    """Serve create_app(engine, config) in a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(
        create_app(engine, config), host="127.0.0.1", port=0, log_level="warning",
        lifespan="off", access_log=False,
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass(frozen=True)
class Seeded:
    """What was put in the database, for tests to compare against."""

    now: datetime
    metoo_posts: int
    metoo_mean: float
    notallmen_posts: int
    alpha_total: int


def seed(engine: Engine) -> Seeded:
    """Posts of the last days (metoo, notallmen, a co-tag, markup in text and a tag),
    a lagged alpha→beta pair in the buckets (3 h), and two alerts."""
    now = datetime.now(UTC)
    ago = lambda hours: now - timedelta(hours=hours)  # noqa: E731
    write_batch(engine, [
        scored("m1", ago(30), ("metoo", "howiwillchange"), 0.5, text="I believe survivors"),
        scored("m2", ago(20), ("metoo",), -0.25, text=EVIL_TEXT),
        scored("m3", ago(5), ("metoo", EVIL_TAG), None, text="no score"),
        scored("m4", ago(2), ("metoo", "notallmen"), 0.8, text="listen"),
        scored("n1", ago(4), ("notallmen",), -0.5, text="not all"),
        scored("old", now - timedelta(days=40), ("metoo",), 0.9, text="long ago"),
    ])
    hours = 24 * 20
    first = (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    a, b = lagged_pair(3, hours=hours, seed=5)
    starts = [first + timedelta(hours=h) for h in range(hours)]
    bucket_rows(engine, "alpha", starts, a.tolist())
    bucket_rows(engine, "beta", starts, b.tolist())
    with engine.begin() as conn:
        conn.execute(alerts.insert(), [
            {"fingerprint": "f1", "rule": "metoo-spike", "labels": {"tag": "metoo"},
             "state": "firing", "active_since": ago(3), "fired_at": ago(2), "value": 4.2,
             "summary": "#metoo volume 4.2x its usual level", "annotations": {}},
            {"fingerprint": "f2", "rule": "<b>rule</b>", "labels": {"tag": EVIL_TAG},
             "state": "pending", "active_since": ago(1), "fired_at": None, "value": 1.0,
             "summary": "<img src=x onerror=\"window.__pwned=3\">", "annotations": {}},
        ])
    return Seeded(now=now, metoo_posts=4, metoo_mean=(0.5 - 0.25 + 0.8) / 3,
                  notallmen_posts=2, alpha_total=int(a.sum()))


@pytest.fixture
def web_config() -> Config:
    return parse_config({"hashtags": ["metoo", "notallmen"],
                         "privacy": {"store_text": True}}, env={})


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed(engine)


@pytest.fixture
def base_url(engine: Engine, seeded: Seeded, web_config: Config) -> Iterator[str]:
    with serve(engine, web_config) as url:
        yield url
