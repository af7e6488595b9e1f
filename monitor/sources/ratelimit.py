"""The per-host budget: how many connections a host gets, how often, and for how long it
wants us to stay away.

One :class:`HostBudgets` per service is shared by every way we reach a host: the
HTTP transport (:mod:`monitor.sources.transport`) takes a slot for each
attempt of each request, polls and the Mastodon live stream alike, and the
Jetstream websocket takes one for each (re)connect. A 429 or an exhausted
rate-limit window seen on any of them holds back all of them.

The platforms say "slow down" differently, and this module reads every form:

* ``Retry-After`` (seconds or an HTTP date): Bluesky on 429, and some 503s;
* a rate-limit window, described per platform by a :class:`RateScheme` (which
  headers carry what, and how the reset is written):

  ========== ============================ ========================================
  scheme     headers                      reset
  ========== ============================ ========================================
  mastodon   ``X-RateLimit-Limit/Remaining/Reset``  ISO-8601 time with microseconds
  reddit     ``X-Ratelimit-Used/Remaining/Reset``   **seconds left** (no Limit header:
                                                    limit = used + remaining)
  x          ``x-rate-limit-limit/remaining/reset`` epoch seconds
  ietf       ``RateLimit-Limit/Remaining/Reset``    epoch seconds (Bluesky), or seconds
                                                    left (IETF draft): told apart by size
  ========== ============================ ========================================

  A collector declares its host's scheme (:meth:`HostBudgets.declare`); a host
  nobody declared is read with :data:`AUTO_SCHEMES`, whose resets are told
  apart by their shape (an ISO time, an epoch above 10^9, else seconds left);
* ``*-Remaining`` / ``*-Limit``, to start spacing requests *before* the limit.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Literal, NamedTuple, Protocol
from urllib.parse import urlsplit

from monitor.backoff import Backoff
from monitor.errors import RateLimited
from monitor.sources.errors import format_wait
from monitor.sources.offline import OfflineWatch
from monitor.sources.settings import HttpSettings

__all__ = [
    "AUTO_SCHEMES",
    "IETF",
    "MASTODON",
    "REDDIT",
    "HeaderLookup",
    "HostBudget",
    "HostBudgets",
    "RateScheme",
    "ResetKind",
    "Window",
    "X",
    "host_of",
    "read_window",
    "reset_seconds",
    "retry_after",
    "wait_after_429",
]

# Below this share of the window's budget the host's requests are spaced evenly
# until the reset, so the limit is never hit in normal operation.
_SLOW_DOWN_SHARE = 0.2
_SLOW_DOWN_FLOOR = 5


class HeaderLookup(Protocol):
    """Case-insensitive response headers: httpx's and websockets' both fit."""

    def get(self, key: str, /) -> str | None: ...


class Window(NamedTuple):
    """What the rate-limit headers of one answer said."""

    remaining: int
    limit: int
    reset_in: float  # seconds


def host_of(url: str) -> str:
    """The host[:port] of *url*, used as the budget and log key."""
    return urlsplit(url).netloc or url


def retry_after(headers: HeaderLookup, now_wall: float | None = None) -> float | None:
    """Seconds from ``Retry-After`` (a number or an HTTP date), if the answer has one."""
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now_wall is None else now_wall))


ResetKind = Literal["iso", "epoch", "seconds", "auto"]


class RateScheme(NamedTuple):
    """How one platform writes its rate-limit window into response headers.

    Header names are lower case (lookups are case-insensitive). ``limit`` or
    ``used`` may be None when the platform does not send it; the window's size
    is then ``used + remaining``.
    """

    name: str
    remaining: str
    reset: str
    reset_kind: ResetKind
    limit: str | None = None
    used: str | None = None


MASTODON = RateScheme("mastodon", "x-ratelimit-remaining", "x-ratelimit-reset", "iso",
                      limit="x-ratelimit-limit")
# Reddit: "X-Ratelimit-Reset: seconds left in the 10-minute window", no Limit header
REDDIT = RateScheme("reddit", "x-ratelimit-remaining", "x-ratelimit-reset", "seconds",
                    used="x-ratelimit-used")
X = RateScheme("x", "x-rate-limit-remaining", "x-rate-limit-reset", "epoch",
               limit="x-rate-limit-limit")
IETF = RateScheme("ietf", "ratelimit-remaining", "ratelimit-reset", "auto",
                  limit="ratelimit-limit")
# an undeclared host: the first family whose Remaining header is present wins, and
# its reset is told apart by its shape (x-ratelimit-* is Mastodon's ISO or Reddit's
# seconds; both carry a Limit or a Used header)
AUTO_SCHEMES: tuple[RateScheme, ...] = (
    RateScheme("x-ratelimit", "x-ratelimit-remaining", "x-ratelimit-reset", "auto",
               limit="x-ratelimit-limit", used="x-ratelimit-used"),
    X,
    IETF,
)


def reset_seconds(raw: str, kind: ResetKind, now_wall: float) -> float | None:
    """Seconds until a window resets, from a reset header written as *kind*.

    ``auto``: an ISO-8601 time; else a number, epoch seconds when above 10^9
    (2001-09-09: no window is that long), seconds left otherwise. None when
    the value cannot be read as *kind*.
    """
    text = raw.strip()
    if kind in ("iso", "auto"):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            if kind == "iso":
                return None
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, when.timestamp() - now_wall)
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    if kind == "epoch" or (kind == "auto" and value > 1e9):
        return max(0.0, value - now_wall)
    return max(0.0, value)


def _schemes(scheme: RateScheme | None, headers: HeaderLookup) -> RateScheme | None:
    """The scheme to read *headers* with: the declared one, else the first that fits."""
    if scheme is not None:
        return scheme
    for candidate in AUTO_SCHEMES:
        if headers.get(candidate.remaining) is not None or \
                headers.get(candidate.reset) is not None:
            return candidate
    return None


def _reset_in(headers: HeaderLookup, now_wall: float,
              scheme: RateScheme | None = None) -> float | None:
    """Seconds until the rate-limit window resets, per *scheme* (None: detect)."""
    found = _schemes(scheme, headers)
    if found is None:
        return None
    raw = headers.get(found.reset)
    return None if not raw else reset_seconds(raw, found.reset_kind, now_wall)


def _int(headers: HeaderLookup, name: str | None) -> int | None:
    raw = headers.get(name) if name else None
    if raw is None:
        return None
    try:  # Reddit has been seen to send "598.0"
        return int(float(raw))
    except (ValueError, OverflowError):
        return None


def read_window(headers: HeaderLookup, scheme: RateScheme | None = None,
                now_wall: float | None = None) -> Window | None:
    """The rate-limit window an answer describes, read per *scheme* (None: detect).

    None when the answer carries no readable remaining count and reset.
    """
    found = _schemes(scheme, headers)
    if found is None:
        return None
    remaining = _int(headers, found.remaining)
    if remaining is None:
        return None
    reset_in = _reset_in(headers, time.time() if now_wall is None else now_wall, found)
    if reset_in is None:
        return None
    limit = _int(headers, found.limit)
    if limit is None:
        used = _int(headers, found.used)
        limit = remaining + used if used is not None else 0
    return Window(remaining, limit, reset_in)


def wait_after_429(headers: HeaderLookup, scheme: RateScheme | None = None) -> float | None:
    """How long a 429 asks us to wait: Retry-After, else the window's reset time."""
    now_wall = time.time()
    wait = retry_after(headers, now_wall)
    # Mastodon and Reddit send no Retry-After, only the window's reset
    return wait if wait is not None else _reset_in(headers, now_wall, scheme)


