"""Parsing of human time ranges shared by the CLI and the JSON API.

Every range is bounded: nothing starts before :data:`EARLIEST` (the Unix epoch,
which the bucket arithmetic counts from; no post here is older), a ``since``
too large for a date (``999999999d``) is a one-line error naming the option,
and a step is at most :data:`MAX_STEP`. How many steps a query may fill is
capped where it runs (:data:`monitor.store.queries.MAX_POINTS`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.durations import parse_duration
from monitor.errors import InputError

__all__ = ["EARLIEST", "MAX_STEP", "auto_step", "parse_range", "parse_step", "parse_when"]

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
MAX_STEP = timedelta(days=366)


def parse_when(value: str, now: datetime, option: str) -> datetime:
    """'7d' (that long before *now*), an ISO date or an ISO datetime (UTC if no zone)."""
    try:
        back = parse_duration(value)
    except OverflowError:
        raise InputError(option, f"expected a duration of at most {(now - EARLIEST).days}d "
                                 f"(back to {EARLIEST:%Y-%m-%d}), got {value!r}") from None
    except ValueError:
        pass
    else:
        # a duration reaching before the epoch means "everything": clip, do not overflow
        return now - back if back < now - EARLIEST else EARLIEST
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(option, f"expected a duration like '7d' or a date like "
                                 f"'2026-01-31', got {value!r}") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return max(when, EARLIEST)


def parse_range(since: str, until: str | None, *, now: datetime | None = None,
                since_name: str = "--since", until_name: str = "--until"
                ) -> tuple[datetime, datetime]:
    """``since`` relative to ``until`` (default now); both as aware UTC datetimes."""
    now = now or datetime.now(UTC)
    end = parse_when(until, now, until_name) if until else now
    start = parse_when(since, end, since_name)
    if start >= end:
        if until:
            # name both: the mistake may be either one (or their order)
            raise InputError(f"{since_name}/{until_name}", f"the start {since!r} is not before "
                                                           f"the end {until!r} ({until_name})")
        raise InputError(since_name, f"expected a start before {end:%Y-%m-%d %H:%M}, "
                                     f"got {since!r}")
    return start, end


def parse_step(value: str, option: str = "--step") -> timedelta:
    try:
        step = parse_duration(value)
    except (ValueError, OverflowError):
        raise InputError(option, f"expected a step like 5m, 1h or 1d, got {value!r}") from None
    if step > MAX_STEP:
        raise InputError(option, f"expected a step of at most {MAX_STEP.days}d, got {value!r}")
    if step <= timedelta(0) or step.total_seconds() % 300:
        # the rollups are 5-minute buckets; said here, naming the option
        raise InputError(option, f"expected a positive multiple of 5m (e.g. 5m, 1h, 1d), "
                                 f"got {value!r}")
    return step


def auto_step(since: datetime, until: datetime) -> timedelta:
    """A step giving a readable chart (roughly 100–600 points) for the range."""
    span = until - since
    if span <= timedelta(days=2):
        return timedelta(minutes=5)
    if span <= timedelta(days=21):
        return timedelta(hours=1)
    return timedelta(days=1)
