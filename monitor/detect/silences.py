"""Silences: time-boxed mutes matched on an alert's rule and labels.

A silence is a set of ``key=value`` matchers; it mutes every alert whose rule
name (key ``rule``) and labels equal all of them, from ``starts_at`` until
``ends_at``. Muted alerts keep their state (pending, firing, resolved); only
their announcements are held back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from monitor.errors import InputError
from monitor.store.schema import silences
from monitor.tags import normalise_tag

__all__ = [
    "Silence",
    "active_silences",
    "add_silence",
    "expire_silence",
    "list_silences",
    "matches",
    "parse_matchers",
]


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


def parse_matchers(items: Sequence[str]) -> dict[str, str]:
    """``["rule=spike", "tag=#MeToo"]`` → ``{"rule": "spike", "tag": "metoo"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise InputError(
                "silence matcher", f"expected key=value (e.g. tag=metoo), got {item!r}"
            )
        if key == "tag" or key == "cotag":
            value = normalise_tag(value)
        out[key] = value
    if not out:
        raise InputError("silence", "expected at least one matcher such as rule=spike or tag=metoo")
    return out


def matches(matchers: Mapping[str, str], rule: str, labels: Mapping[str, str]) -> bool:
    """Whether a silence's matchers all equal the alert's rule name and labels."""
    for key, value in matchers.items():
        actual = rule if key == "rule" else labels.get(key)
        if actual != value:
            return False
    return True


def _row(row: Any) -> Silence:
    return Silence(int(row.id), dict(row.matchers), row.starts_at, row.ends_at,
                   str(row.comment or ""), str(row.created_by or ""), row.created_at)


def add_silence(
    engine: Engine, matchers: Mapping[str, str], duration: timedelta, *, now: datetime,
    comment: str = "", created_by: str = "",
) -> Silence:
    """Mute matching alerts from *now* for *duration*; returns the stored silence."""
    if duration <= timedelta(0):
        raise InputError("silence --for", f"expected a positive duration, got {duration}")
    values = {
        "matchers": dict(matchers), "starts_at": now, "ends_at": now + duration,
        "comment": comment, "created_by": created_by, "created_at": now,
    }
    with engine.begin() as conn:
        stmt = silences.insert().values(**values).returning(silences.c.id)
        new_id = conn.execute(stmt).scalar_one()
    return Silence(int(new_id), dict(matchers), now, now + duration, comment, created_by, now)


def list_silences(engine: Engine, now: datetime, *, include_expired: bool = False) -> list[Silence]:
    """Silences in force at *now* (and, with *include_expired*, past ones), newest first."""
    stmt = select(silences).order_by(silences.c.id.desc())
    if not include_expired:
        stmt = stmt.where(silences.c.ends_at > now)
    with engine.connect() as conn:
        return [_row(r) for r in conn.execute(stmt)]


def expire_silence(engine: Engine, silence_id: int, now: datetime) -> Silence:
    """End a silence now; raises InputError when no such silence exists."""
    with engine.begin() as conn:
        row = conn.execute(select(silences).where(silences.c.id == silence_id)).first()
        if row is None:
            raise InputError(
                f"silence {silence_id}", "no such silence (see `monitor silence list`)"
            )
        if row.ends_at > now:
            conn.execute(update(silences).where(silences.c.id == silence_id).values(ends_at=now))
        row = conn.execute(select(silences).where(silences.c.id == silence_id)).one()
    return _row(row)


def active_silences(conn: Connection, now: datetime) -> list[Silence]:
    """Silences in force at *now*, read inside the caller's transaction."""
    stmt = select(silences).where(silences.c.starts_at <= now, silences.c.ends_at > now)
    return [_row(r) for r in conn.execute(stmt)]


def is_silenced(active: Iterable[Silence], rule: str, labels: Mapping[str, str]) -> bool:
    return any(matches(s.matchers, rule, labels) for s in active)
