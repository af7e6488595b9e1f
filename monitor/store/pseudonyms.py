"""Rows behind pseudonymous post keys, the block list of forgotten authors and the
access report (issue 12).

- :func:`convert_posts_batch` / :func:`convert_deletions_batch`: the one-time
  conversion of a database that stored platform keys (and links) to keyed
  pseudonyms; each batch is one short transaction, and what is converted is told
  by its shape (``pk<v>:``), so a killed conversion resumes by running again.
- :func:`rekey_deletions_batch`: ``deletions.key`` in a key rotation.
- ``forgotten_authors``: add, read, count dropped posts, re-key.
- :func:`author_report`: what the database holds about one author.

The key material and the mapping are :mod:`monitor.enrich.post_keys`'s; this
module only reads and writes rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from monitor.store.erase import remove_posts
from monitor.store.reading import Reader, reading
from monitor.store.schema import deletions, forgotten_authors, post_tags, posts, privacy_state

__all__ = ["AuthorReport", "add_forgotten", "author_report", "convert_deletions_batch",
           "convert_posts_batch", "count_forgotten_drops", "forgotten_entries",
           "forgotten_stamp", "forgotten_totals", "record_step", "rekey_deletions_batch",
           "rekey_forgotten", "step_done", "stored_platforms"]

Rekey = Callable[[str, str], str]  # (platform, value) → value as stored now
_NOT_STORED_SHAPE = ~posts.c.key.like("pk%")


def _existing(conn: Connection, platform: str, keys: Sequence[str]) -> set[str]:
    if not keys:
        return set()
    p = posts.c
    return set(conn.execute(select(p.key).where(p.platform == platform,
                                                p.key.in_(list(keys)))).scalars())


def convert_posts_batch(engine: Engine, after_id: int, limit: int, stored: Rekey,
                        is_stored: Callable[[str], bool], *, drop_urls: bool
                        ) -> tuple[int, int]:
    """Convert the next *limit* posts (id above *after_id*) still holding a platform
    key (or, with *drop_urls*, a link). Returns (last id read, rows changed);
    (after_id, 0) when none is left.

    A post whose pseudonym is already stored (it came back after the mode
    changed) is the same post twice: the platform-keyed copy is removed.
    """
    p = posts.c
    needs = _NOT_STORED_SHAPE | p.url.is_not(None) if drop_urls else _NOT_STORED_SHAPE
    with engine.begin() as conn:
        rows = conn.execute(select(p.id, p.platform, p.key, p.url)
                            .where(p.id > after_id, needs).order_by(p.id).limit(limit)).all()
        if not rows:
            return after_id, 0
        changes: list[dict[str, object]] = []
        twins: list[int] = []
        by_platform: dict[str, list[tuple[int, str, str | None]]] = {}
        for row in rows:
            by_platform.setdefault(row.platform, []).append((int(row.id), row.key, row.url))
        for platform, items in sorted(by_platform.items()):
            mapped = {pid: (key if is_stored(key) else stored(platform, key))
                      for pid, key, _ in items}
            originals = {pid: key for pid, key, _ in items}
            taken = _existing(conn, platform, [m for pid, m in mapped.items()
                                               if m != originals[pid]])
            seen: set[str] = set()
            for pid, key, url in items:
                new = mapped[pid]
                if new != key and (new in taken or new in seen):
                    twins.append(pid)
                    continue
                seen.add(new)
                changes.append({"b_id": pid, "b_key": new,
                                "b_url": None if drop_urls else url})
        if twins:
            remove_posts(conn, sorted(twins))
        if changes:
            conn.execute(update(posts).where(p.id == bindparam("b_id"))
                         .values(key=bindparam("b_key"), url=bindparam("b_url")), changes)
    return int(rows[-1].id), len(rows)


def convert_deletions_batch(engine: Engine, after: tuple[str, str] | None, limit: int,
                            stored: Rekey, is_stored: Callable[[str], bool]
                            ) -> tuple[tuple[str, str] | None, int]:
    """Convert the next *limit* tombstones holding a platform key, in (platform,
    key) order after *after*. Returns (last row read, rows read); (after, 0) at the end."""
    d = deletions.c
    with engine.begin() as conn:
        stmt = select(d.platform, d.key, d.seen_at, d.applied_at).where(~d.key.like("pk%"))
        if after is not None:
            stmt = stmt.where(tuple_(d.platform, d.key) > tuple_(*after))
        rows = conn.execute(stmt.order_by(d.platform, d.key).limit(limit)).all()
        if not rows:
            return after, 0
        for row in rows:
            if is_stored(row.key):
                continue
            new = stored(row.platform, row.key)
            conn.execute(delete(deletions).where(d.platform == row.platform, d.key == row.key))
            have = conn.execute(select(d.key).where(d.platform == row.platform,
                                                    d.key == new)).first()
            if have is None:
                conn.execute(insert(deletions).values(platform=row.platform, key=new,
                                                      seen_at=row.seen_at,
                                                      applied_at=row.applied_at))
    return (rows[-1].platform, rows[-1].key), len(rows)


def step_done(db: Reader, step: str) -> str | None:
    """What ``privacy_state`` records for the one-time *step* (None: not done)."""
    s = privacy_state.c
    with reading(db) as conn:
        value = conn.execute(select(s.value).where(s.step == step)).scalar_one_or_none()
    return None if value is None else str(value)


def record_step(engine: Engine, step: str, value: str | None, now: datetime) -> None:
    """Record *step* as done with *value*, or (None) as to be done again."""
    s = privacy_state.c
    with engine.begin() as conn:
        conn.execute(delete(privacy_state).where(s.step == step))
        if value is not None:
            conn.execute(insert(privacy_state).values(step=step, value=value, at=now))


def rekey_deletions_batch(engine: Engine, old_version: int, limit: int, rekey: Rekey) -> int:
    """Re-key the next *limit* tombstones made with key version *old_version*
    (``pk<old>:…``); rows changed, 0 when none is left. Resumable: a re-keyed row
    has the next version and is not read again."""
    d = deletions.c
    with engine.begin() as conn:
        rows = conn.execute(select(d.platform, d.key).where(d.key.like(f"pk{old_version}:%"))
                            .order_by(d.platform, d.key).limit(limit)).all()
        if not rows:
            return 0
        conn.execute(
            update(deletions).where(d.platform == bindparam("b_platform"),
                                    d.key == bindparam("b_old")).values(key=bindparam("b_new")),
            [{"b_platform": r.platform, "b_old": r.key, "b_new": rekey(r.platform, r.key)}
             for r in rows])
    return len(rows)


def stored_platforms(db: Reader) -> list[str]:
    """The platforms the database holds posts or tombstones of."""
    with reading(db) as conn:
        found = set(conn.execute(select(posts.c.platform).distinct()).scalars())
        found |= set(conn.execute(select(deletions.c.platform).distinct()).scalars())
    return sorted(found)


# ----------------------------------------------------------------------------- forgotten

def add_forgotten(engine: Engine, platform: str, hashes: Collection[str], now: datetime
                  ) -> int:
    """Block *hashes* (author pseudonyms) of *platform*; the number newly added."""
    added = 0
    for value in sorted(set(hashes)):
        try:
            with engine.begin() as conn:
                conn.execute(insert(forgotten_authors).values(
                    platform=platform, author_hash=value, at=now, dropped=0))
            added += 1
        except IntegrityError:
            pass  # forgotten before: stays blocked
    return added


def forgotten_entries(db: Reader) -> frozenset[tuple[str, str]]:
    """Every blocked (platform, author pseudonym)."""
    f = forgotten_authors.c
    with reading(db) as conn:
        return frozenset((r.platform, r.author_hash)
                         for r in conn.execute(select(f.platform, f.author_hash)))


def forgotten_stamp(db: Reader) -> tuple[int, datetime | None]:
    """(rows, newest time): changes when an author is forgotten or un-blocked."""
    f = forgotten_authors.c
    with reading(db) as conn:
        row = conn.execute(select(func.count(), func.max(f.at))).one()
    return int(row[0]), row[1]


def count_forgotten_drops(target: Engine | Connection, counts: Counter[tuple[str, str]]
                          ) -> None:
    """Add *counts* (posts dropped per blocked author) to ``forgotten_authors.dropped``,
    in a transaction of its own (on *target* when it is a connection: an import's)."""
    if not counts:
        return
    if isinstance(target, Engine):
        with target.begin() as conn:
            _add_drops(conn, counts)
        return
    if target.in_transaction():
        target.commit()
    with target.begin():
        _add_drops(target, counts)


def _add_drops(conn: Connection, counts: Counter[tuple[str, str]]) -> None:
    f = forgotten_authors.c
    conn.execute(
        update(forgotten_authors).where(f.platform == bindparam("b_platform"),
                                        f.author_hash == bindparam("b_hash"))
        .values(dropped=f.dropped + bindparam("b_n")),
        [{"b_platform": pl, "b_hash": h, "b_n": n} for (pl, h), n in sorted(counts.items())])


def forgotten_totals(db: Reader) -> tuple[int, int]:
    """(authors blocked, later posts of theirs dropped)."""
    f = forgotten_authors.c
    with reading(db) as conn:
        row = conn.execute(select(func.count(), func.coalesce(func.sum(f.dropped), 0))).one()
    return int(row[0]), int(row[1])


def rekey_forgotten(conn: Connection, rekey: Rekey) -> int:
    """Re-key every blocked pseudonym, in the caller's transaction (the one that
    finishes the rotation: a pseudonym has no version, it may be re-keyed only once)."""
    f = forgotten_authors.c
    rows = conn.execute(select(f.platform, f.author_hash)).all()
    for row in rows:
        conn.execute(update(forgotten_authors)
                     .where(f.platform == row.platform, f.author_hash == row.author_hash)
                     .values(author_hash=rekey(row.platform, row.author_hash)))
    return len(rows)


# ----------------------------------------------------------------------------- access

@dataclass(frozen=True, slots=True)
class AuthorReport:
    """What the database holds about one author (no other person's data)."""

    posts: int
    first: datetime | None
    last: datetime | None
    with_text: int
    with_link: int
    tags: list[tuple[str, int]]  # (tag, posts of theirs with it), most used first
    blocked: bool  # in forgotten_authors


def author_report(db: Reader, platform: str, values: Collection[str],
                  blocked_hashes: Collection[str]) -> AuthorReport:
    """The posts of *platform* whose stored author is one of *values*."""
    p, t, f = posts.c, post_tags.c, forgotten_authors.c
    mine = (p.platform == platform) & p.author.in_(sorted(values))
    with reading(db) as conn:
        row = conn.execute(select(
            func.count(), func.min(p.created_at), func.max(p.created_at),
            func.count(p.text), func.count(p.url)).where(mine)).one()
        tags = conn.execute(
            select(t.tag, func.count()).join(posts, p.id == t.post_id).where(mine)
            .group_by(t.tag).order_by(func.count().desc(), t.tag)).all()
        blocked = bool(blocked_hashes) and conn.execute(
            select(f.author_hash).where(f.platform == platform,
                                        or_(*(f.author_hash == h for h in blocked_hashes)))
        ).first() is not None
    return AuthorReport(int(row[0]), row[1], row[2], int(row[3]), int(row[4]),
                        [(str(tag), int(n)) for tag, n in tags], blocked)
