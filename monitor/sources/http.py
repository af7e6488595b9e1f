"""The shared HTTP client: one ``httpx.AsyncClient`` per service with the project's manners.

:class:`HttpClient` owns the client, the User-Agent naming the project and the
operator's contact, and the :class:`~monitor.sources.ratelimit.HostBudgets`.
Every request it sends, JSON or stream, passes the
:class:`~monitor.sources.transport.PoliteTransport`, which does the waiting and
retrying; this module only says what a request is for (its log label and, for
JSON, the decoder) and turns the final answer into data or an error.

Log lines name host, stream, status and what happens next; never post text.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from monitor import __version__
from monitor.errors import SourceError
from monitor.sources.errors import HttpStatusError, error_name
from monitor.sources.ratelimit import HostBudgets, host_of
from monitor.sources.settings import HttpSettings
from monitor.sources.transport import DECODE, DECODED, LABEL, RETRIES, BadBody, PoliteTransport

__all__ = ["HttpClient", "JsonResponse", "decode_json"]

Params = Mapping[str, Any] | list[tuple[str, Any]] | None


@dataclass(frozen=True, slots=True)
class JsonResponse:
    """A decoded JSON answer with its headers and size in bytes."""

    data: Any
    headers: httpx.Headers
    size: int
    url: str


def decode_json(response: httpx.Response) -> Any:
    """The JSON of a (read) 2xx answer; :class:`BadBody` when it is not JSON or cut short.

    A proxy's HTML error page with a 200 and a truncated body are passing
    faults, so the transport retries them like a 5xx.
    """
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise BadBody(f"HTTP {response.status_code} but expected JSON, got {ctype!r}")
    body = response.content
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "bad UTF-8"
        raise BadBody(f"truncated or invalid JSON ({len(body)} bytes, {reason})") from None


class HttpClient:
    """One shared ``httpx.AsyncClient`` on the polite transport (see module doc).

    Use as ``async with HttpClient(config.http) as http: ...`` or call
    :meth:`aclose`. ``transport`` replaces the socket-level transport under
    the polite one (tests with an in-process server); production passes
    nothing. Because the client is given an explicit transport, httpx does
    not read proxy settings from the environment.
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
        self.budgets = HostBudgets(settings, rng=rng)
        self._transport = PoliteTransport(self.budgets, transport)
        timeout = settings.timeout.total_seconds()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            follow_redirects=True,
            transport=self._transport,
        )
        httpx_log = logging.getLogger("httpx")
        if httpx_log.level == logging.NOTSET:
            # httpx logs every request at INFO; our own lines already say what matters
            httpx_log.setLevel(logging.WARNING)

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    @property
    def requests(self) -> int:
        """Attempts sent so far (retries included), for tests and benchmarks."""
        return self._transport.requests

    async def get_json(
        self,
        url: str,
        params: Params = None,
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
        params: Params = None,
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
        label = _label(url, stream)
        extensions: dict[str, Any] = {LABEL: label, DECODE: decode_json}
        if max_retries is not None:
            extensions[RETRIES] = max_retries
        response = await self._client.request(method, url, params=params, headers=headers,
                                              json=json_body, extensions=extensions)
        self._raise_for_status(response, label, host_of(url))
        return JsonResponse(data=response.extensions[DECODED], headers=response.headers,
                            size=len(response.content), url=str(response.url))

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        params: Params = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        label: str = "",
    ) -> AsyncIterator[httpx.Response]:
        """A streaming request (SSE) through the same transport; the body is the caller's.

        The answer is yielded whatever its status (a refusal often names its
        reason in the body); 429s, 5xx and connection failures were already
        retried like any request, and their final failure is raised.
        """
        async with self._client.stream(
            method, url, params=params, headers=headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            extensions={LABEL: _label(url, label)},
        ) as response:
            yield response

    @staticmethod
    def _raise_for_status(response: httpx.Response, label: str, host: str) -> None:
        """Classify what the transport handed back: a 4xx is the caller's to handle."""
        status = response.status_code
        if 400 <= status < 500:
            code = error_name(response.content)
            detail = f" ({code})" if code else ""
            raise HttpStatusError(f"{label}: HTTP {status}{detail}", status=status,
                                  host=host, error=code, retryable=False)
        if DECODED not in response.extensions:
            # e.g. a redirect without a Location: nothing a retry would change
            raise SourceError(f"{label}: unexpected HTTP {status}", retryable=False,
                              status=status)


def _label(url: str, stream: str) -> str:
    """What log lines call a request: ``host #tag`` (or what the caller named it)."""
    host = host_of(url)
    return f"{host} {stream}".rstrip() if stream and host not in stream else (stream or host)
