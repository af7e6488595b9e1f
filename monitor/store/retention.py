"""Retention by age: clear post text and author pseudonyms, or delete post rows.

``privacy.retention.text`` / ``.authors`` / ``.posts`` give an age (or
forever). :func:`retention_batches` works through what is past its age in
bounded batches, each its own short transaction (a batch is at most
``BATCH_ROWS`` rows: no long lock, the service's writes interleave), oldest
first:

1. ``posts``: delete the post rows and their ``post_tags`` (not the rollups); on
   PostgreSQL a month whose every post is past the age is dropped as a whole
   partition first (:func:`monitor.store.partitions.drop_expired_partitions`);
2. ``text``: set ``posts.text`` to NULL, found through the partial index
   ``ix_posts_text_created_at`` (only rows still holding text);
3. ``authors``: set ``posts.author`` to NULL. Nearly every row has an author,
   so there is no index of the rows still holding one; instead
   ``retention_state`` remembers how far the job got (``done_before``): each run
   reads only the posts created since then, plus the posts stored since the
   last run (``id > seen_id``) in case an import brought old ones;
4. ``urls``: set ``posts.url`` to NULL the same way (under ``authors: hash`` a
   link is kept only while the re-check may still ask about the post).

``tag_buckets`` and ``tag_pair_buckets`` are never touched, so trends, the
relate view and alerts computed over any range are the same before and after.
Each run records its time, the rows it changed and any error per kind in
``retention_state`` (``monitor status`` shows them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, func, select, tuple_, update

from monitor.store.erase import remove_posts
from monitor.store.partitions import drop_expired_partitions
from monitor.store.schema import posts, retention_state

__all__ = ["BATCH_ROWS", "KINDS", "RetentionAges", "retention_batches", "run_retention"]

Kind = Literal["posts", "text", "authors", "urls"]
KINDS: tuple[Kind, ...] = ("posts", "text", "authors", "urls")

# rows per transaction: a few milliseconds of lock on either database
BATCH_ROWS = 1000
# SQLite may give a new post the id of a deleted newest one; re-check a few ids
# below seen_id so such a post is not missed (cheap: one primary-key range)
_ID_SLACK = 10_000


@dataclass(frozen=True, slots=True)
class RetentionAges:
    """How old a post may get before its text, author or whole row goes (None: forever)."""

    text: timedelta | None = None
    authors: timedelta | None = None
    posts: timedelta | None = None
    # posts.url under authors: hash, kept only for the re-check window (issue 12)
    urls: timedelta | None = None

    def age(self, kind: Kind) -> timedelta | None:
        value: timedelta | None = getattr(self, kind)
        return value

    @property
    def any(self) -> bool:
        return any(self.age(kind) is not None for kind in KINDS)


def _upsert_state(conn: Connection, kind: Kind, values: dict[str, Any]) -> None:
    r = retention_state.c
    changed = conn.execute(update(retention_state).where(r.kind == kind).values(**values))
    if changed.rowcount == 0:
        conn.execute(retention_state.insert().values(kind=kind, **values))


def _state(conn: Connection, kind: Kind) -> Any:
    return conn.execute(select(retention_state).where(retention_state.c.kind == kind)).first()


def _delete_posts(engine: Engine, cutoff: datetime, limit: int) -> int:
    p = posts.c
    with engine.begin() as conn:
        ids = list(conn.execute(select(p.id).where(p.created_at < cutoff)
                                .order_by(p.created_at).limit(limit)).scalars())
        # recount=False: the rollups keep counting what was seen (trends unchanged)
        return remove_posts(conn, ids, recount=False).posts


def _clear_text(engine: Engine, cutoff: datetime, limit: int) -> int:
    p = posts.c
    with engine.begin() as conn:
        ids = list(conn.execute(select(p.id).where(p.text.is_not(None), p.created_at < cutoff)
                                .order_by(p.created_at).limit(limit)).scalars())
        if not ids:
            return 0
        return int(conn.execute(update(posts).where(p.id.in_(ids)).values(text=None)).rowcount)


class _Authors:
    """The authors (or urls) pass of one run: late arrivals first, then the age range."""

    def __init__(self, engine: Engine, cutoff: datetime, limit: int,
                 kind: Kind = "authors") -> None:
        self.engine, self.cutoff, self.limit, self.kind = engine, cutoff, limit, kind
        self.column = posts.c.author if kind == "authors" else posts.c.url
        with engine.connect() as conn:
            state = _state(conn, kind)
            self.top = int(conn.execute(select(func.coalesce(func.max(posts.c.id), 0)))
                           .scalar_one())
        self.done_before: datetime | None = state.done_before if state else None
        self.seen_id: int | None = state.seen_id if state else None
        self.late_done = self.done_before is None or self.seen_id is None
        self.after: tuple[datetime, int] | None = None  # (created_at, id) last read

    def step(self) -> tuple[int, bool]:
        """One batch: (rows cleared, finished)."""
        p = posts.c
        with self.engine.begin() as conn:
            if not self.late_done:
                assert self.done_before is not None and self.seen_id is not None
                ids = list(conn.execute(
                    select(p.id).where(p.id > self.seen_id - _ID_SLACK,
                                       p.created_at < min(self.done_before, self.cutoff),
                                       self.column.is_not(None))
                    .order_by(p.id).limit(self.limit)).scalars())
                if len(ids) < self.limit:
                    self.late_done = True
                return self._clear(conn, ids), False
            stmt = select(p.id, p.created_at).where(p.created_at < self.cutoff)
            if self.after is not None:
                stmt = stmt.where(tuple_(p.created_at, p.id) > tuple_(*self.after))
            elif self.done_before is not None:
                stmt = stmt.where(p.created_at >= self.done_before)
            rows = conn.execute(stmt.order_by(p.created_at, p.id).limit(self.limit)).all()
            if rows:
                self.after = (rows[-1].created_at, int(rows[-1].id))
            changed = self._clear(conn, [int(r.id) for r in rows])
            finished = len(rows) < self.limit
            if finished and (self.done_before is None or self.cutoff > self.done_before):
                _upsert_state(conn, self.kind, {"done_before": self.cutoff,
                                                "seen_id": self.top})
            return changed, finished

    def _clear(self, conn: Connection, ids: list[int]) -> int:
        if not ids:
            return 0
        p = posts.c
        return int(conn.execute(update(posts).where(p.id.in_(ids), self.column.is_not(None))
                                .values({self.column.name: None})).rowcount)


def retention_batches(engine: Engine, ages: RetentionAges, now: datetime, *,
                      limit: int = BATCH_ROWS) -> Iterator[tuple[Kind, int]]:
    """Run one retention pass, one short transaction per ``next()``: yields
    (kind, rows changed by that batch). Kinds kept forever are skipped.

    Each kind's result (time, rows changed, error) is saved in
    ``retention_state`` when that kind finishes or fails.
    """
    for kind in KINDS:
        age = ages.age(kind)
        if age is None:
            continue
        cutoff = now - age
        total = 0
        try:
            if kind in ("authors", "urls"):
                authors = _Authors(engine, cutoff, limit, kind)
                finished = False
                while not finished:
                    changed, finished = authors.step()
                    total += changed
                    yield kind, changed
            else:
                if kind == "posts":
                    # PostgreSQL: whole months past the age go as one partition each
                    for changed in drop_expired_partitions(engine, cutoff):
                        total += changed
                        yield kind, changed
                batch: Callable[[Engine, datetime, int], int] = (
                    _delete_posts if kind == "posts" else _clear_text)
                while True:
                    changed = batch(engine, cutoff, limit)
                    total += changed
                    yield kind, changed
                    if changed < limit:
                        break
        except Exception as exc:
            with engine.begin() as conn:
                _upsert_state(conn, kind, {"last_run_at": now, "last_changed": total,
                                           "last_error": _one_line(exc)})
            raise
        with engine.begin() as conn:
            _upsert_state(conn, kind, {"last_run_at": now, "last_ok_at": now,
                                       "last_changed": total, "last_error": None})


def run_retention(engine: Engine, ages: RetentionAges, now: datetime, *,
                  limit: int = BATCH_ROWS) -> dict[str, int]:
    """A whole pass in the calling thread: rows changed per kind."""
    totals: dict[str, int] = {}
    for kind, changed in retention_batches(engine, ages, now, limit=limit):
        totals[kind] = totals.get(kind, 0) + changed
    return totals


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return (f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)[:500]
