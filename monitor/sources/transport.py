"""The one place every HTTP request goes through: budget, rate limits, retries.

:class:`PoliteTransport` is an ``httpx.AsyncBaseTransport`` that wraps the
real one (``httpx.AsyncHTTPTransport``), in the style httpx documents for
custom transports. The shared :class:`~monitor.sources.http.HttpClient` is built
on it, so JSON polls, logins and the Mastodon live (SSE) stream all get, per
attempt:

1. a start slot from the host's :class:`~monitor.sources.ratelimit.HostBudget`
   (minimum interval, pacing, any block a 429 left), then a concurrency slot;
2. the request, and, when the request carries a decoder, its body read and
   decoded while the slot is held;
3. the verdict: a 429 blocks the whole host for what the server asked
   (``Retry-After`` or the reset time) and is retried; a 5xx, a timeout, a
   connection error or a body the decoder refuses is retried with
   :class:`~monitor.backoff.Backoff`; anything else is handed back.

A streaming request (no decoder) gives its concurrency slot back as soon as
the headers are in: the slot guards connection setup, not the hours a live
stream stays open, or one stream per slot would starve every poll of the host.

Per-request options travel in ``request.extensions`` (httpx's own channel for
such things, like its ``timeout`` and ``trace``): :data:`LABEL` names the
request in log lines, :data:`RETRIES` overrides ``http.max_retries`` and
:data:`DECODE` is the decoder, whose result the response carries under
:data:`DECODED`. :data:`RATE_LIMITED` is an optional classifier for platforms
that signal a rate limit with another status (Lemmy 0.19 answers ``400
{"error":"rate_limit_error"}``): when it returns True the answer is handled
exactly like a 429. When retries are used up the transport raises
:class:`~monitor.errors.SourceError` (:class:`~monitor.errors.RateLimited`
for 429s) with a one-line message; the caller reports it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from monitor.errors import RateLimited, SourceError
from monitor.sources.errors import describe_transport_error, format_wait
from monitor.sources.ratelimit import HostBudget, HostBudgets, retry_after

__all__ = ["DECODE", "DECODED", "LABEL", "RATE_LIMITED", "RETRIES", "BadBody", "Decoder",
           "EnvironmentProxies", "PoliteTransport", "RateLimitCheck"]

log = logging.getLogger(__name__)

LABEL = "monitor.label"
RETRIES = "monitor.retries"
DECODE = "monitor.decode"
DECODED = "monitor.decoded"
RATE_LIMITED = "monitor.rate_limited"

Decoder = Callable[[httpx.Response], Any]
# (a read answer) -> True when it is a rate limit in disguise; called on non-429 answers
RateLimitCheck = Callable[[httpx.Response], bool]


class BadBody(Exception):
    """Raised by a decoder: the answer is not what was asked for; retried like a 5xx."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why an attempt did not give a usable answer, and how the server wants us to wait."""

    what: str  # "HTTP 503", "timed out (read)", "truncated or invalid JSON (...)"
    hint: str | None = None  # for connection failures: what the operator can check
    status: int | None = None
    wait: float | None = None  # a server-given wait (Retry-After on a 503)


