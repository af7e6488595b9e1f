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
:data:`DECODED`. When retries are used up the transport raises
:class:`~monitor.errors.SourceError` (:class:`~monitor.errors.RateLimited`
for 429s) with a one-line message; the caller reports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from monitor.errors import RateLimited, SourceError
from monitor.sources.errors import describe_transport_error, format_wait
from monitor.sources.ratelimit import HostBudget, HostBudgets, retry_after, wait_after_429

__all__ = ["DECODE", "DECODED", "LABEL", "RETRIES", "BadBody", "Decoder", "PoliteTransport"]

log = logging.getLogger(__name__)

LABEL = "monitor.label"
RETRIES = "monitor.retries"
DECODE = "monitor.decode"
DECODED = "monitor.decoded"

Decoder = Callable[[httpx.Response], Any]


class BadBody(Exception):
    """Raised by a decoder: the answer is not what was asked for; retried like a 5xx."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why an attempt did not give a usable answer, and how the server wants us to wait."""

    what: str  # "HTTP 503", "timed out (read)", "truncated or invalid JSON (...)"
    hint: str | None = None  # for connection failures: what the operator can check
    status: int | None = None
    wait: float | None = None  # a server-given wait (Retry-After on a 503)


class PoliteTransport(httpx.AsyncBaseTransport):
    """Retries, backoff and the per-host budget around a real transport (see module doc)."""

    def __init__(self, budgets: HostBudgets, inner: httpx.AsyncBaseTransport | None = None
                 ) -> None:
        self.budgets = budgets
        self._inner = inner or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
        self.requests = 0  # attempts sent, for tests and benchmarks

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.netloc.decode("ascii")
        label = str(request.extensions.get(LABEL) or host)
        retries = int(request.extensions.get(RETRIES, self.budgets.settings.max_retries))
        decode: Decoder | None = request.extensions.get(DECODE)
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
                self._observe(budget, response, label)
                if response.status_code == 429:
                    wait = wait_after_429(response.headers)
                    wait = backoff.next_delay() if wait is None else wait
                    budget.block(wait)  # every stream on this host waits, not only this one
                    if attempt > retries or wait > max_wait:
                        raise RateLimited(f"{label}: HTTP 429 (rate limited); next request "
                                          f"allowed in {format_wait(wait)}", wait)
                    log.warning("%s: HTTP 429 (rate limited); retrying in %s (attempt %d/%d)",
                                label, format_wait(wait), attempt, retries + 1)
                    continue  # the next reserve() sleeps until the block ends
                found = self._verdict(response, decode)
                if found is None:
                    return response
                failure = found
            delay = None if attempt > retries else min(
                backoff.next_delay() if failure.wait is None else failure.wait, max_wait)
            if delay is None:
                raise self._given_up(failure, label, attempt) from None
            if failure.hint is not None:
                log.warning("%s: %s; retrying in %s — %s", label, failure.what,
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
