"""Read-side facts an email needs: hourly volume, tone, co-tags, example posts.

Plain SQL over ``tag_buckets`` / ``post_tags`` / ``posts`` (portable between
SQLite and PostgreSQL; aggregation to hours is done here, not in SQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.orm import aliased

from monitor.config import PrivacySettings
from monitor.store.schema import post_tags, posts, tag_buckets

__all__ = ["ExamplePost", "TagSeries", "cotags", "example_posts", "hourly_series", "window_stats"]


@dataclass(frozen=True, slots=True)
class TagSeries:
    """Hourly points of one tag, oldest first; hours without posts are zero."""

    tag: str
    hours: list[datetime]
    posts: list[int]
    mean_compound: list[float | None]


@dataclass(frozen=True, slots=True)
class ExamplePost:
    url: str | None
    text: str
    created_at: datetime
    compound: float | None


def _hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def hourly_series(engine: Engine, tag: str, since: datetime, until: datetime) -> TagSeries:
    """Posts and mean VADER compound per complete hour in [since, until).

    The running hour is left out: drawn as it stands it would look like a
    collapse in volume.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(tag_buckets.c.bucket_start, tag_buckets.c.posts, tag_buckets.c.scored,
                   tag_buckets.c.compound_sum)
            .where(tag_buckets.c.tag == tag, tag_buckets.c.bucket_start >= since,
                   tag_buckets.c.bucket_start < until)
        ).all()
    start, end = _hour(since), _hour(until)
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
    return TagSeries(tag, hours, counts, means)


def window_stats(engine: Engine, tag: str, since: datetime, until: datetime) -> tuple[
    int, float | None
]:
    """(posts, mean compound or None) of *tag* in [since, until)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(func.coalesce(func.sum(tag_buckets.c.posts), 0),
                   func.coalesce(func.sum(tag_buckets.c.scored), 0),
                   func.coalesce(func.sum(tag_buckets.c.compound_sum), 0.0))
            .where(tag_buckets.c.tag == tag, tag_buckets.c.bucket_start >= since,
                   tag_buckets.c.bucket_start < until)
        ).one()
    total, scored, csum = int(row[0]), int(row[1]), float(row[2])
    return total, (csum / scored if scored else None)


def cotags(engine: Engine, tag: str, since: datetime, until: datetime,
           limit: int) -> list[tuple[str, int]]:
    """Tags most often on the same posts as *tag* in [since, until)."""
    if limit <= 0:
        return []
    other = aliased(post_tags)
    with engine.connect() as conn:
        rows = conn.execute(
            select(other.c.tag, func.count().label("n"))
            .select_from(post_tags.join(other, and_(other.c.post_id == post_tags.c.post_id,
                                                    other.c.tag != post_tags.c.tag)))
            .where(post_tags.c.tag == tag, post_tags.c.created_at >= since,
                   post_tags.c.created_at < until)
            .group_by(other.c.tag)
            .order_by(func.count().desc(), other.c.tag)
            .limit(limit)
        ).all()
    return [(str(r.tag), int(r.n)) for r in rows]


def example_posts(engine: Engine, privacy: PrivacySettings, tag: str, since: datetime,
                  until: datetime, limit: int) -> list[ExamplePost]:
    """A few recent posts of *tag*, only when privacy allows quoting them.

    Both ``privacy.store_text`` and ``privacy.example_posts_in_alerts`` must be
    true; posts marked sensitive (content warnings) are never quoted.
    """
    if limit <= 0 or not (privacy.store_text and privacy.example_posts_in_alerts):
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            select(posts.c.url, posts.c.text, posts.c.created_at, posts.c.compound)
            .join(post_tags, post_tags.c.post_id == posts.c.id)
            .where(post_tags.c.tag == tag, post_tags.c.created_at >= since,
                   post_tags.c.created_at < until, posts.c.text.is_not(None),
                   posts.c.sensitive.is_(False), posts.c.is_repost.is_(False))
            .order_by(post_tags.c.created_at.desc())
            .limit(limit)
        ).all()
    out = []
    for r in rows:
        text = " ".join(str(r.text).split())
        if len(text) > 280:
            text = text[:279] + "…"
        out.append(ExamplePost(r.url, text, r.created_at, r.compound))
    return out
