"""Settings types of ``privacy:`` that config.py would otherwise grow by: durations
that may also be a word (``forever``, ``off``) and ``privacy.retention``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from monitor.durations import Duration, format_duration, parse_duration

__all__ = ["DurationOrOff", "KeepFor", "RetentionSettings"]


def _age_or_never(value: Any, never: str) -> timedelta | None:
    """*never* (or null) → None; otherwise a positive duration like '30d'."""
    if value is None or (isinstance(value, str) and value.strip().lower() == never):
        return None
    if value is False and never == "off":  # YAML reads a bare `off` as false
        return None
    try:
        age = parse_duration(value)
    except ValueError:
        raise ValueError(f"expected a duration like '30d' or '{never}', got {value!r}") from None
    if age <= timedelta(0):
        raise ValueError(f"expected a positive duration like '30d' or '{never}', got {value!r}")
    return age


def _never_text(never: str) -> Any:
    def dump(value: timedelta | None) -> str:
        return never if value is None else format_duration(value)
    return PlainSerializer(dump, return_type=str)


# a duration, or "forever" (None): how long a kind of data is kept
KeepFor = Annotated[timedelta | None, BeforeValidator(lambda v: _age_or_never(v, "forever")),
                    _never_text("forever")]
# a duration, or "off" (None)
DurationOrOff = Annotated[timedelta | None, BeforeValidator(lambda v: _age_or_never(v, "off")),
                          _never_text("off")]


class RetentionSettings(BaseModel):
    """How long post rows and their personal fields are kept (by the post's age).

    The rollups (tag_buckets, tag_pair_buckets) are never touched: trends and
    alerts stay what they were (monitor.store.retention).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: KeepFor = None  # null posts.text once a post is this old
    authors: KeepFor = None  # null posts.author (the pseudonym) once this old
    posts: KeepFor = None  # delete the post row and its tags once this old
    every: Duration = timedelta(hours=1)  # how often the retention job runs
