"""Per-bucket history of a tag as arrays: what the shift rules and the backtest read.

The sentiment-shift and emerging co-tag rules test a recent window against
blocks of a baseline, and ``monitor backtest`` replays them over months; both
want the same thing from the store: one row per 5-minute bucket, laid on a
dense grid (empty buckets are zeros) so the detector can take prefix sums.
One statement per tag (or per range) reads a whole span, so a 90-day replay
queries once instead of once per step.

* :func:`tone_buckets` — posts, scored posts, compound sum and sum of squares
  per bucket, from ``tag_buckets``;
* :func:`cotag_buckets` — a tag's posts per bucket and, per other tag, the
  posts carrying both, from ``post_tags`` (the same rows ``queries.cotags``
  counts, so a window's share is exactly what the email shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import and_, func, select

from monitor.store.partitions import same_months
from monitor.store.queries import _bucket_epoch, _utc
from monitor.store.reading import Reader, reading
from monitor.store.schema import BUCKET_SECONDS, post_tags, tag_buckets

__all__ = ["CotagSeries", "ToneSeries", "cotag_buckets", "grid_size", "tone_buckets"]

Array = npt.NDArray[np.float64]


def grid_size(since: datetime, until: datetime) -> int:
    """Buckets in ``[since, until)`` (both on bucket boundaries)."""
    return max(0, int((until - since).total_seconds()) // BUCKET_SECONDS)


@dataclass(frozen=True, slots=True)
class ToneSeries:
    """One tag's buckets from ``start`` on: index ``i`` is the bucket at ``start + i*5m``."""

    tag: str
    start: datetime
    posts: Array
    scored: Array
    compound_sum: Array
    compound_sq_sum: Array


@dataclass(frozen=True, slots=True)
class CotagSeries:
    """A tag's posts per bucket and, per co-occurring tag, the posts carrying both."""

    tag: str
    start: datetime
    totals: Array
    pairs: dict[str, Array] = field(default_factory=dict)


def _index(start: datetime, at: datetime) -> int:
    return int((_utc(at) - start).total_seconds()) // BUCKET_SECONDS


def tone_buckets(
    db: Reader, tags: Sequence[str], since: datetime, until: datetime
) -> dict[str, ToneSeries]:
    """Every tag asked for, over the buckets of ``[since, until)`` (bucket-aligned)."""
    since, until = _utc(since), _utc(until)
    size = grid_size(since, until)
    wanted = list(dict.fromkeys(tags))
    arrays = {t: np.zeros((4, size)) for t in wanted}
    if wanted and size:
        b = tag_buckets.c
        stmt = (select(b.tag, b.bucket_start, b.posts, b.scored, b.compound_sum,
                       b.compound_sq_sum)
                .where(b.tag.in_(wanted), b.bucket_start >= since, b.bucket_start < until))
        with reading(db) as conn:
            for tag, at, n, scored, csum, csq in conn.execute(stmt):
                i = _index(since, at)
                if 0 <= i < size:
                    arrays[tag][:, i] += (n or 0, scored or 0, csum or 0.0, csq or 0.0)
    return {t: ToneSeries(t, since, a[0], a[1], a[2], a[3]) for t, a in arrays.items()}


def cotag_buckets(
    db: Reader, tag: str, since: datetime, until: datetime, *,
    only: Sequence[str] | None = None, min_posts: int = 1,
) -> CotagSeries:
    """*tag*'s posts per bucket of ``[since, until)`` and the co-tagged posts per other tag.

    *only* restricts the other tags (the rule's baseline of its candidates);
    other tags with fewer than *min_posts* co-tagged posts over the whole range
    are left out (they can never be a candidate).
    """
    since, until = _utc(since), _utc(until)
    size = grid_size(since, until)
    totals = np.zeros(size)
    out = CotagSeries(tag, since, totals)
    if not size or (only is not None and not only):
        return out
    a = post_tags.alias("a")
    o = post_tags.alias("o")
    in_range = and_(a.c.tag == tag, a.c.created_at >= since, a.c.created_at < until)
    bucket = _bucket_epoch(db, a.c.created_at, BUCKET_SECONDS).label("bucket")
    total_stmt = select(bucket, func.count()).where(in_range).group_by(bucket)
    pair_stmt = (
        select(o.c.tag, bucket, func.count())
        .select_from(a.join(o, and_(o.c.post_id == a.c.post_id, o.c.tag != a.c.tag,
                                    *same_months(db, o, a, since, until))))
        .where(in_range).group_by(o.c.tag, bucket)
    )
    if only is not None:
        pair_stmt = pair_stmt.where(o.c.tag.in_(list(only)))
    first = int(since.timestamp())
    with reading(db) as conn:
        for epoch, n in conn.execute(total_stmt):
            i = (int(epoch) - first) // BUCKET_SECONDS
            if 0 <= i < size:
                totals[i] += int(n)
        rows = conn.execute(pair_stmt).all()
    pairs: dict[str, Array] = {}
    for other, epoch, n in rows:
        i = (int(epoch) - first) // BUCKET_SECONDS
        if 0 <= i < size:
            arr = pairs.get(other)
            if arr is None:
                arr = pairs[other] = np.zeros(size)
            arr[i] += int(n)
    out.pairs.update({k: v for k, v in pairs.items() if v.sum() >= min_posts})
    return out
