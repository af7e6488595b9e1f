"""Erasure on request: one author's posts, or one post, out of the database.

``monitor forget`` (monitor.enrich.erasure) works out which stored values name
the person (the handle itself and its keyed pseudonym) and calls these. Each
call is one transaction:

- removing posts goes through :func:`monitor.store.erase.apply_deletions`, the
  path platform deletions take: the post rows, their tags, text and author go,
  a ``deletions`` tombstone (platform, key, time) stays so the post is not
  stored again when a replay, backfill or import brings it back, and the
  5-minute rollups follow ``privacy.deletions`` (keep counting, or recount);
- ``keep_posts`` only nulls ``posts.author``: the posts stay, counted and
  scored, but nothing links them to anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, or_, select, update

from monitor.store.erase import apply_deletions
from monitor.store.schema import posts

__all__ = ["Forgotten", "forget_author_rows", "forget_post_rows"]


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What one erasure changed."""

    matched: int  # posts that named the person / matched the reference
    removed: int  # post rows deleted (with tags, text and author)
    unlinked: int  # posts kept with their author set to NULL
    recounted: bool  # the rollups were decremented for the removed posts
    blocked: bool = False  # the author's later posts are not stored (forgotten_authors)
    newly_blocked: bool = False  # ... and were not blocked before


def _forget(engine: Engine, where: object, *, keep_posts: bool, recount: bool,
            now: datetime) -> Forgotten:
    p = posts.c
    with engine.begin() as conn:
        found = conn.execute(select(p.id, p.platform, p.key).where(where)  # type: ignore[arg-type]
                             .order_by(p.platform, p.key)).all()
        if not found:
            return Forgotten(0, 0, 0, False)
        if keep_posts:
            ids = [int(r.id) for r in found]
            unlinked = 0
            for start in range(0, len(ids), 500):
                unlinked += conn.execute(
                    update(posts).where(p.id.in_(ids[start:start + 500]), p.author.is_not(None))
                    .values(author=None)).rowcount
            return Forgotten(len(found), 0, unlinked, False)
        removed = apply_deletions(conn, [(r.platform, r.key) for r in found], now,
                                  recount=recount)
        return Forgotten(len(found), removed, 0, recount and removed > 0)


def forget_author_rows(engine: Engine, platform: str, values: Sequence[str], *,
                       keep_posts: bool, recount: bool, now: datetime) -> Forgotten:
    """Posts of *platform* whose stored author is one of *values*."""
    if not values:
        return Forgotten(0, 0, 0, False)
    p = posts.c
    return _forget(engine, (p.platform == platform) & p.author.in_(list(values)),
                   keep_posts=keep_posts, recount=recount, now=now)


def forget_post_rows(engine: Engine, ref: str, platform: str | None, *, keep_posts: bool,
                     recount: bool, now: datetime, keys: Sequence[str] = ()) -> Forgotten:
    """The post whose URL is *ref* or whose key is *ref* or one of *keys* (what
    *ref* is stored as: its pseudonyms), on *platform* when given."""
    p = posts.c
    where = or_(p.key.in_(sorted({ref, *keys})), p.url == ref)
    if platform is not None:
        where = where & (p.platform == platform)
    return _forget(engine, where, keep_posts=keep_posts, recount=recount, now=now)
