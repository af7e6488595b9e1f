"""The one write path. ``write_batch`` stores a batch in ONE transaction: posts,
tags, bucket and tag-pair increments, deletions (the posts they remove, see
``erase``), the cursor and the stream's health. Only rows that were really
inserted are counted, so re-running a batch changes nothing.

How: :func:`monitor.store.plan.plan_batch` plans the batch in plain Python; the
executor of the database's dialect (``write_sqlite`` or ``write_postgres``, the
only two the store supports) stores the posts with their increments; the
deletions, cursor and health go through the same SQLAlchemy statements on both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from monitor.errors import StoreError
from monitor.models import Cursor, ScoredPost, StreamKey
from monitor.store.erase import apply_deletions
from monitor.store.plan import BatchPlan, Executor, Stored, plan_batch
from monitor.store.schema import cursors, stream_health
from monitor.store.write_postgres import write_postgres
from monitor.store.write_sqlite import write_sqlite

__all__ = [
    "WriteResult",
    "insert_for",
    "load_cursor",
    "record_failure",
    "write_batch",
]

# (dialect, DBAPI driver) -> executor; make_engine picks psycopg 3 for PostgreSQL
_EXECUTORS: dict[tuple[str, str], Executor] = {
    ("sqlite", "pysqlite"): write_sqlite,
    ("postgresql", "psycopg"): write_postgres,
}


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write really changed."""

    inserted: int
    duplicates: int  # repeats, posts already stored, and posts already deleted
    tag_rows: int
    removed: int = 0  # stored posts removed by this batch's deletions


def insert_for(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """A dialect INSERT that understands ON CONFLICT (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _execute(conn: Connection, plan: BatchPlan) -> Stored:
    """Run *plan*'s posts through the executor of *conn*'s dialect."""
    dialect = conn.dialect
    executor = _EXECUTORS.get((dialect.name, dialect.driver))
    if executor is None:
        raise StoreError(
            f"the store writes with sqlite3 or psycopg 3, not {dialect.name}+{dialect.driver}; "
            "use a sqlite:/// or postgresql+psycopg:// URL"
        )
    driver = conn.connection.driver_connection
    if driver is None:
        raise StoreError("database connection was closed during a batch write")
    return executor(driver, plan)


# The cursor and health upserts run once per batch: built once per dialect and
# shape, with the values as parameters, so SQLAlchemy need not rebuild and re-key
# the statement every time.


@functools.cache
def _cursor_upsert(dialect: str) -> postgresql.Insert | sqlite.Insert:
    stmt = postgresql.insert(cursors) if dialect == "postgresql" else sqlite.insert(cursors)
    return stmt.on_conflict_do_update(
        index_elements=[cursors.c.source, cursors.c.stream],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )


@functools.cache
def _health_upsert(dialect: str, ok: bool, has_newest: bool) -> postgresql.Insert | sqlite.Insert:
    stmt = (
        postgresql.insert(stream_health) if dialect == "postgresql"
        else sqlite.insert(stream_health)
    )
    h, ex = stream_health.c, stmt.excluded
    update: dict[str, Any] = {
        "last_attempt_at": ex.last_attempt_at,
        "posts_collected": h.posts_collected + ex.posts_collected,
        "posts_rejected": h.posts_rejected + ex.posts_rejected,
    }
    if ok:
        update["last_success_at"] = ex.last_success_at
    else:
        update.update(
            last_error_at=ex.last_error_at,
            last_error=ex.last_error,
            fetch_errors=h.fetch_errors + ex.fetch_errors,
        )
    if has_newest:
        update["last_post_at"] = ex.last_post_at
        update["lag_seconds"] = ex.lag_seconds
    return stmt.on_conflict_do_update(index_elements=[h.source, h.stream], set_=update)


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
    conn.execute(_health_upsert(conn.dialect.name, ok, newest is not None), values)


def write_batch(
    engine: Engine,
    posts_in: Sequence[ScoredPost],
    *,
    cursor: Cursor | None = None,
    stream: StreamKey | None = None,
    deleted: Sequence[tuple[str, str]] = (),
    rejected: int = 0,
    now: datetime | None = None,
    recount: bool = False,
) -> WriteResult:
    """Store posts, their tags, bucket increments, deletions, cursor and health atomically.

    Duplicates (same platform and key, in this batch or already stored) are
    skipped and do not touch the buckets. *deleted* (platform, key) pairs are
    recorded and the posts we hold removed (:func:`monitor.store.erase.apply_deletions`;
    *recount* subtracts them from the rollups); a post whose key was ever
    reported deleted is not stored, in this batch or later.
    """
    plan = plan_batch(posts_in, now=now or datetime.now(UTC), cursor=cursor, stream=stream,
                      deleted=deleted, rejected=rejected, recount=recount)
    with engine.begin() as conn:
        # deletions first: their tombstones keep the posts out of the insert below
        removed = (apply_deletions(conn, plan.deleted, plan.now, recount=plan.recount)
                   if plan.deleted else 0)
        stored = _execute(conn, plan) if plan.posts else Stored(0, 0)
        if plan.cursor is not None:
            conn.execute(
                _cursor_upsert(conn.dialect.name),
                {"source": plan.cursor.source, "stream": plan.cursor.stream,
                 "value": plan.cursor.value, "updated_at": plan.now},
            )
        if plan.stream is not None:
            _touch_health(conn, plan.stream, plan.now, collected=stored.inserted,
                          rejected=plan.rejected, newest=plan.newest)
    return WriteResult(
        inserted=stored.inserted, duplicates=len(posts_in) - stored.inserted,
        tag_rows=stored.tag_rows, removed=removed,
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
