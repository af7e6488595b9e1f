"""Small checks the open-platform collectors share when they turn a payload into a Post.

Each raises :class:`Rejected` naming the field and the problem (never the
value, which may be post text), so the collector's skip line reads
``<platform>: skipped <thing> <id> on <stream>: field <field> <problem>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from monitor.models import ImplausibleDate, plausible_created, utc

__all__ = ["Rejected", "base_url", "epoch_time", "iso_time", "opt_str", "req_str", "word_tags"]


class Rejected(ValueError):
    """A malformed item; names the field and the problem, never the text."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def req_str(item: Mapping[str, Any], field: str, *, label: str | None = None) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise Rejected(label or field, "missing or not a string")
    return value


def opt_str(item: Mapping[str, Any], field: str, *, label: str | None = None) -> str | None:
    value = item.get(field)
    if value is None or isinstance(value, str):
        return value
    raise Rejected(label or field, f"expected a string or null, got {type(value).__name__}")


def iso_time(value: Any, field: str) -> datetime:
    """ISO-8601 with or without Z / offset (naive times are UTC, as Lemmy < 0.19 sends)."""
    if not isinstance(value, str):
        raise Rejected(field, f"expected an ISO-8601 time, got {type(value).__name__}")
    try:
        parsed = utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise Rejected(field, "expected an ISO-8601 time") from None
    return plausible(parsed, field)


def epoch_time(value: Any, field: str) -> datetime:
    """Unix seconds (int or float; a bool is not a time)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(field, f"expected unix seconds, got {type(value).__name__}")
    try:
        parsed = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise Rejected(field, "unix seconds out of range") from None
    return plausible(parsed, field)


def plausible(created: datetime, field: str) -> datetime:
    """*created* checked by :func:`~monitor.models.plausible_created`; a year-9999 or
    year-0001 time is a rejection naming *field*, never a stored post."""
    try:
        return plausible_created(created)
    except ImplausibleDate as exc:
        raise Rejected(field, str(exc)) from None


@lru_cache(maxsize=256)
def _word(tag: str) -> re.Pattern[str]:
    # the tag as a whole word, with or without '#': "MeToo", "#metoo," but not "metoolbox"
    return re.compile(r"(?<![\w#])#?" + re.escape(tag) + r"(?!\w)", re.IGNORECASE)


def word_tags(tags: Iterable[str], *texts: str | None) -> tuple[str, ...]:
    """The followed *tags* that occur as a word in any of *texts* (for platforms without
    hashtags: Lemmy, Hacker News)."""
    joined = "\n".join(t for t in texts if t)
    return tuple(tag for tag in tags if _word(tag).search(joined))


def base_url(instance: str) -> str:
    """``mastodon.social`` or ``https://h/`` → ``https://h`` (http:// kept for the fakes)."""
    text = instance.strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    return text
