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
returns both hourly series and all of these sums. The pair rollup pairs only
the first 10 tags of a post (``monitor.store.pairs.MAX_PAIR_TAGS``), so a
tag-stuffed post whose 11th or later tag is one of the two counts as "without".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Engine,
    Integer,
    Select,
    Text,
    and_,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    union_all,
)

from monitor.errors import InputError
from monitor.store.queries import align_range
from monitor.store.schema import post_tags, posts, tag_buckets, tag_pair_buckets

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


@dataclass(frozen=True, slots=True)
class _Totals:
    posts: int
    scored: int
    compound_sum: float


@dataclass(frozen=True, slots=True)
class _Rollups:
    """What relate reads: both hourly volume series, each tag's totals, the shared posts."""

    volume_a: FloatArray
    volume_b: FloatArray
    total_a: _Totals
    total_b: _Totals
    both: _Totals


def _hour_number(engine: Engine, column: Any) -> ColumnElement[Any]:
    """Whole hours since the Unix epoch of a bucket start, as an integer division.

    Cheaper than queries.series' general step arithmetic (no floor() over a
    float), which counts here: it runs once per 5-minute row.
    """
    hour = literal_column("3600", BigInteger)
    if engine.dialect.name == "postgresql":
        return cast(func.date_part("epoch", column), BigInteger).op("/")(hour)
    version = getattr(engine.dialect.dbapi, "sqlite_version_info", (0,))
    seconds = (func.unixepoch(column) if tuple(version) >= (3, 38)
               else cast(func.strftime("%s", column), BigInteger))
    return seconds.op("/")(hour)


def _rollups(engine: Engine, tag_a: str, tag_b: str, start: datetime, end: datetime
             ) -> _Rollups:
    """One statement over the rollups for ``[start, end)`` (whole UTC hours).

    Three rows: per tag (part 0 for A, 1 for B) its non-empty hours and their
    post counts as two aligned comma-separated strings plus its totals; part 2
    the sums of the posts carrying both. Strings rather than a row per hour:
    thousands of result rows cost more in Python than in SQL, and the garbage
    collections their objects trigger doubled the time of one call in four.
    Each tag is grouped on its own: two small sorts are cheaper than one large
    one on SQLite.
    """
    b = tag_buckets.c
    hour = _hour_number(engine, b.bucket_start).label("hour")

    def per_hour(part: int, tag: str) -> Select[Any]:
        return (
            select(literal_column(str(part), Integer).label("part"), hour,
                   func.sum(b.posts).label("posts"), func.sum(b.scored).label("scored"),
                   func.sum(b.compound_sum).label("csum"))
            .where(b.tag == tag, b.bucket_start >= start, b.bucket_start < end)
            .group_by(hour)
        )

    hours = union_all(per_hour(0, tag_a), per_hour(1, tag_b)).subquery()
    concat = func.string_agg if engine.dialect.name == "postgresql" else func.group_concat
    # both aggregates read the group's rows in the same order, so the lists align
    per_tag = (
        select(hours.c.part, concat(cast(hours.c.hour, Text), ","),
               concat(cast(hours.c.posts, Text), ","), func.sum(hours.c.posts),
               func.sum(hours.c.scored), func.sum(hours.c.csum))
        .group_by(hours.c.part)
    )
    p = tag_pair_buckets.c
    low, high = sorted((tag_a, tag_b))
    shared = (
        select(literal_column("2", Integer), null(), null(), func.sum(p.posts),
               func.sum(p.scored), func.sum(p.compound_sum))
        .where(p.tag_a == low, p.tag_b == high, p.bucket_start >= start, p.bucket_start < end)
    )
    first = int(start.timestamp()) // 3600
    n = int((end - start) / timedelta(hours=1))
    volumes = (np.zeros(n), np.zeros(n))
    totals = [_Totals(0, 0, 0.0)] * 3
    with engine.connect() as conn:
        rows: list[Any] = list(conn.execute(union_all(per_tag, shared)))
    for part, hour_list, posts_list, n_posts, n_scored, csum in rows:
        if n_posts is None:  # no shared posts: SUM over no rows
            continue
        totals[part] = _Totals(int(n_posts), int(n_scored or 0), float(csum or 0.0))
        if part < 2 and hour_list:
            at = np.fromstring(hour_list, dtype=np.int64, sep=",") - first
            volumes[part][at] = np.fromstring(posts_list, dtype=np.float64, sep=",")
    return _Rollups(volumes[0], volumes[1], totals[0], totals[1], totals[2])


def _split(tag: str, other: str, total: _Totals, both: _Totals) -> ToneSplit:
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
    a = post_tags.alias("a")
    o = post_tags.alias("o")
    has_other = case((o.c.post_id.is_(None), 0), else_=1).label("has_other")
    stmt = (
        select(
            has_other,
            func.count().label("n"),
            func.count(posts.c.compound).label("scored"),
            func.avg(posts.c.compound).label("mean"),
        )
        .select_from(
            a.join(posts, posts.c.id == a.c.post_id).outerjoin(
                o, and_(o.c.post_id == a.c.post_id, o.c.tag == other)
            )
        )
        .where(a.c.tag == tag, a.c.created_at >= since, a.c.created_at < until)
        .group_by(has_other)
    )
    parts: dict[int, tuple[int, int, float | None]] = {0: (0, 0, None), 1: (0, 0, None)}
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            mean = None if row.mean is None else float(row.mean)
            parts[int(row.has_other)] = (int(row.n), int(row.scored), mean)
    return ToneSplit(
        tag=tag, other=other,
        posts=parts[0][0] + parts[1][0],
        with_other=parts[1][0], without_other=parts[0][0],
        mean_with=parts[1][2], mean_without=parts[0][2],
        scored_with=parts[1][1], scored_without=parts[0][1],
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
    data = _rollups(engine, tag_a, tag_b, start, end)
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
