"""Silences: time-boxed mutes matched on an alert's rule and labels.

A silence is a set of ``key=value`` matchers; it mutes every alert whose rule
name (key ``rule``) and labels equal all of them, from ``starts_at`` until
``ends_at``. Muted alerts keep their state (pending, firing, resolved); only
their announcements are held back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Engine

from monitor.errors import InputError
from monitor.store import alerts as store
from monitor.store.alerts import Silence
from monitor.tags import strict_tag

__all__ = [
    "Silence",
    "add_silence",
    "expire_silence",
    "is_silenced",
    "list_silences",
    "matches",
    "parse_matchers",
]


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
            try:
                value = strict_tag(value)  # as the config checks tags: 'me too' is a mistake
            except ValueError as exc:
                raise InputError(f"silence matcher {key}=", str(exc)) from None
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


def add_silence(
    engine: Engine, matchers: Mapping[str, str], duration: timedelta, *, now: datetime,
    comment: str = "", created_by: str = "",
) -> Silence:
    """Mute matching alerts from *now* for *duration*; returns the stored silence."""
    if duration <= timedelta(0):
        raise InputError("silence --for", f"expected a positive duration, got {duration}")
    return store.add_silence(engine, matchers, now, now + duration, comment=comment,
                             created_by=created_by, created_at=now)


def list_silences(engine: Engine, now: datetime, *, include_expired: bool = False) -> list[Silence]:
    """Silences in force at *now* (and, with *include_expired*, past ones), newest first."""
    return store.list_silences(engine, now, include_expired=include_expired)


def expire_silence(engine: Engine, silence_id: int, now: datetime) -> Silence:
    """End a silence now; raises InputError when no such silence exists."""
    silence = store.end_silence(engine, silence_id, now)
    if silence is None:
        raise InputError(f"silence {silence_id}", "no such silence (see `monitor silence list`)")
    return silence


def is_silenced(active: Iterable[Silence], rule: str, labels: Mapping[str, str]) -> bool:
    return any(matches(s.matchers, rule, labels) for s in active)
