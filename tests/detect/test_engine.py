"""Rules, lifecycle, silences, inhibition and the outbox against the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from monitor.config import Config, parse_config
from monitor.detect.engine import evaluate
from monitor.detect.settings import SpikeRule
from monitor.detect.silences import add_silence, expire_silence, list_silences
from monitor.store.alerts import list_alerts
from monitor.store.db import make_engine
from monitor.store.schema import alerts, outbox

from .synth import BUCKET, START, seasonal_counts, seed_buckets, seed_health, seed_posts, usual

DAY15 = START + timedelta(days=15)


def config(*rules: dict[str, Any], hashtags: list[str] | None = None) -> Config:
    return parse_config({"hashtags": hashtags or ["metoo"], "rules": list(rules)}, env={})


def outbox_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)))


def alert_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(alerts).order_by(alerts.c.id)))


SPIKE = {"name": "metoo-spike", "kind": "spike", "labels": {"severity": "page"}}


def test_daily_seasonality_alone_fires_nothing(engine: Engine) -> None:
    seed_buckets(engine, "metoo", seasonal_counts(16))
    cfg = config(SPIKE)
    for hour in range(0, 24, 2):  # across a whole day, quiet night to busy evening
        report = evaluate(engine, cfg, DAY15 + timedelta(hours=hour, minutes=1))
        assert [o.state for o in report.outcomes] == ["inactive"]
    assert outbox_rows(engine) == []


def test_an_injected_spike_fires_within_two_buckets_and_is_announced_once(engine: Engine) -> None:
    counts = seasonal_counts(16)
    onset = DAY15 + timedelta(hours=14)
    counts = [(at, n + 15 * usual(at)) if onset <= at < onset + 12 * BUCKET else (at, n)
              for at, n in counts]
    seed_buckets(engine, "metoo", counts)
    cfg = config(SPIKE)
    assert not evaluate(engine, cfg, onset).firing  # the spike's bucket is not complete yet
    fired_at = None
    for k in range(1, 3):  # after the first, then the second spike bucket completes
        report = evaluate(engine, cfg, onset + k * BUCKET + timedelta(seconds=5))
        if report.firing:
            fired_at = k
            break
    assert fired_at is not None and fired_at <= 2
    rows = outbox_rows(engine)
    assert [r.kind for r in rows] == ["firing"]
    payload = rows[0].payload
    assert payload["rule"] == "metoo-spike" and payload["kind"] == "spike"
    assert payload["labels"] == {"severity": "page", "tag": "metoo"}
    assert payload["state"] == "firing" and payload["value"] > SpikeRule(
        name="x").factor * payload["baseline"]
    assert "x the usual" in payload["summary"] and payload["fired_at"]
    assert "_notify_seq" not in payload["annotations"]
    # later evaluations while it keeps firing add nothing
    evaluate(engine, cfg, onset + 5 * BUCKET)
    assert len(outbox_rows(engine)) == 1


def test_a_young_tag_reports_insufficient_history_and_does_not_fire(engine: Engine) -> None:
    counts = seasonal_counts(0.4, start=DAY15 - timedelta(days=0.4))  # < min_history (12 h)
    counts[-1] = (counts[-1][0], 5000.0)
    seed_buckets(engine, "metoo", counts)
    report = evaluate(engine, config(SPIKE), DAY15 + timedelta(seconds=1))
    assert not report.firing
    assert "insufficient history" in report.outcomes[0].summary
    assert outbox_rows(engine) == []


SENTIMENT = {"name": "tone", "kind": "sentiment_shift", "window": "1h", "baseline": "1d",
             "threshold": 0.3, "min_scored": 30}


def test_sentiment_drop_with_enough_posts_fires(engine: Engine) -> None:
    now = DAY15
    seed_buckets(engine, "metoo", [(now - timedelta(days=1) + i * BUCKET, 20) for i in range(276)],
                 compound=0.4, scored_share=1.0)
    seed_buckets(engine, "metoo", [(now - timedelta(hours=1) + i * BUCKET, 20) for i in range(12)],
                 compound=-0.3, scored_share=1.0)
    report = evaluate(engine, config(SENTIMENT), now)
    assert [o.state for o in report.outcomes] == ["firing"]
    payload = outbox_rows(engine)[0].payload
    assert payload["value"] == pytest.approx(-0.3) and payload["baseline"] == pytest.approx(0.4)
    assert payload["annotations"]["scored"] == 240


def test_sentiment_drop_with_too_few_posts_does_not_fire(engine: Engine) -> None:
    now = DAY15
    seed_buckets(engine, "metoo", [(now - timedelta(days=1) + i * BUCKET, 20) for i in range(276)],
                 compound=0.4, scored_share=1.0)
    # five angry posts at night
    seed_buckets(engine, "metoo", [(now - timedelta(minutes=30), 5)], compound=-0.9,
                 scored_share=1.0)
    report = evaluate(engine, config(SENTIMENT), now)
    assert not report.firing and outbox_rows(engine) == []
    assert "too few scored posts" in report.outcomes[0].summary


COTAG = {"name": "cotags", "kind": "emerging_cotag", "window": "6h", "baseline": "2d",
         "min_share": 0.1, "growth": 3, "min_posts": 10}


def test_cotag_emergence_fires_once_and_names_the_tag(engine: Engine) -> None:
    now = DAY15
    base = [(now - timedelta(days=2) + i * timedelta(minutes=10), ["metoo"]) for i in range(250)]
    base += [(now - timedelta(days=1, hours=i), ["metoo", "howiwillchange"]) for i in range(2)]
    recent = [(now - timedelta(hours=6) + i * timedelta(minutes=3), ["metoo"]) for i in range(100)]
    recent += [(now - timedelta(hours=3) + i * timedelta(minutes=3), ["metoo", "howiwillchange"])
               for i in range(40)]
    recent += [(now - timedelta(hours=2), ["metoo", "news"])]  # too small to matter
    seed_posts(engine, base + recent, "p")
    cfg = config(COTAG, hashtags=["metoo"])
    report = evaluate(engine, cfg, now)
    assert [(o.labels.get("cotag"), o.state) for o in report.firing] == [
        ("howiwillchange", "firing")]
    evaluate(engine, cfg, now + timedelta(minutes=5))
    rows = outbox_rows(engine)
    assert [r.kind for r in rows] == ["firing"]
    assert rows[0].payload["labels"]["cotag"] == "howiwillchange"
    assert "#howiwillchange" in rows[0].payload["summary"]
    assert rows[0].payload["value"] == pytest.approx(40 / 141, abs=1e-6)  # 141 #metoo posts in 6h


FLATLINE = {"name": "dead-stream", "kind": "flatline", "silent_for": "30m"}


def test_flatline_fires_when_a_stream_goes_silent_and_resolves_when_it_returns(
    engine: Engine,
) -> None:
    now = DAY15
    seed_health(engine, "mastodon", "mastodon.social#metoo", last_post=now - timedelta(minutes=5),
                last_success=now - timedelta(minutes=1))
    seed_health(engine, "bluesky-search", "bsky#metoo", last_post=now - timedelta(minutes=5),
                last_success=now - timedelta(minutes=1))
    cfg = config(FLATLINE)
    assert not evaluate(engine, cfg, now).firing
    # the mastodon collector stops: no success, no posts for 40 minutes
    later = now + timedelta(minutes=40)
    seed_health(engine, "bluesky-search", "bsky#metoo", last_post=later - timedelta(minutes=2),
                last_success=later)
    report = evaluate(engine, cfg, later)
    assert [o.labels["source"] for o in report.firing] == ["mastodon"]
    assert report.firing[0].labels["tag"] == "metoo"
    back = later + timedelta(minutes=30)
    for source, stream in (("mastodon", "mastodon.social#metoo"), ("bluesky-search", "bsky#metoo")):
        seed_health(engine, source, stream, last_post=back, last_success=back)
    evaluate(engine, cfg, back)
    evaluate(engine, cfg, back + timedelta(minutes=20))
    assert [r.kind for r in outbox_rows(engine)] == ["firing", "resolved"]


def test_a_firing_flatline_holds_back_the_spike_of_its_tag(engine: Engine) -> None:
    counts = seasonal_counts(16)
    onset = DAY15 + timedelta(hours=14)
    counts = [(at, n + 15 * usual(at)) if onset <= at < onset + 12 * BUCKET else (at, n)
              for at, n in counts]
    seed_buckets(engine, "metoo", counts)
    seed_health(engine, "mastodon", "m.s#metoo", last_post=onset - timedelta(hours=2),
                last_success=onset - timedelta(hours=2))
    report = evaluate(engine, config(FLATLINE, SPIKE), onset + 3 * BUCKET)
    states = {o.rule: (o.state, o.muted) for o in report.outcomes}
    assert states["dead-stream"] == ("firing", None)
    assert states["metoo-spike"] == ("firing", "inhibited")
    assert [r.payload["rule"] for r in outbox_rows(engine)] == ["dead-stream"]


# min_z 2: a shift that lasts joins the baseline's blocks and widens its spread,
# and this test is about the lifecycle over two hours of it, not the test's power
LIFE = {"name": "tone", "kind": "sentiment_shift", "window": "1h", "baseline": "1d",
        "threshold": 0.3, "min_scored": 30, "min_z": 2, "for": "10m", "repeat_interval": "1h",
        "resolve_after": "15m"}


def seed_shift(engine: Engine, until: datetime) -> None:
    seed_buckets(engine, "metoo", [(START + i * BUCKET, 20) for i in range(288)],
                 compound=0.4, scored_share=1.0)
    n = int((until - (START + timedelta(days=1))) / BUCKET)
    seed_buckets(engine, "metoo", [(START + timedelta(days=1) + i * BUCKET, 20) for i in range(n)],
                 compound=-0.4, scored_share=1.0)


def test_lifecycle_for_repeat_and_resolve_in_the_database(engine: Engine) -> None:
    t0 = START + timedelta(days=1, hours=1)
    seed_shift(engine, t0 + timedelta(hours=2))
    cfg = config(LIFE)
    kinds = []
    for minute in range(0, 125, 5):
        report = evaluate(engine, cfg, t0 + timedelta(minutes=minute))
        kinds += [(minute, kind) for _, kind in report.announcements]
    assert kinds == [(10, "firing"), (70, "repeat")]
    # the shift's data ends at t0+2h: within the hour the window is back to normal
    for minute in range(125, 240, 5):
        report = evaluate(engine, cfg, t0 + timedelta(minutes=minute))
        kinds += [(minute, kind) for _, kind in report.announcements]
    assert [k for _, k in kinds] == ["firing", "repeat", "repeat", "resolved"]
    assert kinds[2][0] == 130
    keys = [r.idempotency_key for r in outbox_rows(engine)]
    assert len(set(keys)) == 4 and all(len(k) == 40 for k in keys)


def test_same_instant_twice_announces_nothing_twice(engine: Engine) -> None:
    t0 = START + timedelta(days=1, hours=1)
    seed_shift(engine, t0 + timedelta(hours=2))
    cfg = config(LIFE)
    evaluate(engine, cfg, t0)
    first = evaluate(engine, cfg, t0 + timedelta(minutes=10))
    before = [tuple(r) for r in alert_rows(engine)]
    second = evaluate(engine, cfg, t0 + timedelta(minutes=10))
    assert first.announcements and not second.announcements
    assert [tuple(r) for r in alert_rows(engine)] == before
    assert len(outbox_rows(engine)) == 1


@pytest.mark.parametrize("stop_after", [5, 20])  # in pending, in firing
def test_restart_continues_from_the_stored_state(db_url: str, stop_after: int) -> None:
    from monitor.store.db import migrate

    t0 = START + timedelta(days=1, hours=1)
    cfg = config(LIFE)
    first = make_engine(db_url)
    migrate(first)
    seed_shift(first, t0 + timedelta(hours=2))
    said = []
    for minute in range(0, stop_after + 1, 5):
        said += [k for _, k in evaluate(first, cfg, t0 + timedelta(minutes=minute)).announcements]
    state_before = alert_rows(first)[0].state
    assert state_before == ("pending" if stop_after < 10 else "firing")
    first.dispose()
    second = make_engine(db_url)  # a new process: only the database remembers
    said += [k for _, k in evaluate(second, cfg, t0 + timedelta(minutes=stop_after)).announcements]
    for minute in range(stop_after + 5, 65, 5):
        said += [k for _, k in evaluate(second, cfg, t0 + timedelta(minutes=minute)).announcements]
    assert said == ["firing"]
    assert len(outbox_rows(second)) == 1
    second.dispose()


def test_a_silence_mutes_without_losing_state_and_expiring_it_announces(engine: Engine) -> None:
    t0 = START + timedelta(days=1, hours=1)
    seed_shift(engine, t0 + timedelta(hours=2))
    cfg = config(LIFE)
    silence = add_silence(engine, {"rule": "tone", "tag": "metoo"}, timedelta(hours=2),
                          now=t0 - timedelta(minutes=1), comment="known story")
    assert [s.id for s in list_silences(engine, t0)] == [silence.id]
    for minute in range(0, 30, 5):
        report = evaluate(engine, cfg, t0 + timedelta(minutes=minute))
        assert not report.announcements
    assert alert_rows(engine)[0].state == "firing"
    assert report.outcomes[0].muted == "silenced"
    expire_silence(engine, silence.id, t0 + timedelta(minutes=31))
    assert list_silences(engine, t0 + timedelta(minutes=32)) == []
    report = evaluate(engine, cfg, t0 + timedelta(minutes=35))
    assert [k for _, k in report.announcements] == ["firing"]
    # a silence on another tag mutes nothing here
    add_silence(engine, {"tag": "notallmen"}, timedelta(hours=9), now=t0 + timedelta(minutes=36))
    assert evaluate(engine, cfg, t0 + timedelta(minutes=40)).outcomes[0].muted is None


def test_alerts_listing_shows_firing_first(engine: Engine) -> None:
    t0 = START + timedelta(days=1, hours=1)
    seed_shift(engine, t0 + timedelta(hours=2))
    evaluate(engine, config({**LIFE, "for": "0m"}), t0)
    listed = list_alerts(engine, t0)
    assert [(a.rule, a.state, dict(a.labels)) for a in listed] == [
        ("tone", "firing", {"tag": "metoo"})]
    assert listed[0].fired_at == t0.astimezone(UTC)
