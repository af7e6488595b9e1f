"""Reads of the service's own state: stream health, the ping, alerts, the outbox depth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from monitor.models import StreamKey
from monitor.store.alerts import firing_counts, recent_alerts
from monitor.store.db import make_engine
from monitor.store.health import database_answers, read_status
from monitor.store.schema import alerts
from monitor.store.write import record_failure, write_batch

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
MASTO = StreamKey("mastodon", "mastodon.example", "metoo")
BSKY = StreamKey("bluesky-search", "api.bsky.app", "metoo")


def test_read_status_of_chosen_sources(engine: Engine) -> None:
    write_batch(engine, [], stream=MASTO, now=NOW)
    record_failure(engine, BSKY, "bluesky-search: HTTP 502", now=NOW)
    assert [s.source for s in read_status(engine)] == ["bluesky-search", "mastodon"]
    # the flatline rule reads only the sources it watches
    [masto] = read_status(engine, sources=["mastodon"])
    assert masto.last_success_at == NOW and not masto.failing
    [bsky] = read_status(engine, sources=["bluesky-search"])
    assert bsky.failing and bsky.fetch_errors == 1 and bsky.last_error == "bluesky-search: HTTP 502"


def test_database_answers_says_whether_the_probe_can_rely_on_the_store(
    engine: Engine, tmp_path: Path
) -> None:
    assert database_answers(engine)
    (tmp_path / "db").mkdir()  # a directory where the database file should be
    broken = make_engine(f"sqlite:///{tmp_path}/db")
    assert not database_answers(broken)
    broken.dispose()


def test_recent_alerts_by_state_newest_first_and_firing_counts(engine: Engine) -> None:
    ago = lambda hours: NOW - timedelta(hours=hours)  # noqa: E731
    rows = [
        ("f1", "spike", "firing", ago(5), ago(4)),
        ("f2", "spike", "firing", ago(3), ago(1)),
        ("f3", "tone", "firing", ago(2), ago(2)),
        ("f4", "spike", "pending", ago(1), None),
        ("f5", "tone", "resolved", ago(9), ago(8)),
    ]
    with engine.begin() as conn:
        conn.execute(alerts.insert(), [
            {"fingerprint": fp, "rule": rule, "labels": {"tag": "metoo"}, "state": state,
             "active_since": since, "fired_at": fired, "value": 1.0, "summary": fp,
             "annotations": {}}
            for fp, rule, state, since, fired in rows])
    # the dashboard's "active": firing and pending, the latest to fire (or start) first
    active = recent_alerts(engine, ["firing", "pending"])
    assert [a.fingerprint for a in active] == ["f4", "f2", "f3", "f1"]
    assert [a.fingerprint for a in recent_alerts(engine, None, limit=2)] == ["f4", "f2"]
    assert [a.state for a in recent_alerts(engine, ["resolved"])] == ["resolved"]
    assert active[0].labels == {"tag": "metoo"}
    assert firing_counts(engine) == {"spike": 2, "tone": 1}
