"""Trend reads on SQLite and PostgreSQL, checked against numbers computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitor.errors import InputError
from monitor.models import ScoredPost, Sentiment
from monitor.store.queries import align_range, cotags, series, top_tags
from monitor.store.write import write_batch

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def post(key: str, at: datetime, tags: tuple[str, ...], compound: float | None) -> ScoredPost:
    sentiment = None if compound is None else Sentiment(compound, 0.1, 0.8, 0.1)
    return ScoredPost(
        platform="test", key=key, created_at=at, url=None, author=None, text=None, lang="en",
        tags=tags, is_repost=False, sensitive=False, sentiment=sentiment,
    )


def test_series_hourly_sums_means_and_fills_holes(engine: Engine) -> None:
    write_batch(engine, [
        post("a", T0 + timedelta(minutes=1), ("metoo",), 0.5),
        post("b", T0 + timedelta(minutes=59, seconds=59), ("metoo",), -0.5),
        post("c", T0 + timedelta(minutes=30), ("metoo", "notallmen"), None),
        post("d", T0 + timedelta(hours=2, minutes=10), ("metoo",), 0.0),
        post("e", T0 + timedelta(hours=2, minutes=10), ("other",), 0.9),
    ])
    points = series(engine, ["metoo", "notallmen"], T0, T0 + timedelta(hours=3),
                    timedelta(hours=1))
    metoo = [p for p in points if p.tag == "metoo"]
    assert [p.bucket for p in metoo] == [T0 + timedelta(hours=h) for h in range(3)]
    assert [p.posts for p in metoo] == [3, 0, 1]
    assert [p.scored for p in metoo] == [2, 0, 1]
    assert metoo[0].mean_compound == pytest.approx(0.0)
    assert metoo[1].mean_compound is None  # an empty hour has no mean, not 0
    assert (metoo[0].positive, metoo[0].neutral, metoo[0].negative) == (1, 0, 1)
    assert (metoo[2].positive, metoo[2].neutral, metoo[2].negative) == (0, 1, 0)
    notallmen = [p for p in points if p.tag == "notallmen"]
    assert [p.posts for p in notallmen] == [1, 0, 0]
    assert notallmen[0].mean_compound is None


def test_series_daily_aligns_to_utc_midnight_and_widens_range(engine: Engine) -> None:
    write_batch(engine, [
        post("a", T0 + timedelta(hours=1), ("metoo",), 0.2),
        post("b", T0 + timedelta(hours=23, minutes=55), ("metoo",), 0.4),
        post("c", T0 + timedelta(days=1, hours=5), ("metoo",), -0.3),
    ])
    # a range starting mid-day still returns whole days from midnight
    points = series(engine, ["metoo"], T0 + timedelta(hours=12), T0 + timedelta(days=1, hours=6),
                    timedelta(days=1))
    assert [(p.bucket, p.posts) for p in points] == [(T0, 2), (T0 + timedelta(days=1), 1)]
    assert points[0].mean_compound == pytest.approx(0.3)


def test_series_five_minute_step_and_unknown_tag(engine: Engine) -> None:
    write_batch(engine, [post("a", T0 + timedelta(minutes=7), ("metoo",), 0.1)])
    points = series(engine, ["metoo", "nobody"], T0, T0 + timedelta(minutes=15),
                    timedelta(minutes=5))
    assert [p.posts for p in points if p.tag == "metoo"] == [0, 1, 0]
    assert [p.posts for p in points if p.tag == "nobody"] == [0, 0, 0]


def test_series_rejects_bad_step_and_range(engine: Engine) -> None:
    with pytest.raises(InputError, match="multiple of 5m"):
        series(engine, ["metoo"], T0, T0 + timedelta(hours=1), timedelta(minutes=7))
    with pytest.raises(InputError, match="since before until"):
        series(engine, ["metoo"], T0, T0 - timedelta(hours=1), timedelta(hours=1))
    # too many points: clipped to the data that exists first (none here), then refused
    # only when the data itself spans too many steps (issue 11)
    assert len(series(engine, ["metoo"], T0, T0 + timedelta(days=3650), timedelta(minutes=5))
               ) == 1
    write_batch(engine, [post("a", T0, ("metoo",), None),
                         post("b", T0 + timedelta(days=3000), ("metoo",), None)])
    with pytest.raises(InputError, match="too many points"):
        series(engine, ["metoo"], T0, T0 + timedelta(days=3650), timedelta(minutes=5))


def test_align_range_ceils_until() -> None:
    start, end = align_range(T0 + timedelta(minutes=10), T0 + timedelta(hours=1, minutes=1), 3600)
    assert (start, end) == (T0, T0 + timedelta(hours=2))


def test_top_tags_volume_and_growth(engine: Engine) -> None:
    since, until = T0 + timedelta(days=1), T0 + timedelta(days=2)
    rows = []
    # previous day: metoo 10, notallmen 2; this day: metoo 12, notallmen 6, fresh 5
    for i in range(10):
        rows.append(post(f"pm{i}", T0 + timedelta(hours=i), ("metoo",), 0.1))
    for i in range(2):
        rows.append(post(f"pn{i}", T0 + timedelta(hours=i), ("notallmen",), -0.2))
    for i in range(12):
        rows.append(post(f"cm{i}", since + timedelta(hours=i), ("metoo",), 0.3))
    for i in range(6):
        rows.append(post(f"cn{i}", since + timedelta(hours=i), ("notallmen",), None))
    for i in range(5):
        rows.append(post(f"cf{i}", since + timedelta(hours=i), ("fresh",), -0.4))
    write_batch(engine, rows)
    by_volume = top_tags(engine, since, until, 10)
    assert [(t.tag, t.posts, t.previous) for t in by_volume] == [
        ("metoo", 12, 10), ("notallmen", 6, 2), ("fresh", 5, 0)]
    assert by_volume[0].growth == pytest.approx(0.2)
    assert by_volume[0].mean_compound == pytest.approx(0.3)
    assert by_volume[1].mean_compound is None
    assert by_volume[2].growth is None
    by_growth = top_tags(engine, since, until, 10, order="growth", min_posts=5)
    assert [t.tag for t in by_growth] == ["fresh", "notallmen", "metoo"]
    assert [t.tag for t in top_tags(engine, since, until, 1)] == ["metoo"]


def test_cotags_counts_share_and_sentiment(engine: Engine) -> None:
    write_batch(engine, [
        post("a", T0, ("metoo", "howiwillchange"), 0.6),
        post("b", T0 + timedelta(minutes=5), ("metoo", "howiwillchange", "notallmen"), 0.2),
        post("c", T0 + timedelta(minutes=9), ("metoo", "notallmen"), None),
        post("d", T0 + timedelta(minutes=9), ("metoo",), -0.9),
        post("e", T0 + timedelta(minutes=9), ("notallmen", "other"), -0.9),
        post("f", T0 + timedelta(days=5), ("metoo", "later"), -0.9),
    ])
    found = cotags(engine, "metoo", T0, T0 + timedelta(days=1))
    assert [(c.tag, c.posts) for c in found] == [("howiwillchange", 2), ("notallmen", 2)]
    assert found[0].share == pytest.approx(0.5)
    assert found[0].mean_compound == pytest.approx(0.4)
    assert found[1].scored == 1
    assert found[1].mean_compound == pytest.approx(0.2)
    assert cotags(engine, "nobody", T0, T0 + timedelta(days=1)) == []


def test_one_cotags_read_serves_dashboard_rule_and_email(engine: Engine) -> None:
    write_batch(engine, [
        post("a", T0, ("metoo", "howiwillchange"), 0.6),
        post("b", T0 + timedelta(minutes=5), ("metoo", "howiwillchange", "notallmen"), 0.2),
        post("c", T0 + timedelta(minutes=9), ("metoo", "notallmen"), None),
        post("d", T0 + timedelta(minutes=9), ("metoo", "timesup"), -0.9),
    ])
    day = (T0, T0 + timedelta(days=1))
    with_tone = cotags(engine, "metoo", *day)
    counted = cotags(engine, "metoo", *day, tone=False)
    # the email and the rule only count: same tags, counts and shares, no tone read
    assert [(c.tag, c.posts, c.share) for c in counted] == [
        (c.tag, c.posts, c.share) for c in with_tone]
    assert all(c.scored == 0 and c.mean_compound is None for c in counted)
    # the rule's share denominator: every post of the queried tag in the range
    assert {c.tag_posts for c in with_tone} == {4}
    # the rule's baseline: only the candidates it asks about, whatever their rank
    only = cotags(engine, "metoo", *day, None, only=["timesup", "absent"], tone=False)
    assert [(c.tag, c.posts, c.share) for c in only] == [("timesup", 1, 0.25)]
    assert cotags(engine, "metoo", *day, only=[]) == []
    assert [c.tag for c in cotags(engine, "metoo", *day, 1)] == ["howiwillchange"]
    with pytest.raises(InputError):
        cotags(engine, "metoo", *day, 0)


def test_reads_see_the_callers_transaction(engine: Engine) -> None:
    write_batch(engine, [post("a", T0, ("metoo", "timesup"), 0.5)])
    # the detector reads on the connection of the transaction that writes its alerts
    with engine.begin() as conn:
        found = cotags(conn, "metoo", T0, T0 + timedelta(hours=1))
        assert [(c.tag, c.posts) for c in found] == [("timesup", 1)]
        assert not conn.closed  # the caller's connection is left open for its own writes
