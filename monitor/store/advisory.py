"""The SQL of PostgreSQL advisory locks (used by :class:`monitor.locks.RoleLock`)."""

from __future__ import annotations

from sqlalchemy import Connection, text

__all__ = ["advisory_unlock", "database_identity", "ping", "try_advisory_lock"]


def database_identity(conn: Connection) -> str:
    """``database.schema`` of the connection: what one monitor's data lives in."""
    database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
    return f"{database}.{schema}"


def try_advisory_lock(conn: Connection, key: int) -> bool:
    """Take the session-level advisory lock *key* if it is free (never waits)."""
    got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one())
    conn.commit()  # not left idle in a transaction; the session lock outlives it
    return got


def advisory_unlock(conn: Connection, key: int) -> None:
    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    conn.commit()


def ping(conn: Connection) -> None:
    """Raise when the connection no longer answers."""
    conn.execute(text("SELECT 1"))
    conn.commit()