class HostBudget:
    """Concurrency and pacing for one host, shared by every stream on it."""

    def __init__(self, concurrency: int, min_interval: float) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.min_interval = min_interval
        self._lock = asyncio.Lock()
        self._next_start = 0.0  # monotonic time the next request may start
        self._last_sent = -1e18  # monotonic time the last request really went out
        self._blocked_until = 0.0  # monotonic; set by a 429 or an exhausted window
        self._pace = 0.0  # extra spacing while the window runs low
        self._pace_until = 0.0
        self.scheme: RateScheme | None = None  # None: detect from the headers

    def wait_after_429(self, headers: HeaderLookup) -> float | None:
        """:func:`wait_after_429` read with this host's scheme."""
        return wait_after_429(headers, self.scheme)

    async def reserve(self, max_wait: float) -> float:
        """Reserve the next start slot and sleep until it; returns the seconds waited.

        Raises :class:`~monitor.errors.RateLimited` (without waiting) when the
        slot is more than *max_wait* away: the caller skips this tick.
        """
        async with self._lock:
            now = time.monotonic()
            gap = self.min_interval
            if now < self._pace_until:
                gap = max(gap, self._pace)
            start = max(now, self._next_start, self._blocked_until)
            wait = start - now
            if wait > max_wait:
                raise RateLimited("rate-limit window exhausted", retry_after=wait)
            self._next_start = start + gap
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def space_out(self) -> None:
        """Keep ``min_interval`` between requests as they really go out (call it
        holding the concurrency slot). :meth:`reserve` plans start times; a request
        that reaches its slot late (a slow answer before it, a lagging event loop)
        would otherwise let the ones planned after it go out back to back."""
        now = time.monotonic()
        start = max(now, self._last_sent + self.min_interval)
        self._last_sent = start
        if start > now:
            await asyncio.sleep(start - now)

    @property
    def next_free(self) -> float:
        """Monotonic time the next request may go out (planned slot and real spacing)."""
        return max(self._next_start, self._last_sent + self.min_interval)

    def observe(self, headers: HeaderLookup) -> Window | None:
        """Read the rate-limit headers; pace the rest of the window when it runs low."""
        window = read_window(headers, self.scheme)
        if window is None:
            return None
        remaining, limit, reset_in = window
        now = time.monotonic()
        if remaining <= 0:
            self.block(reset_in)
        elif remaining <= max(_SLOW_DOWN_FLOOR, int(limit * _SLOW_DOWN_SHARE)):
            # spread what is left evenly over the rest of the window
            self._pace = reset_in / (remaining + 1)
            self._pace_until = now + reset_in
        else:
            self._pace = 0.0
        return window

    def block(self, seconds: float) -> None:
        """No request to this host starts within *seconds* (every stream waits)."""
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)