class EnvironmentProxies(httpx.AsyncBaseTransport):
    """The real sockets: one small connection pool per host, through ``HTTPS_PROXY``/
    ``HTTP_PROXY``/``ALL_PROXY`` where the environment sets them and ``NO_PROXY`` does
    not exempt the host.

    httpx reads these proxy variables itself only when a client has no explicit
    transport; ours has one, so without this a researcher behind an institution's
    proxy could not collect at all.

    Why a pool per host: one shared httpcore pool scans its whole connection list
    for every request, so with a hundred hosts a quarter of a poll's CPU went to
    that scan, and a shared keep-alive cap below the number of hosts closed and
    reopened connections all the time. Here each host (scheme, host, port and
    proxy) gets its own ``httpx.AsyncHTTPTransport``, made on first use.

    A host pool caps neither its connections nor its idle ones. A live stream
    holds its connection for hours outside the host's concurrency slot, so a
    connection cap would make the host's polls wait behind its streams; and
    httpcore (1.0.9) closes an idle connection whenever the pool holds more
    connections *in all* than the keep-alive cap, so a cap at the concurrency would
    close each poll's connection while a stream is open. A pool never holds more
    connections than it had busy at once (the host's concurrency plus its live
    streams), and idle ones close after *keepalive_expiry* as before. At most
    *max_hosts* pools are kept: the least recently used one beyond that, and any
    pool unused for longer than the expiry, is closed, though never under a
    request still open (an evicted pool with an open stream is closed when the
    stream ends).
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, max_hosts: int = 256,
                 keepalive_expiry: float = 5.0) -> None:
        env = os.environ if environ is None else environ
        # lower case wins, as curl and urllib read them
        self._proxies = {name: env.get(f"{name}_proxy") or env.get(f"{name.upper()}_PROXY") or ""
                         for name in ("http", "https", "all")}
        self._no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
        self._limits = httpx.Limits(max_connections=None, max_keepalive_connections=None,
                                    keepalive_expiry=keepalive_expiry)
        # One TLS context for every pool, built now: loading it takes tens of ms,
        # which per host would land inside a budget slot. Same settings as
        # httpx's default (verify=True, SSL_CERT_FILE/SSL_CERT_DIR honoured).
        self._tls = httpx.create_ssl_context()
        self._max_hosts = max_hosts
        self._expiry = keepalive_expiry
        self._pools: OrderedDict[_PoolKey, _HostPool] = OrderedDict()  # least recent first
        self._retired: set[_HostPool] = set()  # evicted, closed when their last request ends
        self._next_sweep = 0.0

    def proxy_for(self, url: httpx.URL) -> str | None:
        """The proxy URL a request to *url* goes through, or None for a direct one."""
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy or _bypassed(url.host, self._no_proxy):
            return None
        return proxy

    @property
    def hosts(self) -> int:
        """Host pools currently kept (for tests)."""
        return len(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        proxy = self.proxy_for(url)
        pool, stale = self._checkout((proxy, url.scheme, url.host, url.port), proxy)
        try:
            await _close_all(stale)
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            await self._release(pool)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        # the request stays open until its body is closed (read to the end, or a stream ends)
        response.stream = _Tracked(response.stream, lambda: self._release(pool))
        return response

    def _checkout(self, key: _PoolKey, proxy: str | None
                  ) -> tuple[_HostPool, list[httpx.AsyncHTTPTransport]]:
        """*key*'s pool, counted as in use, and the pools to close now (evicted or idle).

        Synchronous, so no other request sees the pools half updated.
        """
        now = time.monotonic()
        stale: list[httpx.AsyncHTTPTransport] = []
        pool = self._pools.get(key)
        if pool is None:
            pool = _HostPool(httpx.AsyncHTTPTransport(verify=self._tls, limits=self._limits,
                                                      proxy=proxy))
            self._pools[key] = pool
            while len(self._pools) > self._max_hosts:
                _, old = self._pools.popitem(last=False)
                if old.open:
                    self._retired.add(old)
                else:
                    stale.append(old.transport)
        else:
            self._pools.move_to_end(key)
        pool.open += 1
        pool.last_used = now
        if now >= self._next_sweep:
            # httpcore drops a pool's expired connections only when that pool is
            # used again; a host polled rarely would keep its sockets meanwhile
            self._next_sweep = now + self._expiry
            for old_key, old in list(self._pools.items()):
                if old.last_used > now - self._expiry:
                    break  # the rest were used later (least recent first)
                if not old.open:
                    del self._pools[old_key]
                    stale.append(old.transport)
        return pool, stale

    async def _release(self, pool: _HostPool) -> None:
        pool.open -= 1
        if not pool.open and pool in self._retired:
            self._retired.discard(pool)
            await _close_all([pool.transport])

    async def aclose(self) -> None:
        pools = [*self._pools.values(), *self._retired]
        self._pools.clear()
        self._retired.clear()
        await _close_all([pool.transport for pool in pools])


_PoolKey = tuple[str | None, str, str, int | None]  # proxy, scheme, host, port


class _HostPool:
    """One host's transport, and how many of its requests are open (body not yet closed)."""

    __slots__ = ("last_used", "open", "transport")

    def __init__(self, transport: httpx.AsyncHTTPTransport) -> None:
        self.transport = transport
        self.open = 0
        self.last_used = 0.0


