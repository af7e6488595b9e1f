"""The counter-movement view: does tag B answer tag A, after how long, and in what tone?

Volume relation. Raw hourly counts of two hashtags correlate at almost every
lag: both follow the same day/night rhythm and both drift with platform
activity, so a naive cross-correlation peaks wherever the shared rhythm lines
up and says nothing about B answering A. Before correlating, each series is

1. put on a log scale (``log1p``), so one viral hour does not outweigh a month;
2. stripped of its hour-of-day profile (the mean of each UTC hour of the day
   over the range), which removes the shared daily seasonality;
3. first-differenced, which removes slow trends and level shifts and turns
   "B is high after A is high" into "B moves after A moves";
4. prewhitened (Box–Jenkins): an AR(p) model is fitted to A's series by least
   squares and the same filter is applied to both, so autocorrelation left in A
   cannot smear the peak over neighbouring lags.

The normalised cross-correlation ``r(k) = corr(a[t], b[t+k])`` is then computed
for ``k`` in ``[-max_lag, max_lag]`` hours. A positive best lag ``k`` means
**B follows A by k hours**; a negative one means A follows B. Correlations
inside ``±1.96/√n`` are indistinguishable from noise at about the 5 % level and
are reported as such.

Co-occurrence and tone: the share of posts carrying both tags, and for each
tag the mean VADER compound of its posts with and without the other tag. No
post is read: each tag's totals come from ``tag_buckets`` and the posts
carrying both from ``tag_pair_buckets`` (kept by ``write_batch`` in the same
transaction as the posts); "without" is the total minus "with". One statement
(:func:`monitor.store.relate.pair_rollups`) returns both hourly series and all
of these sums. The pair rollup pairs only the first 10 tags of a post
(``monitor.store.pairs.MAX_PAIR_TAGS``), so a tag-stuffed post whose 11th or
later tag is one of the two counts as "without".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine

from monitor.errors import InputError
from monitor.store.queries import align_range
from monitor.store.relate import Totals, pair_rollups, split_from_posts

__all__ = [
    "Crosscorrelation",
    "Relation",
    "ToneSplit",
    "cross_correlation",
    "describe_lag",
    "prepare",
    "relate",
    "relation_dict",
    "tone_from_posts",
]

FloatArray = npt.NDArray[np.float64]

HOURS_PER_DAY = 24
MIN_HOURS = 72  # fewer points than this cannot separate a lag from the daily rhythm


@dataclass(frozen=True, slots=True)
class Crosscorrelation:
    """r for each lag in hours (B shifted against A); ``band`` is the ±95 % noise level."""

    lags: tuple[int, ...]
    r: tuple[float, ...]
    best_lag: int | None  # hours B follows A (negative: A follows B); None if no relation
    best_r: float | None
    band: float
    n: int  # points the correlation was computed on

    @property
    def significant(self) -> bool:
        return self.best_r is not None and abs(self.best_r) > self.band


@dataclass(frozen=True, slots=True)
class ToneSplit:
    """One tag's posts split by whether they also carry the other tag."""

    tag: str
    other: str
    posts: int
    with_other: int
    without_other: int
    mean_with: float | None
    mean_without: float | None
    scored_with: int
    scored_without: int

    @property
    def difference(self) -> float | None:
        """Mean compound with minus without the other tag (None if either side is unscored)."""
        if self.mean_with is None or self.mean_without is None:
            return None
        return self.mean_with - self.mean_without


@dataclass(frozen=True, slots=True)
class Relation:
    tag_a: str
    tag_b: str
    since: datetime
    until: datetime
    posts_a: int
    posts_b: int
    posts_both: int
    xcorr: Crosscorrelation
    tone_a: ToneSplit
    tone_b: ToneSplit

    @property
    def share_both(self) -> float:
        """Posts carrying both tags among posts carrying either (Jaccard)."""
        either = self.posts_a + self.posts_b - self.posts_both
        return self.posts_both / either if either else 0.0

    @property
    def share_of_a(self) -> float:
        return self.posts_both / self.posts_a if self.posts_a else 0.0

    @property
    def share_of_b(self) -> float:
        return self.posts_both / self.posts_b if self.posts_b else 0.0


