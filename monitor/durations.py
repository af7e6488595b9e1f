"""Human durations ('30s', '5m', '2h', '7d', '1w') ↔ timedelta, shared by config and CLI."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse '5m', '1.5h', '7d' (or a number of seconds) into a timedelta.

    Raises ValueError naming what was expected.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '5m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return _seconds(value, value)
    match = _PATTERN.match(str(value))
    if not match:
        raise ValueError(f"expected a duration like '5m', got {value!r}")
    return _seconds(float(match.group(1)) * _UNITS[match.group(2)], value)


def _seconds(seconds: float, given: object) -> timedelta:
    # timedelta raises OverflowError past 999,999,999 days, which a validator does not
    # turn into a config error: it escaped as a traceback (found by tests/fuzz)
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise ValueError(f"expected a duration up to 999999999d, got {given!r}") from None


def format_duration(value: timedelta) -> str:
    """The shortest exact form: 300 s → '5m', 5400 s → '90m'."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _validate(value: Any) -> timedelta:
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
]
