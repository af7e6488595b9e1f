"""Times in imported files: the formats we read, ``--date-format``, ``--timezone``,
and the detection of a spreadsheet's date format from a file's first rows.

Without ``--date-format`` a value is ISO-8601, epoch seconds, or RFC 2822 /
Twitter's ``Wed Oct 18 14:03:11 +0000 2017``. A file whose dates are none of
those (``10/15/2019 17:46``, what R and spreadsheets write) has its format
detected from a sample among :data:`COMMON_FORMATS`; when the sample reads
both as month/day and as day/month (every day is 12 or less) the import is
refused with one line naming ``--date-format``, rather than guessing and
putting half the posts in the wrong month.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.errors import InputError

__all__ = ["COMMON_FORMATS", "DateReader", "detect_format", "parse_timestamp", "parse_zone",
           "twitter_snowflake_time"]

_TWITTER_EPOCH_MS = 1288834974657
_TWITTER = re.compile(r"\w{3} (\w{3}) (\d{2}) (\d{2}:\d{2}:\d{2}) ([+-]\d{4}) (\d{4})")

# Formats tried on a file whose times are not ISO-8601, epoch or RFC 2822, with the
# order of day and month each implies ("" when it is unambiguous by itself)
COMMON_FORMATS: tuple[tuple[str, str], ...] = tuple(
    (f"{date} {clock}".strip(), order)
    for date, order in (
        ("%m/%d/%Y", "month/day"), ("%d/%m/%Y", "day/month"),
        ("%m/%d/%y", "month/day"), ("%d/%m/%y", "day/month"),
        ("%m-%d-%Y", "month/day"), ("%d-%m-%Y", "day/month"),
        ("%d.%m.%Y", ""), ("%Y/%m/%d", ""), ("%d %b %Y", ""), ("%b %d %Y", ""),
    )
    for clock in ("%H:%M", "%H:%M:%S", "%I:%M %p", "%I:%M:%S %p", "")
)


def twitter_snowflake_time(tweet_id: str) -> datetime:
    """The creation time encoded in a Twitter snowflake id (ids since Nov 2010)."""
    value = int(tweet_id)
    if value < (1 << 22):
        raise ValueError(f"id {tweet_id!r} is not a snowflake id (too small to carry a time)")
    return datetime.fromtimestamp(((value >> 22) + _TWITTER_EPOCH_MS) / 1000, tz=UTC)


def parse_timestamp(value: Any, naive: tzinfo = UTC) -> datetime:
    """ISO-8601, epoch seconds (int/float/str), or RFC 2822 / Twitter v1.1 format → UTC.

    A time without a zone is taken to be in *naive* (UTC unless ``--timezone``).
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a timestamp, got {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    text = str(value).strip()
    if not text:
        raise ValueError("expected a timestamp, got an empty value")
    if re.fullmatch(r"\d{9,11}(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        twitter = _TWITTER.fullmatch(text)
        try:
            if twitter:
                mon, day, clock, zone, year = twitter.groups()
                parsed = datetime.strptime(
                    f"{day} {mon} {year} {clock} {zone}", "%d %b %Y %H:%M:%S %z"
                )
            else:
                parsed = parsedate_to_datetime(text)
        except (ValueError, TypeError):
            raise ValueError(
                f"expected an ISO-8601 time, epoch seconds or 'Wed Oct 18 14:03:11 +0000 2017'"
                f" (another format: --date-format), got {text[:40]!r}"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive)
    return parsed.astimezone(UTC)


def parse_zone(name: str | None, option: str = "--timezone") -> tzinfo:
    """An IANA zone name (``Europe/Paris``, ``UTC``) → tzinfo; InputError naming *option*."""
    if name is None or name.strip().upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(option, f"expected an IANA time zone like 'Europe/Paris' or 'UTC', "
                                 f"got {name!r}") from None


@dataclass(frozen=True, slots=True)
class DateReader:
    """Reads one file's times: its strptime *fmt* if it has one, else
    :func:`parse_timestamp`; times without a zone are in *zone*. Picklable."""

    fmt: str | None = None
    zone: tzinfo = UTC

    def __call__(self, value: Any) -> datetime:
        if self.fmt is None or not isinstance(value, str):
            return parse_timestamp(value, self.zone)
        try:
            parsed = datetime.strptime(value.strip(), self.fmt)
        except ValueError:
            raise ValueError(f"expected a time like {self.fmt!r} (--date-format), "
                             f"got {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        return parsed.astimezone(UTC)


def check_format(fmt: str, option: str = "--date-format") -> str:
    """*fmt* if it is a strptime format that can hold a date; else InputError."""
    if "%" not in fmt:
        raise InputError(option, f"expected a strptime format like '%m/%d/%Y %H:%M', got {fmt!r}")
    try:
        datetime.strptime(datetime(2019, 10, 15, 17, 46).strftime(fmt), fmt)
    except ValueError as exc:
        raise InputError(option, f"expected a strptime format like '%m/%d/%Y %H:%M', got "
                                 f"{fmt!r} ({exc})") from None
    return fmt


def _fits(fmt: str, values: list[str]) -> bool:
    try:
        for value in values:
            datetime.strptime(value, fmt)
    except ValueError:
        return False
    return True


def detect_format(values: Iterable[Any], where: str, column: str) -> str | None:
    """The strptime format of a sample of a file's time values, or None when they
    need none (ISO-8601, epoch, RFC 2822) or fit no common format (then each row
    is rejected with its reason).

    Raises InputError when the sample reads both month-first and day-first.
    """
    odd: list[str] = []
    for value in values:
        if value in (None, "") or not isinstance(value, str):
            continue
        try:
            parse_timestamp(value)
        except (ValueError, OverflowError, OSError):
            odd.append(value.strip())
    if not odd:
        return None
    odd = list(dict.fromkeys(odd))
    fitting = [(fmt, order) for fmt, order in COMMON_FORMATS if _fits(fmt, odd)]
    if not fitting:
        return None
    orders = {order for _, order in fitting if order}
    if len(orders) > 1:
        month = next(fmt for fmt, order in fitting if order == "month/day")
        day = next(fmt for fmt, order in fitting if order == "day/month")
        example = next((v for v in odd if _fits(month, [v]) and _fits(day, [v])), odd[0])
        raise InputError(where, f"{column}: dates like {example!r} read as month/day and as "
                                f"day/month; say which with --date-format '{month}' or "
                                f"--date-format '{day}'")
    return fitting[0][0]