def _deseasonalise(values: FloatArray, first_hour: int) -> FloatArray:
    hours = (np.arange(values.size) + first_hour) % HOURS_PER_DAY
    out = values.copy()
    for h in range(HOURS_PER_DAY):
        mask = hours == h
        if mask.any():
            out[mask] -= values[mask].mean()
    return out


def _ar_coefficients(x: FloatArray, order: int) -> FloatArray:
    """Least-squares AR(order) coefficients of a zero-mean series."""
    if order <= 0 or x.size <= order * 4:
        return np.zeros(0)
    rows = np.column_stack([x[order - k - 1 : x.size - k - 1] for k in range(order)])
    target = x[order:]
    coef, *_ = np.linalg.lstsq(rows, target, rcond=None)
    return np.asarray(coef, dtype=np.float64)


def _ar_filter(x: FloatArray, coef: FloatArray) -> FloatArray:
    order = coef.size
    if order == 0:
        return x
    predicted = np.zeros(x.size - order)
    for k in range(order):
        predicted += coef[k] * x[order - k - 1 : x.size - k - 1]
    return np.asarray(x[order:] - predicted, dtype=np.float64)


def prepare(a: Sequence[float] | FloatArray, b: Sequence[float] | FloatArray, first_hour: int = 0,
            ar_order: int = 6) -> tuple[FloatArray, FloatArray]:
    """Turn two aligned hourly count series into the prewhitened pair that is correlated.

    *first_hour* is the UTC hour of day of the first point (for the daily profile).
    """
    xa = np.log1p(np.asarray(a, dtype=np.float64))
    xb = np.log1p(np.asarray(b, dtype=np.float64))
    if xa.size >= 2 * HOURS_PER_DAY:
        xa, xb = _deseasonalise(xa, first_hour), _deseasonalise(xb, first_hour)
    da, db = np.diff(xa), np.diff(xb)
    da, db = da - da.mean(), db - db.mean()
    coef = _ar_coefficients(da, ar_order)
    return _ar_filter(da, coef), _ar_filter(db, coef)


def cross_correlation(a: FloatArray, b: FloatArray, max_lag: int) -> Crosscorrelation:
    """Normalised r(k) = corr(a[t], b[t+k]) for |k| <= max_lag (the standard biased estimator)."""
    n = int(min(a.size, b.size))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    max_lag = max(0, min(max_lag, n - 2))
    lags = list(range(-max_lag, max_lag + 1))
    band = 1.96 / math.sqrt(n) if n else 1.0
    if denom == 0.0:
        # one series is flat: nothing moves, so nothing can follow
        return Crosscorrelation(tuple(lags), tuple(0.0 for _ in lags), None, None, band, n)
    values = []
    for k in lags:
        pair = (a[: n - k], b[k:]) if k >= 0 else (a[-k:], b[: n + k])
        values.append(float(np.dot(*pair)) / denom)
    best = max(range(len(lags)), key=lambda i: (abs(values[i]), -abs(lags[i])))
    return Crosscorrelation(tuple(lags), tuple(values), lags[best], values[best], band, n)


def _split(tag: str, other: str, total: Totals, both: Totals) -> ToneSplit:
    n_both, scored_both, csum_both = both.posts, both.scored, both.compound_sum
    scored_without = total.scored - scored_both
    return ToneSplit(
        tag=tag, other=other, posts=total.posts,
        with_other=n_both, without_other=max(total.posts - n_both, 0),
        mean_with=csum_both / scored_both if scored_both else None,
        mean_without=((total.compound_sum - csum_both) / scored_without
                      if scored_without > 0 else None),
        scored_with=scored_both, scored_without=max(scored_without, 0),
    )


