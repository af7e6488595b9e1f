"""The reads behind the relate view (:mod:`monitor.analyse.relate`).

:func:`pair_rollups` answers everything relate needs in one statement over the
rollups: both tags' hourly volume, each tag's totals (``tag_buckets``) and the
sums of the posts carrying both (``tag_pair_buckets``). :func:`split_from_posts`
computes the same with/without split from the posts themselves: the truth the
tests and the benchmark hold the rollups to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    ColumnElement,
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

from monitor.store.partitions import same_months
from monitor.store.reading import Reader, reading
from monitor.store.schema import post_tags, posts, tag_buckets, tag_pair_buckets

__all__ = ["PairRollups", "PostsSplit", "Totals", "pair_rollups", "split_from_posts"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Totals:
    """Posts, scored posts and the sum of their compound scores."""

    posts: int
    scored: int
    compound_sum: float


@dataclass(frozen=True, slots=True)
class PairRollups:
    """Both hourly volume series (one point per hour of the range), each tag's totals,
    and the totals of the posts carrying both."""

    volume_a: FloatArray
    volume_b: FloatArray
    total_a: Totals
    total_b: Totals
    both: Totals


@dataclass(frozen=True, slots=True)
class PostsSplit:
    """A tag's posts with and without the other tag: (posts, scored, mean compound) each."""

    with_other: tuple[int, int, float | None]
    without_other: tuple[int, int, float | None]


def _hour_number(db: Reader, column: Any) -> ColumnElement[Any]:
    """Whole hours since the Unix epoch of a bucket start, as an integer division.

    Cheaper than queries.series' general step arithmetic (no floor() over a
    float), which counts here: it runs once per 5-minute row.
    """
    hour = literal_column("3600", BigInteger)
    if db.dialect.name == "postgresql":
        return cast(func.date_part("epoch", column), BigInteger).op("/")(hour)
    version = getattr(db.dialect.dbapi, "sqlite_version_info", (0,))
    seconds = (func.unixepoch(column) if tuple(version) >= (3, 38)
               else cast(func.strftime("%s", column), BigInteger))
    return seconds.op("/")(hour)


def pair_rollups(db: Reader, tag_a: str, tag_b: str, start: datetime, end: datetime
                 ) -> PairRollups:
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
    hour = _hour_number(db, b.bucket_start).label("hour")

    def per_hour(part: int, tag: str) -> Select[Any]:
        return (
            select(literal_column(str(part), Integer).label("part"), hour,
                   func.sum(b.posts).label("posts"), func.sum(b.scored).label("scored"),
                   func.sum(b.compound_sum).label("csum"))
            .where(b.tag == tag, b.bucket_start >= start, b.bucket_start < end)
            .group_by(hour)
        )

    hours = union_all(per_hour(0, tag_a), per_hour(1, tag_b)).subquery()
    concat = func.string_agg if db.dialect.name == "postgresql" else func.group_concat
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
    totals = [Totals(0, 0, 0.0)] * 3
    with reading(db) as conn:
        rows: list[Any] = list(conn.execute(union_all(per_tag, shared)))
    for part, hour_list, posts_list, n_posts, n_scored, csum in rows:
        if n_posts is None:  # no shared posts: SUM over no rows
            continue
        totals[part] = Totals(int(n_posts), int(n_scored or 0), float(csum or 0.0))
        if part < 2 and hour_list:
            at = np.fromstring(hour_list, dtype=np.int64, sep=",") - first
            volumes[part][at] = np.fromstring(posts_list, dtype=np.float64, sep=",")
    return PairRollups(volumes[0], volumes[1], totals[0], totals[1], totals[2])


def split_from_posts(db: Reader, tag: str, other: str, since: datetime, until: datetime
                     ) -> PostsSplit:
    """*tag*'s posts in ``[since, until)`` split by whether they carry *other*, from posts
    alone (every post of *tag* joined to ``posts``)."""
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
            a.join(posts, and_(posts.c.id == a.c.post_id,
                               *same_months(db, posts, a, since, until))).outerjoin(
                o, and_(o.c.post_id == a.c.post_id, o.c.tag == other,
                        *same_months(db, o, a, since, until))
            )
        )
        .where(a.c.tag == tag, a.c.created_at >= since, a.c.created_at < until)
        .group_by(has_other)
    )
    parts: dict[int, tuple[int, int, float | None]] = {0: (0, 0, None), 1: (0, 0, None)}
    with reading(db) as conn:
        for row in conn.execute(stmt):
            mean = None if row.mean is None else float(row.mean)
            parts[int(row.has_other)] = (int(row.n), int(row.scored), mean)
    return PostsSplit(with_other=parts[1], without_other=parts[0])
