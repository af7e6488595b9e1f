"""Sparklines and per-tag summaries as people read them in the terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.analyse.trends import sparkline, summarise
from monitor.store.queries import SeriesPoint

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_volume_sparkline_scales_from_zero() -> None:
    assert sparkline([0, 1, 2, 4, 8], low=0.0) == "▁▂▃▅█"
    assert sparkline([3, 3, 3], low=0.0) == "███"
    assert sparkline([0, 0], low=0.0) == "▁▁"


def test_missing_values_are_blank_and_long_series_are_squeezed() -> None:
    assert sparkline([None, 1.0, None], low=-1.0, high=1.0) == " █ "
    line = sparkline([1.0] * 50 + [0.0] * 50, width=10, low=0.0)
    assert line == "█████▁▁▁▁▁"


def test_squeezed_means_are_weighted_by_scored_posts() -> None:
    # one cell holds a mean of +1 over 1 post and -1 over 3 posts: -0.5, not 0
    line = sparkline([1.0, -1.0], width=1, weights=[1.0, 3.0], reduce="mean", low=-1.0, high=1.0)
    assert line == "▃"


def test_summary_totals_peak_and_mean() -> None:
    points = [
        SeriesPoint("metoo", T0, 2, 2, 0.5, 2, 0, 0),
        SeriesPoint("metoo", T0 + timedelta(hours=1), 0, 0, None, 0, 0, 0),
        SeriesPoint("metoo", T0 + timedelta(hours=2), 5, 1, -0.4, 0, 0, 1),
    ]
    (s,) = summarise(points)
    assert (s.posts, s.scored, s.positive, s.negative) == (7, 3, 2, 1)
    assert s.mean_compound == pytest.approx((0.5 * 2 - 0.4) / 3)
    assert (s.peak_bucket, s.peak_posts) == (T0 + timedelta(hours=2), 5)
    assert s.volume_line[1] == "▁" and s.volume_line[2] == "█"
    assert s.sentiment_line[1] == " "