def tone_from_posts(engine: Engine, tag: str, other: str, since: datetime,
                    until: datetime) -> ToneSplit:
    """The same split computed from posts alone (every post of *tag* joined to ``posts``).

    ``relate`` does not use it: it reads the rollups only. Kept as the raw-posts
    truth the tests and the benchmark compare the rollups with.
    """
    split = split_from_posts(engine, tag, other, since, until)
    (n_with, scored_with, mean_with) = split.with_other
    (n_without, scored_without, mean_without) = split.without_other
    return ToneSplit(
        tag=tag, other=other, posts=n_with + n_without,
        with_other=n_with, without_other=n_without,
        mean_with=mean_with, mean_without=mean_without,
        scored_with=scored_with, scored_without=scored_without,
    )


def relate(
    engine: Engine,
    tag_a: str,
    tag_b: str,
    since: datetime,
    until: datetime,
    *,
    max_lag: int = 48,
) -> Relation:
    """Relate two tags over ``[since, until)`` (widened to whole UTC hours)."""
    if tag_a == tag_b:
        raise InputError("relate", f"expected two different tags, got {tag_a!r} twice")
    if not 1 <= max_lag <= 24 * 14:
        raise InputError("max-lag", f"expected 1 to 336 hours, got {max_lag}")
    start, end = align_range(since, until, 3600)
    hours = int((end - start) / timedelta(hours=1))
    if hours < MIN_HOURS:
        raise InputError("since", f"expected a range of at least {MIN_HOURS // 24} days "
                                  f"to relate two tags, got {hours} hours")
    data = pair_rollups(engine, tag_a, tag_b, start, end)
    pa, pb = prepare(data.volume_a, data.volume_b, first_hour=start.hour)
    xcorr = cross_correlation(pa, pb, max_lag)
    total_a, total_b, both = data.total_a, data.total_b, data.both
    tone_a = _split(tag_a, tag_b, total_a, both)
    tone_b = _split(tag_b, tag_a, total_b, both)
    return Relation(
        tag_a=tag_a, tag_b=tag_b, since=start, until=end,
        posts_a=tone_a.posts, posts_b=tone_b.posts, posts_both=tone_a.with_other,
        xcorr=xcorr, tone_a=tone_a, tone_b=tone_b,
    )


def relation_dict(rel: Relation) -> dict[str, Any]:
    """A Relation as plain JSON-ready data (also what /api/relate returns)."""
    x = rel.xcorr

    def tone(t: ToneSplit) -> dict[str, Any]:
        return {"tag": t.tag, "other": t.other, "posts": t.posts, "with_other": t.with_other,
                "without_other": t.without_other, "mean_with": t.mean_with,
                "mean_without": t.mean_without, "scored_with": t.scored_with,
                "scored_without": t.scored_without, "difference": t.difference}

    return {
        "tag_a": rel.tag_a, "tag_b": rel.tag_b,
        "since": rel.since.isoformat(), "until": rel.until.isoformat(),
        "posts_a": rel.posts_a, "posts_b": rel.posts_b, "posts_both": rel.posts_both,
        "share_both": rel.share_both, "share_of_a": rel.share_of_a, "share_of_b": rel.share_of_b,
        "best_lag_hours": x.best_lag, "best_r": x.best_r, "noise_band": x.band,
        "significant": x.significant, "points": x.n,
        "lags": list(x.lags), "r": list(x.r),
        "tone_a": tone(rel.tone_a), "tone_b": tone(rel.tone_b),
    }


def describe_lag(tag_a: str, tag_b: str, lag: int | None, r: float | None,
                 significant: bool) -> str:
    """One sentence for people: who follows whom, by how long, and how sure."""
    if lag is None or r is None:
        return f"#{tag_a} and #{tag_b}: no volume movement to compare"
    if not significant:
        return (f"#{tag_a} and #{tag_b}: no lag stands out from noise "
                f"(strongest r={r:+.2f} at {lag:+d} h)")
    direction = "rises" if r > 0 else "falls"
    if lag == 0:
        return f"#{tag_b} moves with #{tag_a} in the same hour (r={r:+.2f})"
    if lag > 0:
        return f"#{tag_b} {direction} {lag} h after #{tag_a} moves (r={r:+.2f})"
    return f"#{tag_a} {direction} {-lag} h after #{tag_b} moves (r={r:+.2f})"