class _Tracked(httpx.AsyncByteStream):
    """A response body that reports, once, when it is closed: its request is then over."""

    def __init__(self, inner: httpx.AsyncByteStream,
                 on_close: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._on_close: Callable[[], Awaitable[None]] | None = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                await on_close()


async def _close_all(transports: list[httpx.AsyncHTTPTransport]) -> None:
    for transport in transports:
        try:
            await transport.aclose()
        except Exception as exc:  # an idle pool that fails to close must not fail a request
            log.debug("closing an idle connection pool failed: %r", exc)


def _bypassed(host: str, no_proxy: str) -> bool:
    # NO_PROXY as curl reads it: '*', or hosts/domains matched on a dot boundary
    for entry in (e.strip().lower().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


class PoliteTransport(httpx.AsyncBaseTransport):
    """Retries, backoff and the per-host budget around a real transport (see module doc)."""

    def __init__(self, budgets: HostBudgets, inner: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.budgets = budgets
        self._inner = inner or EnvironmentProxies()
        self.requests = 0  # attempts sent, for tests and benchmarks

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.netloc.decode("ascii")
        label = str(request.extensions.get(LABEL) or host)
        retries = int(request.extensions.get(RETRIES, self.budgets.settings.max_retries))
        decode: Decoder | None = request.extensions.get(DECODE)
        limited: RateLimitCheck | None = request.extensions.get(RATE_LIMITED)
        budget = self.budgets.of(host)
        backoff = self.budgets.backoff()
        max_wait = self.budgets.max_wait
        attempt = 0
        while True:
            attempt += 1
            await self._reserve(budget, label)
            try:
                response = await self._send(request, budget, read_body=decode is not None)
            except httpx.TransportError as exc:
                what, hint = describe_transport_error(exc)
                failure = _Failure(what, hint=hint)
            else:
                self.budgets.offline.answered(host)
                self._observe(budget, response, label)
                status = response.status_code
                if status == 429 or (limited is not None and limited(response)):
                    wait = budget.wait_after_429(response.headers)  # per its scheme
                    wait = backoff.next_delay() if wait is None else wait
                    budget.block(wait)  # every stream on this host waits, not only this one
                    if attempt > retries or wait > max_wait:
                        raise RateLimited(f"{label}: HTTP {status} (rate limited); next request "
                                          f"allowed in {format_wait(wait)}", wait)
                    log.warning("%s: HTTP %d (rate limited); retrying in %s (attempt %d/%d)",
                                label, status, format_wait(wait), attempt, retries + 1)
                    continue  # the next reserve() sleeps until the block ends
                found = self._verdict(response, decode)
                if found is None:
                    return response
                failure = found
            if failure.hint is not None:
                # many hosts failing to connect is one "offline" line (sources.offline)
                self.budgets.offline.failed(host, failure.what)
            delay = None if attempt > retries else min(
                backoff.next_delay() if failure.wait is None else failure.wait, max_wait)
            if delay is None:
                raise self._given_up(failure, label, attempt) from None
            if failure.hint is not None:
                # cannot connect: the poll's final failure is the stream's one line
                # (the service logs it); each retry of it is detail
                level = logging.DEBUG if failure.what.startswith("cannot connect") \
                    else logging.WARNING
                log.log(level, "%s: %s; retrying in %s — %s", label, failure.what,
                        format_wait(delay), failure.hint)
            else:
                log.warning("%s: %s; retrying in %s (attempt %d/%d)", label, failure.what,
                            format_wait(delay), attempt, retries + 1)
            await asyncio.sleep(delay)

    # -- the steps of one attempt ---------------------------------------------------

    async def _reserve(self, budget: HostBudget, label: str) -> None:
        try:
            waited = await budget.reserve(self.budgets.max_wait)
        except RateLimited as exc:
            raise RateLimited(f"{label}: rate limit window used up; next request allowed "
                              f"in {format_wait(exc.retry_after)}", exc.retry_after) from None
        if waited > 1.0:
            log.info("%s: waited %s to stay within the rate limit", label, format_wait(waited))

    async def _send(self, request: httpx.Request, budget: HostBudget, *, read_body: bool
                    ) -> httpx.Response:
        """Send under the host's concurrency slot; read the body there when it is wanted.

        Error bodies are small and always read (they name the error, and a
        read body lets the connection be reused); a 2xx body of a request
        without decoder is left to the caller: that is a stream.
        """
        async with budget.semaphore:
            await budget.space_out()
            self.requests += 1
            response = await self._inner.handle_async_request(request)
            if read_body or response.status_code >= 400:
                try:
                    await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
        return response

    @staticmethod
    def _observe(budget: HostBudget, response: httpx.Response, label: str) -> None:
        window = budget.observe(response.headers)
        if window is not None and window.remaining <= max(1, window.limit // 10):
            log.info("%s: %d of %d requests left until the window resets in %s; slowing down",
                     label, window.remaining, window.limit, format_wait(window.reset_in))

    @staticmethod
    def _verdict(response: httpx.Response, decode: Decoder | None) -> _Failure | None:
        """None when *response* is the answer to hand back; else why to try again."""
        status = response.status_code
        if status >= 500:
            # a 503 may say when to come back
            return _Failure(f"HTTP {status}", status=status, wait=retry_after(response.headers))
        if decode is not None and 200 <= status < 300:
            try:
                response.extensions[DECODED] = decode(response)
            except BadBody as exc:
                return _Failure(str(exc), status=status)
        return None

    @staticmethod
    def _given_up(failure: _Failure, label: str, attempt: int) -> SourceError:
        # the caller reports the final failure (one line, with the next step)
        log.debug("%s: %s; giving up after %d attempts", label, failure.what, attempt)
        detail = failure.what
        if failure.hint is not None:
            # "cannot connect (connection refused)" → "(connection refused; hint)"
            detail = (f"{detail[:-1]}; {failure.hint})" if detail.endswith(")")
                      else f"{detail} ({failure.hint})")
        return SourceError(f"{label}: {detail} after {attempt} attempts", retryable=True,
                           status=failure.status)
