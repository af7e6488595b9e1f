"""The one write path. ``write_batch`` stores a batch in ONE transaction: posts,
tags, bucket and tag-pair increments, deletions (the posts they remove, see
``erase``), the cursor and the stream's health. Only rows that were really
inserted are counted, so re-running a batch changes nothing.

How: :func:`monitor.store.plan.plan_batch` plans the batch in plain Python; the
executor of the database's dialect (``write_sqlite`` or ``write_postgres``, the
only two the store supports) turns the plan into rows (``prepare``) and stores
them with their increments (``execute``); the deletions, cursor and health go
through the same SQLAlchemy statements on both. A file import runs the first
half in its worker processes (:func:`prepare_batch`) and the second in its one
writer (:func:`write_prepared`): the same steps, split across processes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import StoreError
from monitor.models import Cursor, ScoredPost, StreamKey
from monitor.store.erase import apply_deletions
from monitor.store.partitions import ensure_partitions
from monitor.store.plan import BatchPlan, Executor, Prepared, Stored, plan_batch
from monitor.store.schema import cursors, stream_health
from monitor.store.write_postgres import write_postgres
from monitor.store.write_sqlite import write_sqlite

__all__ = [
    "WriteResult",
    "import_connection",
    "insert_for",
    "load_cursor",
    "prepare_batch",
    "record_failure",
    "write_batch",
    "write_prepared",
]

# the WAL size (4 KiB pages) at which an import's connection checkpoints: ~64 MiB
_IMPORT_CHECKPOINT_PAGES = 16384

# dialect -> executor, and the one DBAPI driver it runs on (make_engine picks psycopg 3)
_EXECUTORS: dict[str, tuple[str, Executor]] = {
    "sqlite": ("pysqlite", write_sqlite),
    "postgresql": ("psycopg", write_postgres),
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


def _executor(dialect: str, driver: str | None = None) -> Executor:
    known = _EXECUTORS.get(dialect)
    if known is None or driver not in (None, known[0]):
        raise StoreError(
            f"the store writes with sqlite3 or psycopg 3, not {dialect}+{driver or '?'}; "
            "use a sqlite:/// or postgresql+psycopg:// URL"
        )
    return known[1]


def _prepare(plan: BatchPlan, dialect: str, given: int) -> Prepared:
    rows = _executor(dialect).prepare(plan) if plan.posts else None
    months = tuple({(c.year, c.month): c for c in plan.created}.values())
    return Prepared(dialect=dialect, given=given, rows=rows, months=months, newest=plan.newest)


def prepare_batch(posts_in: Sequence[ScoredPost], dialect: str,
                  now: datetime | None = None) -> Prepared:
    """*posts_in* planned (:func:`~monitor.store.plan.plan_batch`) and turned into the
    rows of *dialect*'s executor, for :func:`write_prepared`.

    Needs no database: an import runs it in its worker processes, so that the one
    process writing only executes. *now* is the posts' ``collected_at``.
    """
    plan = plan_batch(posts_in, now=now or datetime.now(UTC))
    return _prepare(plan, dialect, len(posts_in))


def _execute(conn: Connection, plan: BatchPlan) -> Stored:
    """Store *plan*'s posts with the executor of *conn*'s dialect (``edits`` too)."""
    if not plan.posts:
        return Stored(0, 0)
    return _run(conn, _prepare(plan, conn.dialect.name, len(plan.posts)))


def _run(conn: Connection, prepared: Prepared) -> Stored:
    """Run *prepared*'s rows through the executor of *conn*'s dialect."""
    dialect = conn.dialect
    if dialect.name != prepared.dialect:
        raise StoreError(f"rows prepared for {prepared.dialect} cannot go to {dialect.name}")
    executor = _executor(dialect.name, dialect.driver)
    driver = conn.connection.driver_connection
    if driver is None:
        raise StoreError("database connection was closed during a batch write")
    return executor.execute(driver, prepared.rows)


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
    prepared = _prepare(plan, engine.dialect.name, len(posts_in))
    return _store(engine, prepared, plan)


def write_prepared(target: Engine | Connection, prepared: Prepared, *,
                   cursor: Cursor | None = None, now: datetime | None = None) -> WriteResult:
    """Store :func:`prepare_batch`'s rows and *cursor* in one transaction: the
    :func:`write_batch` of an import (no deletions, no stream health).

    *target*: an engine, or a connection held for a whole import
    (:func:`import_connection`) and not in a transaction.
    """
    plan = plan_batch((), now=now or datetime.now(UTC), cursor=cursor)
    return _store(target, prepared, plan)


def _store(target: Engine | Connection, prepared: Prepared, plan: BatchPlan) -> WriteResult:
    """One transaction: *plan*'s deletions, *prepared*'s posts, *plan*'s cursor and health."""
    engine = target if isinstance(target, Engine) else target.engine
    if prepared.rows is not None:  # PostgreSQL: the months' partitions, before any lock
        ensure_partitions(engine, prepared.months, plan.now)
    with target.begin() if isinstance(target, Engine) else _begun(target) as conn:
        # deletions first: their tombstones keep the posts out of the insert below
        removed = (apply_deletions(conn, plan.deleted, plan.now, recount=plan.recount)
                   if plan.deleted else 0)
        stored = _run(conn, prepared) if prepared.rows is not None else Stored(0, 0)
        if plan.cursor is not None:
            conn.execute(
                _cursor_upsert(conn.dialect.name),
                {"source": plan.cursor.source, "stream": plan.cursor.stream,
                 "value": plan.cursor.value, "updated_at": plan.now},
            )
        if plan.stream is not None:
            _touch_health(conn, plan.stream, plan.now, collected=stored.inserted,
                          rejected=plan.rejected, newest=prepared.newest)
    return WriteResult(
        inserted=stored.inserted, duplicates=prepared.given - stored.inserted,
        tag_rows=stored.tag_rows, removed=removed,
    )


@contextmanager
def _begun(conn: Connection) -> Iterator[Connection]:
    with conn.begin():
        yield conn


@contextmanager
def import_connection(engine: Engine) -> Iterator[Connection]:
    """One connection for a long import's :func:`write_prepared` calls.

    On SQLite the WAL is checkpointed (copied into the database file, then
    fsynced) every ~64 MiB of it instead of SQLite's 4 MiB: an import's batches
    dirty the same rollup and index pages over and over, and at 4 MiB nearly
    every batch paid a checkpoint of them. Committed batches are as safe as
    before (the WAL is the database until it is copied); the connection's usual
    setting comes back, and the WAL is checkpointed, at the end.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA wal_autocheckpoint={_IMPORT_CHECKPOINT_PAGES}")
            conn.commit()
        try:
            yield conn
        finally:
            # never hide the import's own error behind one of these (the setting only
            # makes checkpoints rarer, wherever the connection goes next)
            if sqlite and not conn.closed and not conn.invalidated:
                with suppress(SQLAlchemyError):
                    conn.rollback()
                    conn.exec_driver_sql("PRAGMA wal_autocheckpoint=1000")
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                    conn.commit()


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
