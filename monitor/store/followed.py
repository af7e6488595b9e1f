"""The followed tags as changed at run time: ``monitor tags add|remove|list``.

The config's ``hashtags`` is the starting list; each row of ``followed_tags``
overrides it for one tag (``follow`` adds the tag, ``unfollow`` removes it).
The CLI writes the rows and the running service reads them once per poll
interval (:mod:`monitor.streams`), so a change needs no restart and survives
one: the rows stay until changed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from monitor.store.reading import Reader, reading
from monitor.store.schema import followed_tags
from monitor.store.write import insert_for

__all__ = ["TagChange", "effective_tags", "read_changes", "set_followed"]

FOLLOW = "follow"
UNFOLLOW = "unfollow"


@dataclass(frozen=True, slots=True)
class TagChange:
    """One run-time override: *tag* followed (``follow``) or not (``unfollow``) since *at*."""

    tag: str
    state: str
    changed_at: datetime


def read_changes(db: Reader) -> list[TagChange]:
    """Every override, oldest change first."""
    t = followed_tags.c
    with reading(db) as conn:
        rows = conn.execute(select(t.tag, t.state, t.changed_at)
                            .order_by(t.changed_at, t.tag)).all()
    return [TagChange(r.tag, r.state, r.changed_at) for r in rows]


def effective_tags(configured: Sequence[str], changes: Sequence[TagChange]) -> list[str]:
    """The followed tags: the config's (in order) then the added ones, minus the removed."""
    removed = {c.tag for c in changes if c.state == UNFOLLOW}
    added = [c.tag for c in changes if c.state == FOLLOW]
    out = [t for t in configured if t not in removed]
    out += [t for t in added if t not in out]
    return out


def set_followed(engine: Engine, tag: str, follow: bool, now: datetime) -> None:
    """Record that *tag* is (or is no longer) followed, replacing an earlier change."""
    with engine.begin() as conn:
        stmt = insert_for(conn, followed_tags).values(
            tag=tag, state=FOLLOW if follow else UNFOLLOW, changed_at=now)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[followed_tags.c.tag],
            set_={"state": stmt.excluded.state, "changed_at": stmt.excluded.changed_at}))
