"""The counter-movement view: known lags are found, shared daily rhythm is not mistaken
for a relation, and co-occurrence and tone match the posts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from monitor.analyse.relate import cross_correlation, prepare, relate, tone_from_posts
from monitor.errors import InputError
from monitor.store.write import write_batch
from tests.analyse.seed import bucket_rows, lagged_pair, scored

T0 = datetime(2026, 1, 5, tzinfo=UTC)
HOURS = 24 * 30


def test_synthetic_three_hour_lag_is_found(engine: Engine) -> None:
    a, b = lagged_pair(3)
    starts = [T0 + timedelta(hours=h) for h in range(HOURS)]
    bucket_rows(engine, "metoo", starts, a.tolist())
    bucket_rows(engine, "notallmen", starts, b.tolist())
    rel = relate(engine, "metoo", "notallmen", T0, T0 + timedelta(hours=HOURS))
    assert rel.xcorr.best_lag == 3  # B follows A by 3 hours
    assert rel.xcorr.best_r is not None and rel.xcorr.best_r > 0
    assert rel.xcorr.significant
    assert rel.xcorr.lags[0] == -48 and rel.xcorr.lags[-1] == 48
    # swapping the tags flips the sign: A follows B by -3
    back = relate(engine, "notallmen", "metoo", T0, T0 + timedelta(hours=HOURS))
    assert back.xcorr.best_lag == -3


@pytest.mark.parametrize("lag", [-5, 0, 12])
def test_lags_either_way_and_half_a_day(lag: int) -> None:
    a, b = lagged_pair(lag, seed=11)
    x = cross_correlation(*prepare(a, b), max_lag=48)
    assert x.best_lag == lag


def test_shared_daily_rhythm_alone_is_not_a_relation() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(HOURS)
    season = 20 * (1 + 0.9 * np.sin(2 * np.pi * t / 24))
    a, b = rng.poisson(season), rng.poisson(season * 0.5)
    raw = cross_correlation(a - a.mean(), b - b.mean(), 48)
    assert raw.best_r is not None and raw.best_r > 0.5  # the naive view sees a strong "relation"
    x = cross_correlation(*prepare(a, b), max_lag=48)
    assert x.best_r is not None and abs(x.best_r) < 3 * x.band


def test_flat_series_has_no_best_lag() -> None:
    x = cross_correlation(*prepare([0.0] * 200, [5.0] * 200), max_lag=48)
    assert x.best_lag is None and not x.significant


def test_share_and_tone_with_and_without_the_other(engine: Engine) -> None:
    at = T0 + timedelta(days=1)
    write_batch(engine, [
        scored("1", at, ("metoo",), 0.6),
        scored("2", at, ("metoo",), 0.4),
        scored("3", at, ("metoo", "notallmen"), -0.2),
        scored("4", at, ("metoo", "notallmen"), None),
        scored("5", at, ("notallmen",), -0.8),
        scored("6", at, ("notallmen", "other"), -0.6),
        scored("7", T0 - timedelta(days=1), ("metoo", "notallmen"), 0.9),  # out of range
    ])
    rel = relate(engine, "metoo", "notallmen", T0, T0 + timedelta(days=4))
    assert (rel.posts_a, rel.posts_b, rel.posts_both) == (4, 4, 2)
    assert rel.share_both == pytest.approx(2 / 6)
    assert rel.share_of_a == pytest.approx(0.5)
    a, b = rel.tone_a, rel.tone_b
    assert (a.with_other, a.without_other, a.scored_with) == (2, 2, 1)
    assert a.mean_with == pytest.approx(-0.2)
    assert a.mean_without == pytest.approx(0.5)
    assert a.difference == pytest.approx(-0.7)
    assert b.mean_with == pytest.approx(-0.2)
    assert b.mean_without == pytest.approx(-0.7)


def test_relate_rejects_short_ranges_and_same_tag(engine: Engine) -> None:
    with pytest.raises(InputError, match="at least 3 days"):
        relate(engine, "metoo", "notallmen", T0, T0 + timedelta(hours=30))
    with pytest.raises(InputError, match="two different tags"):
        relate(engine, "metoo", "metoo", T0, T0 + timedelta(days=10))


def test_rollup_tone_agrees_with_posts(engine: Engine) -> None:
    rng = np.random.default_rng(2)
    batch = []
    for i in range(300):
        tags = tuple(t for t, p in (("metoo", 0.7), ("notallmen", 0.4), ("other", 0.2))
                     if rng.random() < p) or ("other",)
        compound = None if rng.random() < 0.15 else float(rng.uniform(-1, 1))
        batch.append(scored(f"r{i}", T0 + timedelta(minutes=int(rng.integers(0, 60 * 24 * 5))),
                            tags, compound))
    write_batch(engine, batch)
    start, end = T0, T0 + timedelta(days=5)
    rel = relate(engine, "metoo", "notallmen", start, end)
    for got, tag, other in ((rel.tone_a, "metoo", "notallmen"),
                            (rel.tone_b, "notallmen", "metoo")):
        ref = tone_from_posts(engine, tag, other, start, end)
        assert (got.posts, got.with_other, got.without_other) == (
            ref.posts, ref.with_other, ref.without_other)
        assert (got.scored_with, got.scored_without) == (ref.scored_with, ref.scored_without)
        assert got.mean_with == pytest.approx(ref.mean_with)
        assert got.mean_without == pytest.approx(ref.mean_without)
