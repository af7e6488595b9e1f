"""What every collector shares: the Source protocols and the polite HTTP client.

A collector is given a stream (platform, endpoint, tag) and its saved cursor
and yields :class:`~monitor.models.Batch` records; it never touches the
database. All network traffic goes through one :class:`HttpClient` per
service, which owns:

* one ``httpx.AsyncClient`` (connection pooling, timeouts from ``http:``),
* a User-Agent naming the project and the operator's contact,
* retries with exponential backoff and jitter on timeouts, connection
  errors, 5xx, truncated JSON and wrong content types,
* 429 handling (``Retry-After`` on Bluesky, the ISO ``X-RateLimit-Reset`` time
  on Mastodon, which sends no Retry-After),
* slowing down *before* the limit from ``X-RateLimit-*`` / ``RateLimit-*``,
* a per-host budget (concurrency and minimum interval between request starts)
  shared by every stream on that host.

Log lines name host, stream, status and what happens next; never post text.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx

from monitor import __version__
from monitor.backoff import Backoff
from monitor.errors import RateLimited, SourceError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.settings import HttpSettings

__all__ = [
    "HttpClient",
    "HttpStatusError",
    "JsonResponse",
    "PolledSource",
    "StreamingSource",
    "describe_transport_error",
    "format_wait",
    "host_of",
]

log = logging.getLogger("monitor.sources")

# Below this share of the window's budget the client starts spacing requests
# evenly until the reset, so the limit is never hit in normal operation.
_SLOW_DOWN_SHARE = 0.2
_SLOW_DOWN_FLOOR = 5


# ---------------------------------------------------------------------------- protocols


@runtime_checkable
class PolledSource(Protocol):
    """A collector the scheduler calls every ``interval()`` per stream."""

    source: str

    def streams(self) -> list[StreamKey]:
        """Every (endpoint, tag) stream this collector follows."""
        ...

    def interval(self) -> timedelta:
        """How often each stream is polled."""
        ...

    def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        """Fetch what is new since *cursor* (None: first run, backfill).

        Batches come oldest page first where the API allows; each carries the
        cursor to save once it is stored, so a crash between batches loses
        nothing and a re-fetch is dropped by the unique keys.
        Raises :class:`~monitor.errors.SourceError` when the stream cannot be
        fetched this tick.
        """
        ...


@runtime_checkable
class StreamingSource(Protocol):
    """A long-lived consumer (websocket, SSE) supervised by the service."""

    source: str

    def streams(self) -> list[StreamKey]:
        """The streams whose health this consumer reports."""
        ...

    async def run(self, cursor: Cursor | None, sink: Callable[[Batch], Awaitable[None]]) -> None:
        """Consume until cancelled; reconnect with backoff; ``await sink(batch)`` for each batch."""
        ...


# ---------------------------------------------------------------------------- helpers


def host_of(url: str) -> str:
    """The host[:port] of *url*, used as the budget and log key."""
    return urlsplit(url).netloc or url


def format_wait(seconds: float) -> str:
    """Human wait: 0.4s, 37s, 4m10s."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def describe_transport_error(exc: BaseException) -> tuple[str, str]:
    """(what went wrong, a hint for the operator) for a connect/timeout failure."""
    parts: list[str] = []
    chain: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(chain) < 12:
        seen = pending.pop(0)
        chain.append(seen)
        parts.append(str(seen))
        pending.extend(e for e in (seen.__cause__, seen.__context__) if e is not None)
        if isinstance(seen, BaseExceptionGroup):
            pending.extend(seen.exceptions)
    text = " ".join(parts).lower()
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "cannot connect (name resolution failed)", "is this machine online?"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "cannot connect (connection refused)", "is the server running and the URL right?"
    if isinstance(exc, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "connect",
            httpx.ReadTimeout: "read",
            httpx.WriteTimeout: "write",
            httpx.PoolTimeout: "pool",
        }.get(type(exc), "request")
        return f"timed out ({phase})", "the server is slow or overloaded"
    if any(s in text for s in ("name or service not known", "nodename nor servname",
                               "name resolution", "getaddrinfo", "no address associated",
                               "name does not resolve")):
        return "cannot connect (name resolution failed)", "is this machine online?"
    if "refused" in text:
        return "cannot connect (connection refused)", "is the server running and the URL right?"
    if "unreachable" in text:
        return "cannot connect (network unreachable)", "is this machine online?"
    if "ssl" in text or "certificate" in text:
        return "cannot connect (TLS handshake failed)", "check the URL scheme and the clock"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped mid-response", "the server closed the connection"
    return "cannot connect", "is this machine online?"


def _parse_reset(headers: httpx.Headers, now_wall: float) -> float | None:
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


def _parse_int(headers: httpx.Headers, *names: str) -> int | None:
    for name in names:
        raw = headers.get(name)
        if raw is not None:
            try:
                return int(float(raw))
            except ValueError:
                return None
    return None


