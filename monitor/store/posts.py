"""Reads of stored posts: recent posts of a tag, exports, which posts we hold.

The only module that reads ``posts`` row by row (trend reads use the rollups).
What may leave the process is decided by the callers' privacy settings: these
functions return what is stored, and the dashboard, the emails and the export
drop or pseudonymise fields.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, exists, select

from monitor.store.reading import Reader, reading
from monitor.store.schema import post_tags, posts

__all__ = ["StoredPost", "existing_posts", "post_chunks", "recent_posts"]

# keys per IN (...) list: well under SQLite's and psycopg's parameter limits
_LOOKUP_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredPost:
    """One row of ``posts``; ``tags`` is filled only by :func:`post_chunks`."""

    id: int
    platform: str
    key: str
    created_at: datetime
    collected_at: datetime
    author: str | None
    url: str | None
    lang: str | None
    text: str | None
    is_repost: bool
    sensitive: bool
    compound: float | None
    pos: float | None
    neu: float | None
    neg: float | None
    tags: tuple[str, ...] = ()
    text_truncated: bool = False  # text cut to enrich.pipeline.TEXT_MAX_CHARS


def _post(row: Any, tags: tuple[str, ...] = ()) -> StoredPost:
    return StoredPost(
        id=row.id, platform=row.platform, key=row.key, created_at=row.created_at,
        collected_at=row.collected_at, author=row.author, url=row.url, lang=row.lang,
        text=row.text, is_repost=bool(row.is_repost), sensitive=bool(row.sensitive),
        compound=row.compound, pos=row.pos, neu=row.neu, neg=row.neg, tags=tags,
        text_truncated=bool(getattr(row, "text_truncated", False)),
    )


def recent_posts(
    db: Reader,
    tag: str,
    limit: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    quotable: bool = False,
) -> list[StoredPost]:
    """The newest posts of *tag* (in ``[since, until)`` when given), newest first.

    ``quotable`` keeps only posts fit to quote in an alert: with text, not
    marked sensitive (content warning) and not a repost.
    """
    if limit <= 0:
        return []
    t = post_tags.c
    with reading(db) as conn:
        # PostgreSQL: created_at too (a tag row's is its post's), so each tag row reads
        # one month's partition of posts, not every month's (monitor.store.partitions)
        on = t.post_id == posts.c.id
        if conn.dialect.name == "postgresql":
            on = on & (t.created_at == posts.c.created_at)
            if since is not None:
                on = on & (posts.c.created_at >= since)
            if until is not None:
                on = on & (posts.c.created_at < until)
        return [_post(row) for row in conn.execute(
            _recent_stmt(on, tag, limit, since, until, quotable))]


def _recent_stmt(on: Any, tag: str, limit: int, since: datetime | None,
                 until: datetime | None, quotable: bool) -> Any:
    t = post_tags.c
    stmt = select(posts).join(post_tags, on).where(t.tag == tag)
    if since is not None:
        stmt = stmt.where(t.created_at >= since)
    if until is not None:
        stmt = stmt.where(t.created_at < until)
    if quotable:
        stmt = stmt.where(posts.c.text.is_not(None), posts.c.sensitive.is_(False),
                          posts.c.is_repost.is_(False))
    return stmt.order_by(t.created_at.desc(), posts.c.id.desc()).limit(limit)


def post_chunks(
    engine: Engine, tags: Sequence[str], since: datetime, until: datetime, chunk: int
) -> Iterator[list[StoredPost]]:
    """Posts created in ``[since, until)`` carrying any of *tags* (all if empty), with
    their tags, oldest first, *chunk* at a time.

    A streaming cursor: a million posts never sit in memory. Takes an engine,
    not a connection: each chunk's tags are read on a second connection while
    the cursor keeps the first one busy.
    """
    p, t = posts.c, post_tags.c
    # PostgreSQL: the tag rows of these posts lie in the same months' partitions
    months = ([t.created_at >= since, t.created_at < until]
              if engine.dialect.name == "postgresql" else [])
    stmt = (select(posts).where(p.created_at >= since, p.created_at < until)
            .order_by(p.created_at, p.id))
    if tags:
        stmt = stmt.where(exists().where(t.post_id == p.id, t.tag.in_(list(tags)), *months))
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(stmt)
        for part in result.partitions(chunk):
            ids = [row.id for row in part]
            tag_map: dict[int, list[str]] = {}
            with engine.connect() as side:
                for pid, tag in side.execute(
                    select(post_tags.c.post_id, post_tags.c.tag)
                    .where(post_tags.c.post_id.in_(ids), *months)
                    .order_by(post_tags.c.post_id, post_tags.c.tag)
                ):
                    tag_map.setdefault(pid, []).append(tag)
            yield [_post(row, tuple(tag_map.get(row.id, ()))) for row in part]


def existing_posts(
    db: Reader, platforms: Collection[str], keys: Collection[str]
) -> set[tuple[str, str]]:
    """The ``(platform, key)`` pairs among *platforms* × *keys* that are stored."""
    if not platforms or not keys:
        return set()
    wanted = sorted(keys)
    found: set[tuple[str, str]] = set()
    p = posts.c
    with reading(db) as conn:
        for i in range(0, len(wanted), _LOOKUP_CHUNK):
            rows = conn.execute(select(p.platform, p.key).where(
                p.platform.in_(sorted(platforms)), p.key.in_(wanted[i:i + _LOOKUP_CHUNK])))
            found.update((row.platform, row.key) for row in rows)
    return found
