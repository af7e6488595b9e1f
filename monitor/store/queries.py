"""Trend reads over a range: per-step series, top tags, co-occurring tags.

Used by the dashboard, the CLI, the detector (co-tag counts) and the emails
(co-tags); :mod:`monitor.store.windows` holds the per-tag window reads.
Everything here is a GROUP BY in SQL over ``tag_buckets`` (5-minute rollups)
or ``post_tags``; Python only fills empty steps and turns rows into records.
The same functions answer on SQLite and PostgreSQL. Each takes a
:data:`~monitor.store.reading.Reader` (an engine, or a connection to read
inside a caller's transaction).

Time ranges are half-open ``[since, until)`` in UTC. Series steps are aligned to
UTC step boundaries counted from the Unix epoch (so ``1h`` starts on the hour and
``1d`` at UTC midnight); a range is widened to whole steps (``since`` floored,
``until`` ceiled) so that no bucket is cut in half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    func,
    literal_column,
    select,
)

from monitor.errors import InputError
from monitor.store.partitions import same_months
from monitor.store.reading import Reader, reading
from monitor.store.schema import BUCKET_SECONDS, post_tags, posts, tag_buckets

__all__ = [
    "MAX_POINTS",
    "CoTag",
    "SeriesPoint",
    "TagTotal",
    "align_range",
    "cotags",
    "data_extent",
    "series",
    "step_seconds",
    "top_tags",
]

# a fill of more steps than this is almost surely a mistake (5m over years); a range
# past it is first clipped to the data that exists (data_extent), then refused
MAX_POINTS = 200_000
# the largest step: a year (one point per year is the coarsest view anyone reads)
MAX_STEP_SECONDS = 366 * 86400


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One tag in one step. ``mean_compound`` is None when nothing was scored."""

    tag: str
    bucket: datetime  # start of the step, aware UTC
    posts: int
    scored: int
    mean_compound: float | None
    positive: int
    neutral: int
    negative: int


@dataclass(frozen=True, slots=True)
class TagTotal:
    """A tag's volume in a period and in the equal period before it.

    ``growth`` is ``(posts - previous) / previous``; None when the tag was absent
    before (a new tag has no finite growth).
    """

    tag: str
    posts: int
    previous: int
    growth: float | None
    scored: int
    mean_compound: float | None


@dataclass(frozen=True, slots=True)
class CoTag:
    """A tag seen on the same posts as the queried tag.

    ``share`` is ``posts / tag_posts``: the fraction of the queried tag's posts
    that also carry this tag; ``mean_compound`` is over those shared posts that
    were scored (0 and None when the tone was not asked for).
    """

    tag: str
    posts: int
    share: float
    scored: int
    mean_compound: float | None
    tag_posts: int  # posts of the queried tag in the range


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def step_seconds(step: timedelta) -> int:
    """Validate a series step: a positive whole multiple of the 5-minute base bucket."""
    seconds = step.total_seconds()
    if seconds <= 0 or seconds % BUCKET_SECONDS != 0:
        raise InputError(
            "step", f"expected a positive multiple of 5m (e.g. 5m, 1h, 1d), got {seconds:g}s"
        )
    if seconds > MAX_STEP_SECONDS:
        raise InputError("step", f"expected a step of at most {MAX_STEP_SECONDS // 86400}d, "
                                 f"got {seconds / 86400:g}d")
    return int(seconds)