def _retry_after(headers: httpx.Headers, now_wall: float) -> float | None:
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
    return max(0.0, when.timestamp() - now_wall)


# ---------------------------------------------------------------------------- errors


class HttpStatusError(SourceError):
    """The server answered with an error status.

    ``error`` is the platform's own error name when the body carries one
    (Mastodon ``{"error": "..."}``, Bluesky ``{"error": "AuthMissing", ...}``).
    """

    def __init__(
        self, message: str, *, status: int, host: str, error: str | None, retryable: bool
    ) -> None:
        self.host = host
        self.error = error
        super().__init__(message, retryable=retryable, status=status)


# ---------------------------------------------------------------------------- budget


class _HostBudget:
    """Concurrency and pacing for one host, shared by every stream on it."""

    def __init__(self, concurrency: int, min_interval: float) -> None:
        self.semaphore = asyncio.Semaphore(concurrency)
        self.min_interval = min_interval
        self.lock = asyncio.Lock()
        self.next_start = 0.0  # monotonic time the next request may start
        self.blocked_until = 0.0  # monotonic; set by a 429 or an exhausted window
        self.pace = 0.0  # extra spacing while the window runs low
        self.pace_until = 0.0

    async def reserve(self, max_wait: float) -> float:
        """Reserve the next start slot; sleep until it. Raises RateLimited past *max_wait*."""
        async with self.lock:
            now = time.monotonic()
            gap = self.min_interval
            if now < self.pace_until:
                gap = max(gap, self.pace)
            start = max(now, self.next_start, self.blocked_until)
            wait = start - now
            if wait > max_wait:
                raise RateLimited("rate-limit window exhausted", retry_after=wait)
            self.next_start = start + gap
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def observe(self, headers: httpx.Headers) -> tuple[int, int, float] | None:
        """Read the rate-limit headers; pace the rest of the window when it runs low."""
        remaining = _parse_int(headers, "x-ratelimit-remaining", "ratelimit-remaining")
        if remaining is None:
            return None
        limit = _parse_int(headers, "x-ratelimit-limit", "ratelimit-limit") or 0
        reset_in = _parse_reset(headers, time.time())
        if reset_in is None:
            return None
        now = time.monotonic()
        if remaining <= 0:
            self.blocked_until = max(self.blocked_until, now + reset_in)
        elif remaining <= max(_SLOW_DOWN_FLOOR, int(limit * _SLOW_DOWN_SHARE)):
            # spread what is left evenly over the rest of the window
            self.pace = reset_in / (remaining + 1)
            self.pace_until = now + reset_in
        else:
            self.pace = 0.0
        return remaining, limit, reset_in

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)


# ---------------------------------------------------------------------------- client


@dataclass(frozen=True, slots=True)
class JsonResponse:
    """A decoded JSON answer with its headers and size in bytes."""

    data: Any
    headers: httpx.Headers
    size: int
    url: str


