"""Parsing of human time ranges shared by the CLI and the JSON API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.durations import parse_duration
from monitor.errors import InputError

__all__ = ["auto_step", "parse_range", "parse_step", "parse_when"]


def parse_when(value: str, now: datetime, option: str) -> datetime:
    """'7d' (that long before *now*), an ISO date or an ISO datetime (UTC if no zone)."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(option, f"expected a duration like '7d' or a date like "
                                 f"'2026-01-31', got {value!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_range(since: str, until: str | None, *, now: datetime | None = None,
                since_name: str = "--since", until_name: str = "--until"
                ) -> tuple[datetime, datetime]:
    """``since`` relative to ``until`` (default now); both as aware UTC datetimes."""
    now = now or datetime.now(UTC)
    end = parse_when(until, now, until_name) if until else now
    start = parse_when(since, end, since_name)
    if start >= end:
        raise InputError(since_name, f"expected a start before {end:%Y-%m-%d %H:%M}, "
                                     f"got {since!r}")
    return start, end


def parse_step(value: str, option: str = "--step") -> timedelta:
    try:
        return parse_duration(value)
    except ValueError:
        raise InputError(option, f"expected a step like 5m, 1h or 1d, got {value!r}") from None


def auto_step(since: datetime, until: datetime) -> timedelta:
    """A step giving a readable chart (roughly 100–600 points) for the range."""
    span = until - since
    if span <= timedelta(days=2):
        return timedelta(minutes=5)
    if span <= timedelta(days=21):
        return timedelta(hours=1)
    return timedelta(days=1)
