"""The plan of one batch write, made once in plain Python before the transaction.

``plan_batch`` does every step that needs no database: it drops repeated posts
(the first copy of a (platform, key) wins), orders the rest, normalises times
to aware UTC and keeps the deletions, cursor and health inputs. A per-dialect
executor (``write_sqlite``, ``write_postgres``) then stores the plan's posts and
tags and adds the bucket and tag-pair increments of the posts it *really*
inserted, which only the database knows (a post may already be stored, or
deleted: a ``deletions`` tombstone keeps it out, see ``erase``).

The increments are applied in SQL from the rows just inserted rather than
summed here: summing ~1,100 bucket and ~1,100 pair rows per 500-post batch in
Python and binding them cost SQLite about 10 µs per post more (20 % of the
write) than letting it read them from the new ``post_tags`` rows. Their rules
live in one place each: ``buckets`` and ``pairs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from monitor.models import Cursor, ScoredPost, StreamKey

__all__ = ["POST_COLUMNS", "BatchPlan", "Executor", "Prepared", "Stored", "aware", "plan_batch"]

# the order both executors write a post's columns in
POST_COLUMNS = (
    "platform, key, created_at, collected_at, author, url, lang, text, is_repost, sensitive, "
    "compound, pos, neu, neg, text_truncated"
)


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Everything one ``write_batch`` will store, decided before the transaction."""

    now: datetime  # aware UTC: collected_at, and the health and cursor times
    # one post per (platform, key), sorted by it: concurrent writers then meet
    # shared keys, and lock their rows, in the same order (no deadlocks)
    posts: Sequence[ScoredPost]
    created: Sequence[datetime]  # posts[i].created_at as aware UTC
    deleted: Sequence[tuple[str, str]]  # (platform, key), sorted for the same reason
    recount: bool  # deletions subtract their posts from the rollups (privacy.deletions)
    cursor: Cursor | None
    stream: StreamKey | None
    rejected: int

    @property
    def newest(self) -> datetime | None:
        """The newest post's time, for the stream's lag (None for an empty batch)."""
        return max(self.created, default=None)


class Stored(NamedTuple):
    """What an executor really added."""

    inserted: int  # posts new to the database (duplicates excluded)
    tag_rows: int  # their post_tags rows


@dataclass(frozen=True, slots=True)
class Prepared:
    """A plan's posts as its executor's ready rows, made before the transaction.

    Plain Python and picklable: an import makes them in its worker processes, so
    that its one writer only executes (:func:`monitor.store.write.write_prepared`).
    """

    dialect: str  # the executor's: "sqlite" or "postgresql"
    given: int  # posts given, repeats included (the rest are duplicates)
    rows: Any  # what the executor's ``execute`` takes
    months: tuple[datetime, ...]  # one created_at per calendar month of the posts
    newest: datetime | None  # the newest post's time


class Executor(NamedTuple):
    """Stores a plan's posts and tags, and the bucket and tag-pair increments of
    the posts it really inserted, in the caller's open transaction: ``prepare``
    turns the plan into rows (in any process), ``execute`` stores them.

    ``execute``'s first argument is the DBAPI connection under that transaction
    (sqlite3 or psycopg): each executor binds rows with its driver's fast bulk path.
    """

    prepare: Callable[[BatchPlan], Any]
    execute: Callable[[Any, Any], Stored]


def aware(ts: datetime) -> datetime:
    """*ts* as aware UTC; naive is taken as UTC (as ``schema.UTCDateTime`` does)."""
    tz = ts.tzinfo
    if tz is UTC:
        return ts
    return ts.replace(tzinfo=UTC) if tz is None else ts.astimezone(UTC)


def plan_batch(
    posts_in: Sequence[ScoredPost],
    *,
    now: datetime,
    cursor: Cursor | None = None,
    stream: StreamKey | None = None,
    deleted: Sequence[tuple[str, str]] = (),
    rejected: int = 0,
    recount: bool = False,
) -> BatchPlan:
    """The plan of one batch: repeats dropped, posts and deletions in key order.

    A post deleted in the same batch is dropped: the deletion wins, whatever
    the order the platform reported them in.
    """
    unique: dict[tuple[str, str], ScoredPost] = {}
    for post in posts_in:
        unique.setdefault((post.platform, post.key), post)
    for gone in deleted:
        unique.pop(gone, None)
    ordered = [unique[k] for k in sorted(unique)]
    return BatchPlan(
        now=aware(now),
        posts=ordered,
        created=[aware(post.created_at) for post in ordered],
        deleted=sorted(set(deleted)),
        recount=recount,
        cursor=cursor,
        stream=stream,
        rejected=rejected,
    )
