"""Per-tag reads over one window of the 5-minute rollups.

What the detector and the notifiers ask of a tag: its volume and mean tone
over a window (one query for many tags), this period against an earlier one,
its posts per bucket, when it was first seen, and its hourly series for a
chart. All read ``tag_buckets``, so a window counts whole buckets: a bucket
counts when it starts inside ``[since, until)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from monitor.store.queries import TagTotal
from monitor.store.reading import Reader, reading
from monitor.store.schema import tag_buckets

__all__ = [
    "TagSeries",
    "TagWindow",
    "bucket_posts",
    "compare_periods",
    "first_bucket",
    "hourly_series",
    "window_totals",
]


@dataclass(frozen=True, slots=True)
class TagWindow:
    """A tag's volume and mean tone over a window (``mean_compound`` None: nothing scored)."""

    tag: str
    posts: int
    scored: int
    mean_compound: float | None


@dataclass(frozen=True, slots=True)
class TagSeries:
    """Hourly points of one tag, oldest first; hours without posts are zero."""

    tag: str
    hours: list[datetime]
    posts: list[int]
    mean_compound: list[float | None]
    # set when the last point is the running hour, counted only up to this instant
    partial_until: datetime | None = None


def window_totals(
    db: Reader, tags: Sequence[str], since: datetime, until: datetime
) -> dict[str, TagWindow]:
    """Posts, scored posts and mean compound of each tag in ``[since, until)``.

    Every tag asked for is in the answer, with zeros when it had no posts.
    """
    wanted = list(dict.fromkeys(tags))
    if not wanted:
        return {}
    b = tag_buckets.c
    stmt = (
        select(b.tag, func.sum(b.posts), func.sum(b.scored), func.sum(b.compound_sum))
        .where(b.tag.in_(wanted), b.bucket_start >= since, b.bucket_start < until)
        .group_by(b.tag)
    )
    with reading(db) as conn:
        rows = {row[0]: row for row in conn.execute(stmt)}
    out = {}
    for tag in wanted:
        row = rows.get(tag)
        n_posts, scored, csum = ((int(row[1] or 0), int(row[2] or 0), float(row[3] or 0.0))
                                 if row is not None else (0, 0, 0.0))
        out[tag] = TagWindow(tag, n_posts, scored, csum / scored if scored else None)
    return out


def compare_periods(
    db: Reader, tags: Sequence[str], since: datetime, until: datetime, *, back: timedelta
) -> dict[str, TagTotal]:
    """Each tag in ``[since, until)`` against the same window *back* earlier.

    E.g. the last day against the same day a week before (``back=7d``), which
    keeps the weekday rhythm out of the change. ``growth`` is None when the tag
    had no posts back then.
    """
    now = window_totals(db, tags, since, until)
    then = window_totals(db, tags, since - back, until - back)
    return {
        tag: TagTotal(tag, w.posts, then[tag].posts,
                      (w.posts - then[tag].posts) / then[tag].posts if then[tag].posts else None,
                      w.scored, w.mean_compound)
        for tag, w in now.items()
    }


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def hourly_series(db: Reader, tag: str, since: datetime, until: datetime, *,
                  partial: bool = False) -> TagSeries:
    """Posts and mean VADER compound per complete hour in [since, until).

    The running hour is left out unless *partial*: then it is the last point,
    counted up to *until* and flagged by ``partial_until`` (an alert email shows
    the hour that caused the alert, marked as partial, rather than stopping
    before it). Buckets before *since* are not counted, so the first hour holds
    only the part of it inside the range.
    """
    b = tag_buckets.c
    with reading(db) as conn:
        rows = conn.execute(
            select(b.bucket_start, b.posts, b.scored, b.compound_sum)
            .where(b.tag == tag, b.bucket_start >= since, b.bucket_start < until)
        ).all()
    start, end = _hour(since), _hour(until)
    partial_until = until if partial and until > end else None
    if partial_until is not None:
        end += timedelta(hours=1)
    hours: list[datetime] = []
    cursor = start
    while cursor < end:
        hours.append(cursor)
        cursor += timedelta(hours=1)
    index = {h: i for i, h in enumerate(hours)}
    counts = [0] * len(hours)
    scored = [0] * len(hours)
    sums = [0.0] * len(hours)
    for row in rows:
        i = index.get(_hour(row.bucket_start))
        if i is None:
            continue
        counts[i] += int(row.posts or 0)
        scored[i] += int(row.scored or 0)
        sums[i] += float(row.compound_sum or 0.0)
    means = [sums[i] / scored[i] if scored[i] else None for i in range(len(hours))]
    return TagSeries(tag, hours, counts, means, partial_until)


def first_bucket(db: Reader, tag: str) -> datetime | None:
    """The start of the oldest bucket holding a post of *tag*; None if it has none."""
    b = tag_buckets.c
    with reading(db) as conn:
        first: datetime | None = conn.execute(
            select(func.min(b.bucket_start)).where(b.tag == tag)).scalar()
    return first


def bucket_posts(db: Reader, tag: str, since: datetime, until: datetime) -> dict[datetime, int]:
    """Posts of *tag* per 5-minute bucket start in ``[since, until)``; empty buckets absent."""
    b = tag_buckets.c
    with reading(db) as conn:
        return {
            row.bucket_start: int(row.posts)
            for row in conn.execute(
                select(b.bucket_start, b.posts)
                .where(b.tag == tag, b.bucket_start >= since, b.bucket_start < until))
        }
