"""Per-tag window reads (what the detector and the notifiers ask), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from monitor.store.queries import series
from monitor.store.windows import (
    bucket_posts,
    compare_periods,
    first_bucket,
    hourly_series,
    window_totals,
)
from monitor.store.write import write_batch
from tests.store.test_queries import post

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def test_window_totals_many_tags_in_one_read(engine: Engine) -> None:
    write_batch(engine, [
        post("a", T0 + timedelta(minutes=1), ("metoo",), 0.6),
        post("b", T0 + timedelta(minutes=7), ("metoo", "timesup"), -0.2),
        post("c", T0 + timedelta(minutes=50), ("metoo",), None),
        post("d", T0 + timedelta(hours=1, minutes=1), ("metoo",), 0.9),  # after the window
    ])
    found = window_totals(engine, ["metoo", "timesup", "quiet"], T0, T0 + timedelta(hours=1))
    assert (found["metoo"].posts, found["metoo"].scored) == (3, 2)
    assert found["metoo"].mean_compound == pytest.approx(0.2)
    assert found["timesup"].mean_compound == pytest.approx(-0.2)
    # a tag without posts is answered, with no mean rather than a mean of 0
    assert (found["quiet"].posts, found["quiet"].mean_compound) == (0, None)
    # the same numbers the dashboard's series shows for that hour
    [hour] = series(engine, ["metoo"], T0, T0 + timedelta(hours=1))
    assert (hour.posts, hour.scored) == (found["metoo"].posts, found["metoo"].scored)
    assert window_totals(engine, [], T0, T0 + timedelta(hours=1)) == {}


def test_compare_periods_is_the_digests_change_against_last_week(engine: Engine) -> None:
    now = T0 + timedelta(days=7)
    write_batch(engine, [
        *(post(f"old{i}", T0 - timedelta(hours=3), ("metoo",), 0.1) for i in range(4)),
        *(post(f"new{i}", now - timedelta(hours=3), ("metoo",), 0.5) for i in range(6)),
        post("fresh", now - timedelta(hours=1), ("fresh",), None),
        post("between", T0 + timedelta(days=3), ("metoo",), 0.0),  # in neither day
    ])
    week = compare_periods(engine, ["metoo", "fresh"], now - timedelta(days=1), now,
                           back=timedelta(days=7))
    assert (week["metoo"].posts, week["metoo"].previous) == (6, 4)
    assert week["metoo"].growth == pytest.approx(0.5)
    assert week["metoo"].mean_compound == pytest.approx(0.5)
    # no posts a week ago: no finite change, not +inf or 0
    assert (week["fresh"].posts, week["fresh"].previous, week["fresh"].growth) == (1, 0, None)


def test_hourly_series_leaves_out_the_running_hour(engine: Engine) -> None:
    write_batch(engine, [
        post("a", T0 + timedelta(minutes=10), ("metoo",), 0.4),
        post("b", T0 + timedelta(hours=2, minutes=5), ("metoo",), -0.4),
        post("c", T0 + timedelta(hours=3, minutes=1), ("metoo",), 0.0),  # the running hour
    ])
    got = hourly_series(engine, "metoo", T0, T0 + timedelta(hours=3, minutes=20))
    assert got.hours == [T0 + timedelta(hours=h) for h in range(3)]
    assert got.posts == [1, 0, 1]
    assert got.mean_compound[0] == pytest.approx(0.4) and got.mean_compound[1] is None


def test_spike_history_reads(engine: Engine) -> None:
    assert first_bucket(engine, "metoo") is None
    write_batch(engine, [
        post("a", T0 + timedelta(minutes=2), ("metoo",), None),
        post("b", T0 + timedelta(minutes=3), ("metoo",), None),
        post("c", T0 + timedelta(minutes=31), ("metoo",), None),
    ])
    assert first_bucket(engine, "metoo") == T0
    assert bucket_posts(engine, "metoo", T0, T0 + timedelta(hours=1)) == {
        T0: 2, T0 + timedelta(minutes=30): 1}
    assert bucket_posts(engine, "metoo", T0 + timedelta(minutes=5), T0 + timedelta(minutes=30)
                        ) == {}