class HostBudgets:
    """Every host's :class:`HostBudget`, plus the one retry schedule, from ``http:``."""

    def __init__(self, settings: HttpSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.max_wait = settings.backoff_max.total_seconds()
        self._rng = rng or random.Random()
        self._budgets: dict[str, HostBudget] = {}
        # one "this machine looks offline" line for every stream sharing these budgets
        self.offline = OfflineWatch()

    def of(self, host: str) -> HostBudget:
        budget = self._budgets.get(host)
        if budget is None:
            budget = HostBudget(self.settings.per_host_concurrency,
                                self.settings.per_host_min_interval.total_seconds())
            self._budgets[host] = budget
        return budget

    def declare(self, url: str, scheme: RateScheme) -> None:
        """Read *url*'s host's rate-limit headers as *scheme* (a collector knows its platform)."""
        self.of(host_of(url)).scheme = scheme

    def backoff(self) -> Backoff:
        """A fresh retry/reconnect schedule (``backoff_base`` doubling up to ``backoff_max``)."""
        return Backoff.between(self.settings.backoff_base, self.settings.backoff_max,
                               rng=self._rng)

    @asynccontextmanager
    async def opening(self, url: str, label: str) -> AsyncIterator[HostBudget]:
        """Hold a slot of *url*'s host while a long-lived connection is set up.

        For a connection made outside the HTTP transport (a websocket). The
        slot is given back as soon as the block ends, so open the connection
        inside it and read from it outside: a stream that held its slot for
        hours would starve every poll of the host.
        """
        budget = self.of(host_of(url))
        try:
            await budget.reserve(self.max_wait)
        except RateLimited as exc:
            raise RateLimited(f"{label}: rate limit window used up; next connect allowed "
                              f"in {format_wait(exc.retry_after)}", exc.retry_after) from None
        async with budget.semaphore:
            yield budget

    def refused(self, url: str, status: int, headers: HeaderLookup) -> float | None:
        """Note a 429 (or a 503 with Retry-After) answered outside the transport.

        Blocks the host for the wait the answer asked for and returns it
        (None when the answer named none).
        """
        budget = self.of(host_of(url))
        wait = budget.wait_after_429(headers) if status == 429 else retry_after(headers)
        if wait is not None:
            budget.block(wait)
        return wait