def align_range(since: datetime, until: datetime, step: int) -> tuple[datetime, datetime]:
    """Widen ``[since, until)`` to whole UTC steps of *step* seconds."""
    since, until = _utc(since), _utc(until)
    if until <= since:
        raise InputError("range", f"expected since before until, got {since:%Y-%m-%d %H:%M} "
                                  f"to {until:%Y-%m-%d %H:%M}")
    # the epoch is where steps are counted from and before any post: no negative
    # step start, no date before year 1 (an OverflowError) for a huge step
    since = max(since, _EPOCH)
    until = max(until, since + timedelta(microseconds=1))
    start = int(since.timestamp()) // step * step
    end_ts = until.timestamp()
    end = int(-(-end_ts // step)) * step
    return datetime.fromtimestamp(start, tz=UTC), datetime.fromtimestamp(end, tz=UTC)


def _bucket_epoch(engine: Reader, column: Any, step: int) -> ColumnElement[int]:
    """The epoch second of the step holding *column*, in the engine's SQL dialect.

    The step is rendered as a literal (it is a validated int) so the same
    expression text appears in SELECT and GROUP BY, which PostgreSQL requires.
    """
    size: ColumnElement[Any] = literal_column(str(step), BigInteger)
    if engine.dialect.name == "postgresql":
        # date_part gives a double; extract() gives numeric, several times slower per row
        epoch: ColumnElement[Any] = func.floor(func.date_part("epoch", column) / size) * size
    else:
        # SQLite keeps timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text in UTC
        seconds = (func.unixepoch(column) if _sqlite_has_unixepoch(engine)
                   else cast(func.strftime("%s", column), BigInteger))
        epoch = (seconds // size) * size
    return cast(epoch, BigInteger)


def _sqlite_has_unixepoch(engine: Reader) -> bool:
    """unixepoch() (SQLite 3.38+) is cheaper than strftime('%s') and exact for our text."""
    version = getattr(engine.dialect.dbapi, "sqlite_version_info", (0,))
    return tuple(version) >= (3, 38)


def series(
    engine: Reader,
    tags: Sequence[str],
    since: datetime,
    until: datetime,
    step: timedelta = timedelta(hours=1),
) -> list[SeriesPoint]:
    """Per tag, per step in ``[since, until)``: volume and sentiment, holes filled with zeros.

    Points come ordered by tag (in the order given) then time. Tags are matched
    exactly (pass normalised tags: ``metoo``, not ``#MeToo``).
    """
    size = step_seconds(step)
    start, end = align_range(since, until, size)
    n_steps = int((end - start).total_seconds()) // size
    wanted = list(dict.fromkeys(tags))
    if not wanted:
        return []
    if n_steps * len(wanted) > MAX_POINTS:
        # steps before the first or after the last bucket of these tags hold only zeros
        lo, hi = data_extent(engine, wanted, start, end)
        if lo is None or hi is None:
            start, end = align_range(max(start, end - timedelta(seconds=size)), end, size)
        else:
            start, end = align_range(max(start, lo), min(end, hi + timedelta(seconds=1)), size)
        n_steps = int((end - start).total_seconds()) // size
    if n_steps * len(wanted) > MAX_POINTS:
        raise InputError("step", f"{n_steps} steps × {len(wanted)} tags is too many points "
                                 f"(at most {MAX_POINTS}); use a larger step or a shorter "
                                 "range")
    b = tag_buckets.c
    bucket = _bucket_epoch(engine, b.bucket_start, size).label("bucket")
    stmt = (
        select(
            b.tag,
            bucket,
            func.sum(b.posts).label("posts"),
            func.sum(b.scored).label("scored"),
            func.sum(b.compound_sum).label("compound_sum"),
            func.sum(b.positive).label("positive"),
            func.sum(b.neutral).label("neutral"),
            func.sum(b.negative).label("negative"),
        )
        .where(b.tag.in_(wanted), b.bucket_start >= start, b.bucket_start < end)
        .group_by(b.tag, bucket)
    )
    first = int(start.timestamp())
    found: dict[tuple[str, int], SeriesPoint] = {}
    with reading(engine) as conn:
        for tag, epoch, n, scored, csum, pos, neu, neg in conn.execute(stmt):
            epoch = int(epoch)
            scored = int(scored or 0)
            found[(tag, epoch)] = SeriesPoint(
                tag, start + timedelta(seconds=epoch - first), int(n or 0), scored,
                float(csum) / scored if scored else None,
                int(pos or 0), int(neu or 0), int(neg or 0),
            )
    out: list[SeriesPoint] = []
    epochs = range(first, first + n_steps * size, size)
    whens = [start + timedelta(seconds=e - first) for e in epochs]
    get = found.get
    for tag in wanted:
        for epoch, when in zip(epochs, whens, strict=True):
            point = get((tag, epoch))
            out.append(point if point is not None
                       else SeriesPoint(tag, when, 0, 0, None, 0, 0, 0))
    return out


def data_extent(db: Reader, tags: Sequence[str], since: datetime | None = None,
                until: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """The first and last 5-minute bucket of *tags* (within ``[since, until)`` if given).

    Two index lookups on ``(tag, bucket_start)``; (None, None) when there is nothing.
    """
    b = tag_buckets.c
    stmt = select(func.min(b.bucket_start), func.max(b.bucket_start)).where(
        b.tag.in_(list(tags)))
    if since is not None:
        stmt = stmt.where(b.bucket_start >= _utc(since))
    if until is not None:
        stmt = stmt.where(b.bucket_start < _utc(until))
    with reading(db) as conn:
        first, last = conn.execute(stmt).one()
    return (None if first is None else _utc(first), None if last is None else _utc(last))


def top_tags(
    engine: Reader,
    since: datetime,
    until: datetime,
    limit: int = 20,
    *,
    order: str = "volume",
    min_posts: int = 5,
) -> list[TagTotal]:
    """Tags by volume in ``[since, until)``, with growth against the equal period before.

    ``order="growth"`` ranks by growth instead, among tags with at least
    *min_posts* posts in the period (tiny tags would otherwise top any growth
    list by noise); tags new in the period rank first, by volume.
    """
    if order not in ("volume", "growth"):
        raise InputError("order", f"expected 'volume' or 'growth', got {order!r}")
    if limit <= 0:
        raise InputError("limit", f"expected a positive number, got {limit}")
    # whole 5-minute buckets, so a bucket is never half in one period and half out
    since, until = align_range(since, until, BUCKET_SECONDS)
    before = since - (until - since)
    b = tag_buckets.c
    in_now = b.bucket_start >= since
    current = func.sum(case((in_now, b.posts), else_=0)).label("posts")
    previous = func.sum(case((in_now, 0), else_=b.posts)).label("previous")
    scored = func.sum(case((in_now, b.scored), else_=0)).label("scored")
    csum = func.sum(case((in_now, b.compound_sum), else_=0.0)).label("compound_sum")
    stmt = (
        select(b.tag, current, previous, scored, csum)
        .where(b.bucket_start >= before, b.bucket_start < until)
        .group_by(b.tag)
        .having(current > 0)
    )
    if order == "volume":
        stmt = stmt.order_by(current.desc(), b.tag).limit(limit)
    else:
        ratio = cast(current, Float) / func.nullif(previous, 0)
        stmt = (
            stmt.having(current >= min_posts)
            .order_by(case((previous == 0, 0), else_=1), ratio.desc(), current.desc(), b.tag)
            .limit(limit)
        )
    with reading(engine) as conn:
        rows = conn.execute(stmt).all()
    out = []
    for row in rows:
        now_posts, prev_posts, n_scored = int(row.posts), int(row.previous), int(row.scored)
        out.append(
            TagTotal(
                tag=row.tag,
                posts=now_posts,
                previous=prev_posts,
                growth=(now_posts - prev_posts) / prev_posts if prev_posts else None,
                scored=n_scored,
                mean_compound=float(row.compound_sum) / n_scored if n_scored else None,
            )
        )
    return out


def cotags(
    db: Reader,
    tag: str,
    since: datetime,
    until: datetime,
    limit: int | None = 20,
    *,
    only: Sequence[str] | None = None,
    tone: bool = True,
) -> list[CoTag]:
    """Tags found on the same posts as *tag* in ``[since, until)``, most frequent first.

    *only* counts just those tags (what the emerging co-tag rule needs for its
    baseline) and *limit* None lists all. ``tone=False`` skips the join to
    ``posts``: callers that only count (the rule, the email) do not pay for it.
    Empty when *tag* has no posts in the range.
    """
    if limit is not None and limit <= 0:
        raise InputError("limit", f"expected a positive number, got {limit}")
    if only is not None and not only:
        return []
    since, until = _utc(since), _utc(until)
    a = post_tags.alias("a")
    o = post_tags.alias("o")
    in_range = and_(a.c.tag == tag, a.c.created_at >= since, a.c.created_at < until)
    n = func.count().label("posts")
    joined = a.join(o, and_(o.c.post_id == a.c.post_id, o.c.tag != a.c.tag,
                            *same_months(db, o, a, since, until)))
    if tone:
        stmt = select(o.c.tag, n, func.count(posts.c.compound).label("scored"),
                      func.avg(posts.c.compound).label("mean_compound"))
        joined = joined.join(posts, and_(posts.c.id == a.c.post_id,
                                         *same_months(db, posts, a, since, until)))
    else:
        stmt = select(o.c.tag, n)
    stmt = stmt.select_from(joined).where(in_range).group_by(o.c.tag).order_by(n.desc(), o.c.tag)
    if only is not None:
        stmt = stmt.where(o.c.tag.in_(list(only)))
    if limit is not None:
        stmt = stmt.limit(limit)
    with reading(db) as conn:
        # (post_id, tag) is the primary key: one row per post, so count(*) counts posts
        total = int(conn.execute(select(func.count()).select_from(a).where(in_range))
                    .scalar_one())
        if total == 0:
            return []
        rows = conn.execute(stmt).all()
    return [
        CoTag(
            tag=row.tag,
            posts=int(row.posts),
            share=int(row.posts) / total,
            scored=int(row.scored) if tone else 0,
            mean_compound=(float(row.mean_compound)
                           if tone and row.mean_compound is not None else None),
            tag_posts=total,
        )
        for row in rows
    ]
