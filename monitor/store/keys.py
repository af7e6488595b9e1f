"""The author key of a database: ``author_keys`` rows, and re-keying stored authors.

The key material and the hashing live in :mod:`monitor.enrich.privacy`; this
module only reads and writes the rows: one per key version, oldest first, with
the fingerprint, the secret when the database keeps it, and the progress of a
rotation. A rotation re-keys ``posts.author`` (and ``posts.key``) in batches, each batch and the
row's ``rotated_through`` (the last ``posts.id`` done) committed together, so a
rotation killed at any point resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from monitor.store.reading import Reader, reading
from monitor.store.schema import author_keys, posts

__all__ = ["KeyRow", "add_key", "finish_rotation", "has_hashed_authors", "load_keys",
           "rekey_batch", "start_rotation"]

# a keyed pseudonym is 64 hex digits; a stored handle of that length is not a thing
PSEUDONYM_LENGTH = 64


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One key version. ``secret`` is None when it is kept outside the database."""

    version: int
    fingerprint: str
    secret: str | None
    state: str  # active | retired | rotating
    rotated_through: int | None


def load_keys(db: Reader) -> list[KeyRow]:
    """Every key version of the database, oldest first (empty: not keyed yet)."""
    k = author_keys.c
    with reading(db) as conn:
        rows = conn.execute(select(k.version, k.fingerprint, k.secret, k.state,
                                   k.rotated_through).order_by(k.version)).all()
    return [KeyRow(r.version, r.fingerprint, r.secret, r.state, r.rotated_through)
            for r in rows]


def has_hashed_authors(db: Reader) -> bool:
    """True when some post holds an author that looks like a keyed pseudonym."""
    with reading(db) as conn:
        found = conn.execute(
            select(posts.c.id).where(func.length(posts.c.author) == PSEUDONYM_LENGTH).limit(1)
        ).first()
    return found is not None


def add_key(engine: Engine, fingerprint: str, secret: str | None, now: datetime) -> bool:
    """Record the first key of the database; False when another process did it first."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(author_keys).values(
                version=1, fingerprint=fingerprint, secret=secret, state="active",
                rotated_through=None, created_at=now))
    except IntegrityError:
        return False
    return True


def start_rotation(engine: Engine, current: KeyRow, current_secret: str, fingerprint: str,
                   secret: str | None, now: datetime) -> KeyRow:
    """Add the next key version in state ``rotating``.

    The current key's secret is written to its row: after the rotation it is an
    inner link of the chain (new pseudonyms are ``HMAC(new, HMAC(old, …))``),
    needed to hash new posts and harmless without the newest key.
    """
    k = author_keys.c
    version = current.version + 1
    with engine.begin() as conn:
        conn.execute(update(author_keys).where(k.version == current.version)
                     .values(secret=current_secret))
        conn.execute(insert(author_keys).values(
            version=version, fingerprint=fingerprint, secret=secret, state="rotating",
            rotated_through=0, created_at=now))
    return KeyRow(version, fingerprint, secret, "rotating", 0)


def rekey_batch(engine: Engine, version: int, after_id: int, limit: int,
                rekey: Callable[[str, str], str],
                rekey_key: Callable[[str, str], str] | None = None) -> tuple[int, int]:
    """Re-key the next *limit* authors with ``posts.id > after_id``; one transaction.

    ``rekey(platform, stored)`` gives the new author value; ``rekey_key`` (when
    post keys are pseudonyms too) the new ``posts.key``, for every post. Returns
    (last id done, rows changed); (after_id, 0) when nothing is left.
    """
    p = posts.c
    with engine.begin() as conn:
        stmt = select(p.id, p.platform, p.author, p.key).where(p.id > after_id)
        if rekey_key is None:
            stmt = stmt.where(p.author.is_not(None))
        rows = conn.execute(stmt.order_by(p.id).limit(limit)).all()
        if not rows:
            return after_id, 0
        conn.execute(
            update(posts).where(p.id == bindparam("b_id")).values(author=bindparam("b_author"),
                                                                  key=bindparam("b_key")),
            [{"b_id": r.id,
              "b_author": None if r.author is None else rekey(r.platform, r.author),
              "b_key": r.key if rekey_key is None else rekey_key(r.platform, r.key)}
             for r in rows],
        )
        last = int(rows[-1].id)
        conn.execute(update(author_keys).where(author_keys.c.version == version)
                     .values(rotated_through=last))
    return last, len(rows)


def finish_rotation(engine: Engine, version: int,
                    also: Callable[[Connection], object] | None = None) -> None:
    """Make *version* the active key and retire the one before it; *also* runs in
    the same transaction (what may not be done twice: the block list)."""
    k = author_keys.c
    with engine.begin() as conn:
        if also is not None:
            also(conn)
        conn.execute(update(author_keys).where(k.version < version, k.state == "active")
                     .values(state="retired"))
        conn.execute(update(author_keys).where(k.version == version)
                     .values(state="active", rotated_through=None))
