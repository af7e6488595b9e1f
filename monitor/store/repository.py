"""Writes. ``write_batch`` stores a batch in ONE transaction: posts, tags, bucket
increments, deletions, the cursor and the stream's health. Only rows that were
really inserted are counted, so re-running a batch changes nothing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from monitor.models import Cursor, ScoredPost, StreamKey
from monitor.store.schema import (
    BUCKET_SECONDS,
    cursors,
    deletions,
    post_tags,
    posts,
    stream_health,
    tag_buckets,
)

__all__ = [
    "WriteResult",
    "bucket_start",
    "insert_for",
    "load_cursor",
    "record_failure",
    "write_batch",
]

# compound thresholds from the VADER paper: >= 0.05 positive, <= -0.05 negative
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write really changed."""

    inserted: int
    duplicates: int
    tag_rows: int


def bucket_start(ts: datetime) -> datetime:
    """The start of the 5-minute bucket holding *ts* (UTC)."""
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % BUCKET_SECONDS, tz=UTC)


def insert_for(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """A dialect INSERT that understands ON CONFLICT (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _post_row(post: ScoredPost, now: datetime) -> dict[str, Any]:
    s = post.sentiment
    return {
        "platform": post.platform,
        "key": post.key,
        "created_at": post.created_at,
        "collected_at": now,
        "author": post.author,
        "url": post.url,
        "lang": post.lang,
        "text": post.text,
        "is_repost": post.is_repost,
        "sensitive": post.sensitive,
        "compound": s.compound if s else None,
        "pos": s.pos if s else None,
        "neu": s.neu if s else None,
        "neg": s.neg if s else None,
    }


def _bucket_increments(inserted: Iterable[ScoredPost]) -> list[dict[str, Any]]:
    acc: dict[tuple[str, datetime], list[float]] = {}
    for post in inserted:
        start = bucket_start(post.created_at)
        s = post.sentiment
        for tag in post.tags:
            row = acc.setdefault((tag, start), [0, 0, 0.0, 0.0, 0, 0, 0])
            row[0] += 1
            if s is not None:
                row[1] += 1
                row[2] += s.compound
                row[3] += s.compound * s.compound
                if s.compound >= POSITIVE_AT:
                    row[4] += 1
                elif s.compound <= NEGATIVE_AT:
                    row[6] += 1
                else:
                    row[5] += 1
    return [
        {
            "tag": tag,
            "bucket_start": start,
            "posts": int(v[0]),
            "scored": int(v[1]),
            "compound_sum": float(v[2]),
            "compound_sq_sum": float(v[3]),
            "positive": int(v[4]),
            "neutral": int(v[5]),
            "negative": int(v[6]),
        }
        for (tag, start), v in acc.items()
    ]


def _add_buckets(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    stmt = insert_for(conn, tag_buckets)
    ex = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[tag_buckets.c.tag, tag_buckets.c.bucket_start],
        set_={
            "posts": tag_buckets.c.posts + ex.posts,
            "scored": tag_buckets.c.scored + ex.scored,
            "compound_sum": tag_buckets.c.compound_sum + ex.compound_sum,
            "compound_sq_sum": tag_buckets.c.compound_sq_sum + ex.compound_sq_sum,
            "positive": tag_buckets.c.positive + ex.positive,
            "neutral": tag_buckets.c.neutral + ex.neutral,
            "negative": tag_buckets.c.negative + ex.negative,
        },
    )
    conn.execute(stmt, rows)


def _save_cursor(conn: Connection, cursor: Cursor, now: datetime) -> None:
    stmt = insert_for(conn, cursors).values(
        source=cursor.source, stream=cursor.stream, value=cursor.value, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[cursors.c.source, cursors.c.stream],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(stmt)


def _touch_health(
    conn: Connection,
    stream: StreamKey,
    now: datetime,
    *,
    collected: int = 0,
    rejected: int = 0,
    newest: datetime | None = None,
    error: str | None = None,
) -> None:
    ok = error is None
    values: dict[str, Any] = {
        "source": stream.source,
        "stream": stream.name,
        "last_attempt_at": now,
        "last_success_at": now if ok else None,
        "last_error_at": None if ok else now,
        "last_error": error,
        "last_post_at": newest,
        "lag_seconds": (now - newest).total_seconds() if newest else None,
        "posts_collected": collected,
        "posts_rejected": rejected,
        "fetch_errors": 0 if ok else 1,
    }
    stmt = insert_for(conn, stream_health).values(**values)
    h = stream_health.c
    update: dict[str, Any] = {
        "last_attempt_at": now,
        "posts_collected": h.posts_collected + collected,
        "posts_rejected": h.posts_rejected + rejected,
    }
    if ok:
        update["last_success_at"] = now
    else:
        update.update(last_error_at=now, last_error=error, fetch_errors=h.fetch_errors + 1)
    if newest is not None:
        update["last_post_at"] = newest
        update["lag_seconds"] = values["lag_seconds"]
    stmt = stmt.on_conflict_do_update(index_elements=[h.source, h.stream], set_=update)
    conn.execute(stmt)


def write_batch(
    engine: Engine,
    posts_in: Sequence[ScoredPost],
    *,
    cursor: Cursor | None = None,
    stream: StreamKey | None = None,
    deleted: Sequence[tuple[str, str]] = (),
    rejected: int = 0,
    now: datetime | None = None,
) -> WriteResult:
    """Store posts, their tags, bucket increments, deletions, cursor and health atomically.

    Duplicates (same platform and key, in this batch or already stored) are
    skipped and do not touch the buckets.
    """
    now = now or datetime.now(UTC)
    unique: dict[tuple[str, str], ScoredPost] = {}
    for post in posts_in:
        unique.setdefault((post.platform, post.key), post)
    with engine.begin() as conn:
        inserted: list[tuple[int, ScoredPost]] = []
        if unique:
            stmt = (
                insert_for(conn, posts)
                .on_conflict_do_nothing(index_elements=[posts.c.platform, posts.c.key])
                .returning(posts.c.id, posts.c.platform, posts.c.key)
            )
            result = conn.execute(stmt, [_post_row(p, now) for p in unique.values()])
            inserted = [(row.id, unique[(row.platform, row.key)]) for row in result]
        tag_rows = [
            {"post_id": pid, "tag": tag, "created_at": post.created_at}
            for pid, post in inserted
            for tag in post.tags
        ]
        if tag_rows:
            conn.execute(post_tags.insert(), tag_rows)
        _add_buckets(conn, _bucket_increments(p for _, p in inserted))
        if deleted:
            stmt_d = insert_for(conn, deletions).on_conflict_do_nothing()
            conn.execute(stmt_d, [{"platform": pl, "key": k, "seen_at": now} for pl, k in deleted])
        if cursor is not None:
            _save_cursor(conn, cursor, now)
        if stream is not None:
            newest = max((p.created_at for p in unique.values()), default=None)
            _touch_health(
                conn, stream, now, collected=len(inserted), rejected=rejected, newest=newest
            )
    return WriteResult(
        inserted=len(inserted), duplicates=len(posts_in) - len(inserted), tag_rows=len(tag_rows)
    )


def record_failure(
    engine: Engine, stream: StreamKey, error: str, now: datetime | None = None
) -> None:
    """Note a failed fetch in the stream's health (one line, no post content)."""
    with engine.begin() as conn:
        _touch_health(conn, stream, now or datetime.now(UTC), error=error[:500])


def load_cursor(engine: Engine, source: str, stream: str) -> Cursor | None:
    """The saved cursor of a stream, or None on its first run."""
    with engine.connect() as conn:
        value = conn.execute(
            select(cursors.c.value).where(cursors.c.source == source, cursors.c.stream == stream)
        ).scalar_one_or_none()
    return None if value is None else Cursor(source=source, stream=stream, value=value)
