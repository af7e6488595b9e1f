"""The per-host budget: how many connections a host gets, how often, and for how long it
wants us to stay away.

One :class:`HostBudgets` per service is shared by every way we reach a host: the
HTTP transport (:mod:`monitor.sources.transport`) takes a slot for each
attempt of each request, polls and the Mastodon live stream alike, and the
Jetstream websocket takes one for each (re)connect. A 429 or an exhausted
rate-limit window seen on any of them holds back all of them.

The platforms say "slow down" differently, and this module reads every form:

* ``Retry-After`` (seconds or an HTTP date): Bluesky on 429, and some 503s;
* ``X-RateLimit-Reset`` as an ISO-8601 time with microseconds: Mastodon,
  which sends no Retry-After;
* ``RateLimit-Reset`` as epoch seconds (or, IETF-draft style, seconds left);
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
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from monitor.backoff import Backoff
from monitor.errors import RateLimited
from monitor.sources.errors import format_wait
from monitor.sources.settings import HttpSettings

__all__ = ["HeaderLookup", "HostBudget", "HostBudgets", "Window", "host_of", "retry_after",
           "wait_after_429"]

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


def _reset_in(headers: HeaderLookup, now_wall: float) -> float | None:
    """Seconds until the rate-limit window resets, from either platform's headers."""
    raw = headers.get("x-ratelimit-reset")
    if raw:
        # Mastodon: ISO-8601 with microseconds, e.g. 2025-11-20T14:05:00.000000Z
        try:
            when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, when.timestamp() - now_wall)
        except ValueError:
            try:  # some servers send seconds left instead
                return max(0.0, float(raw))
            except ValueError:
                return None
    raw = headers.get("ratelimit-reset")
    if raw:
        # Bluesky: epoch seconds; small numbers are "seconds left" (IETF draft style)
        try:
            value = float(raw)
        except ValueError:
            return None
        return max(0.0, value - now_wall) if value > 1e9 else max(0.0, value)
    return None


def _first_int(headers: HeaderLookup, *names: str) -> int | None:
    for name in names:
        raw = headers.get(name)
        if raw is not None:
            try:
                return int(float(raw))
            except ValueError:
                return None
    return None


def wait_after_429(headers: HeaderLookup) -> float | None:
    """How long a 429 asks us to wait: Retry-After, else the window's reset time."""
    now_wall = time.time()
    wait = retry_after(headers, now_wall)
    # Mastodon sends no Retry-After, only the ISO reset time
    return wait if wait is not None else _reset_in(headers, now_wall)


class HostBudget:
    """Concurrency and pacing for one host, shared by every stream on it."""

    def __init__(self, concurrency: int, min_interval: float) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.min_interval = min_interval
        self._lock = asyncio.Lock()
        self._next_start = 0.0  # monotonic time the next request may start
        self._blocked_until = 0.0  # monotonic; set by a 429 or an exhausted window
        self._pace = 0.0  # extra spacing while the window runs low
        self._pace_until = 0.0

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

    def observe(self, headers: HeaderLookup) -> Window | None:
        """Read the rate-limit headers; pace the rest of the window when it runs low."""
        remaining = _first_int(headers, "x-ratelimit-remaining", "ratelimit-remaining")
        if remaining is None:
            return None
        limit = _first_int(headers, "x-ratelimit-limit", "ratelimit-limit") or 0
        reset_in = _reset_in(headers, time.time())
        if reset_in is None:
            return None
        now = time.monotonic()
        if remaining <= 0:
            self.block(reset_in)
        elif remaining <= max(_SLOW_DOWN_FLOOR, int(limit * _SLOW_DOWN_SHARE)):
            # spread what is left evenly over the rest of the window
            self._pace = reset_in / (remaining + 1)
            self._pace_until = now + reset_in
        else:
            self._pace = 0.0
        return Window(remaining, limit, reset_in)

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

    def of(self, host: str) -> HostBudget:
        budget = self._budgets.get(host)
        if budget is None:
            budget = HostBudget(self.settings.per_host_concurrency,
                                self.settings.per_host_min_interval.total_seconds())
            self._budgets[host] = budget
        return budget

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
        wait = wait_after_429(headers) if status == 429 else retry_after(headers)
        if wait is not None:
            self.of(host_of(url)).block(wait)
        return wait
