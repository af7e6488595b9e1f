"""Reads of the service's own health: per-stream ``stream_health`` and a database ping.

``monitor status``, the dashboard's ``/api/health`` and ``/healthz``, the
Prometheus scrape and the flatline rule all read through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.store.reading import Reader, reading
from monitor.store.schema import stream_health

__all__ = ["StreamStatus", "database_answers", "read_status"]


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One row of ``stream_health`` (times are aware UTC, lag in seconds)."""

    source: str
    stream: str
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    last_post_at: datetime | None
    lag_seconds: float | None
    posts_collected: int
    posts_rejected: int
    fetch_errors: int

    @property
    def failing(self) -> bool:
        """The last attempt failed (an error newer than the last success)."""
        if self.last_error_at is None:
            return False
        return self.last_success_at is None or self.last_error_at >= self.last_success_at


def read_status(db: Reader, *, sources: Sequence[str] = ()) -> list[StreamStatus]:
    """Every stream's health (of *sources* only, when given), ordered by source and stream."""
    h = stream_health.c
    stmt = select(stream_health).order_by(h.source, h.stream)
    if sources:
        stmt = stmt.where(h.source.in_(list(sources)))
    with reading(db) as conn:
        rows = conn.execute(stmt).all()
    return [
        StreamStatus(
            source=row.source, stream=row.stream, last_attempt_at=row.last_attempt_at,
            last_success_at=row.last_success_at, last_error_at=row.last_error_at,
            last_error=row.last_error, last_post_at=row.last_post_at,
            lag_seconds=row.lag_seconds, posts_collected=int(row.posts_collected or 0),
            posts_rejected=int(row.posts_rejected or 0), fetch_errors=int(row.fetch_errors or 0),
        )
        for row in rows
    ]


def database_answers(db: Reader) -> bool:
    """True if the database answers a trivial query (the liveness probe)."""
    try:
        with reading(db) as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True
