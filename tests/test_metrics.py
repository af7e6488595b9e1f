"""Prometheus figures: write latency observed in-process, the rest read from the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import generate_latest
from sqlalchemy import Engine

from monitor.metrics import build_registry, observe_write
from monitor.store.db import make_engine
from monitor.store.schema import outbox


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in scrape")


def test_write_latency_and_outbox_depth(engine: Engine) -> None:
    registry = build_registry(engine)
    before = sample(generate_latest(registry).decode(), "monitor_bucket_write_seconds_count")
    with observe_write():
        pass
    with engine.begin() as conn:
        conn.execute(outbox.insert(), [
            {"idempotency_key": f"k{i}", "kind": "firing", "payload": {},
             "created_at": datetime.now(UTC)}
            for i in range(3)])
    text = generate_latest(registry).decode()
    assert sample(text, "monitor_bucket_write_seconds_count") == before + 1
    assert sample(text, "monitor_outbox_depth") == 3.0
    assert sample(text, "monitor_store_up") == 1.0


def test_unreachable_store_is_reported_not_raised(tmp_path: Path) -> None:
    # a directory where the database file should be: every query fails
    (tmp_path / "db").mkdir()
    registry = build_registry(make_engine(f"sqlite:///{tmp_path}/db"))
    text = generate_latest(registry).decode()
    assert sample(text, "monitor_store_up") == 0.0
    assert "monitor_outbox_depth " not in text