class HttpClient:
    """One shared ``httpx.AsyncClient`` with the project's manners (see module doc).

    Use as ``async with HttpClient(config.http) as http: ...`` or call
    :meth:`aclose`. ``transport`` is for tests that need a real in-process
    server without sockets; production passes nothing.
    """

    def __init__(
        self,
        settings: HttpSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.user_agent = f"hashtag-monitor/{__version__} (+{settings.contact})"
        timeout = settings.timeout.total_seconds()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            follow_redirects=True,
            transport=transport,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            # httpx logs every request at INFO; our own lines already say what matters
            httpx_log.setLevel(logging.WARNING)
        self._budgets: dict[str, _HostBudget] = {}
        self._rng = rng or random.Random()
        self.requests = 0  # total requests sent, for tests and benchmarks

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        """The shared AsyncClient (for streaming requests that need it directly)."""
        return self._client

    def budget(self, host: str) -> _HostBudget:
        budget = self._budgets.get(host)
        if budget is None:
            budget = _HostBudget(
                self.settings.per_host_concurrency,
                self.settings.per_host_min_interval.total_seconds(),
            )
            self._budgets[host] = budget
        return budget

    async def get_json(
        self,
        url: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        stream: str = "",
    ) -> tuple[Any, httpx.Headers]:
        """GET *url* and decode JSON, with retries; returns (data, headers)."""
        response = await self.request_json("GET", url, params=params, headers=headers,
                                           stream=stream)
        return response.data, response.headers

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        stream: str = "",
        max_retries: int | None = None,
    ) -> JsonResponse:
        """Send a request and decode the JSON answer, retrying what is worth retrying.

        Raises :class:`HttpStatusError` for a non-retryable 4xx (at once) and
        :class:`~monitor.errors.SourceError` / :class:`~monitor.errors.RateLimited`
        once retries are used up. *stream* only labels log lines.
        """
        host = host_of(url)
        label = f"{host} {stream}".rstrip() if stream and host not in stream else (stream or host)
        budget = self.budget(host)
        retries = self.settings.max_retries if max_retries is None else max_retries
        backoff = Backoff.between(
            self.settings.backoff_base, self.settings.backoff_max, rng=self._rng
        )
        max_wait = self.settings.backoff_max.total_seconds()
        attempt = 0
        while True:
            attempt += 1
            try:
                waited = await budget.reserve(max_wait)
            except RateLimited as exc:
                raise RateLimited(f"{label}: rate limit window used up; next request allowed "
                                  f"in {format_wait(exc.retry_after)}", exc.retry_after) from None
            if waited > 1.0:
                log.info("%s: waited %s to stay within the rate limit", label, format_wait(waited))
            try:
                async with budget.semaphore:
                    self.requests += 1
                    response = await self._client.request(
                        method, url, params=params, headers=headers, json=json_body
                    )
            except httpx.TransportError as exc:
                what, hint = describe_transport_error(exc)
                delay = self._next_step(attempt, retries, backoff, None, max_wait)
                if delay is None:
                    # the caller reports the final failure (one line, with the next step)
                    log.debug("%s: %s; giving up after %d attempts", label, what, attempt)
                    # "cannot connect (connection refused)" → "(connection refused; hint)"
                    detail = (f"{what[:-1]}; {hint})" if what.endswith(")")
                              else f"{what} ({hint})")
                    raise SourceError(f"{label}: {detail} after {attempt} attempts",
                                      retryable=True) from None
                log.warning("%s: %s; retrying in %s — %s", label, what, format_wait(delay), hint)
                await asyncio.sleep(delay)
                continue
            status = response.status_code
            limits = budget.observe(response.headers)
            if limits is not None and limits[0] <= max(1, limits[1] // 10):
                log.info("%s: %d of %d requests left until the window resets in %s; slowing down",
                         label, limits[0], limits[1], format_wait(limits[2]))
            if status == 429:
                now_wall = time.time()
                wait = _retry_after(response.headers, now_wall)
                if wait is None:  # Mastodon sends no Retry-After, only the ISO reset time
                    wait = _parse_reset(response.headers, now_wall)
                if wait is None:
                    wait = backoff.next_delay()
                budget.block(wait)  # every stream on this host waits, not only this one
                if attempt > retries or wait > max_wait:
                    raise RateLimited(f"{label}: HTTP 429 (rate limited); next request allowed "
                                      f"in {format_wait(wait)}", wait)
                log.warning("%s: HTTP 429 (rate limited); retrying in %s (attempt %d/%d)",
                            label, format_wait(wait), attempt, retries + 1)
                continue
            if 400 <= status < 500:
                code = _error_name(response)
                detail = f" ({code})" if code else ""
                raise HttpStatusError(
                    f"{label}: HTTP {status}{detail}", status=status, host=host, error=code,
                    retryable=False,
                )
            error: SourceError
            server_wait: float | None = None
            if status >= 500:
                what = f"HTTP {status}"
                error = SourceError(f"{label}: {what}", retryable=True, status=status)
                server_wait = _retry_after(response.headers, time.time())  # 503 may say when
            else:
                try:
                    return self._decode(response, label)
                except SourceError as exc:
                    error = exc
                    what = str(exc).removeprefix(f"{label}: ")
            delay = self._next_step(attempt, retries, backoff, server_wait, max_wait)
            if delay is None:
                log.debug("%s: %s; giving up after %d attempts", label, what, attempt)
                raise SourceError(f"{label}: {what} after {attempt} attempts",
                                  retryable=True, status=error.status) from None
            log.warning("%s: %s; retrying in %s (attempt %d/%d)", label, what,
                        format_wait(delay), attempt, retries + 1)
            await asyncio.sleep(delay)

    @staticmethod
    def _next_step(
        attempt: int, retries: int, backoff: Backoff, wait: float | None, max_wait: float
    ) -> float | None:
        if attempt > retries:
            return None
        delay = backoff.next_delay() if wait is None else wait
        return min(delay, max_wait)

    @staticmethod
    def _decode(response: httpx.Response, label: str) -> JsonResponse:
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype != "application/json" and not ctype.endswith("+json"):
            raise SourceError(f"{label}: HTTP {response.status_code} but expected JSON, "
                              f"got {ctype!r}", retryable=True, status=response.status_code)
        body = response.content
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SourceError(f"{label}: truncated or invalid JSON ({len(body)} bytes, "
                              f"{exc.msg if isinstance(exc, json.JSONDecodeError) else 'bad UTF-8'}"
                              f")", retryable=True, status=response.status_code) from None
        return JsonResponse(data=data, headers=response.headers, size=len(body),
                            url=str(response.url))


def _error_name(response: httpx.Response) -> str | None:
    """The platform's error name from a JSON error body, if there is one."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, str) and len(err) < 200:
            return err
    return None
