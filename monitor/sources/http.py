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
from monitor.sources.transport import (
    DECODE,
    DECODED,
    LABEL,
    RATE_LIMITED,
    RETRIES,
    BadBody,
    PoliteTransport,
    RateLimitCheck,
)

__all__ = ["BytesResponse", "HttpClient", "JsonResponse", "decode_feed", "decode_json",
           "decode_text"]

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


def decode_text(response: httpx.Response) -> str:
    """The text of a (read) 2xx HTML/text answer; :class:`BadBody` for JSON or binary."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith("text/") and not ctype.endswith(("+xml", "/xml")):
        raise BadBody(f"HTTP {response.status_code} but expected a text page, got {ctype!r}")
    return response.text


def _any_body(response: httpx.Response) -> bytes:
    """Any 2xx answer is a success (a webhook receiver's 204, "ok" or JSON)."""
    return response.content


@dataclass(frozen=True, slots=True)
class BytesResponse:
    """A raw answer (a feed): ``status`` 200, or 304 with no body for a conditional GET."""

    status: int
    content: bytes
    headers: httpx.Headers
    url: str


def decode_feed(response: httpx.Response) -> bytes:
    """The body of a (read) 2xx feed; :class:`BadBody` for an HTML page or JSON.

    Feeds come as ``application/rss+xml``, ``application/atom+xml``, ``*/xml``
    or ``text/*`` (some servers say ``text/plain``); an HTML page with a 200 is
    a proxy's error page or a login wall, retried like a 5xx.
    """
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/json"):
        raise BadBody(f"HTTP {response.status_code} but expected a feed, got {ctype!r}")
    return response.content


class HttpClient:
    """One shared ``httpx.AsyncClient`` on the polite transport (see module doc).

    Use as ``async with HttpClient(config.http) as http: ...`` or call
    :meth:`aclose`. ``transport`` replaces the socket-level transport under
    the polite one (tests with an in-process server); production passes
    nothing, which sends requests through ``HTTPS_PROXY``/``HTTP_PROXY``/
    ``ALL_PROXY`` unless ``NO_PROXY`` exempts the host (see
    :class:`~monitor.sources.transport.EnvironmentProxies`).
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
        form: Mapping[str, str] | None = None,
        stream: str = "",
        max_retries: int | None = None,
        rate_limited: RateLimitCheck | None = None,
    ) -> JsonResponse:
        """Send a request and decode the JSON answer, retrying what is worth retrying.

        Raises :class:`HttpStatusError` for a non-retryable 4xx (at once) and
        :class:`~monitor.errors.SourceError` / :class:`~monitor.errors.RateLimited`
        once retries are used up. *stream* only labels log lines. *rate_limited*
        tells a platform's rate-limit answer that is not a 429 (it is then
        waited for and retried like one).
        """
        label = _label(url, stream)
        extensions: dict[str, Any] = {LABEL: label, DECODE: decode_json}
        if max_retries is not None:
            extensions[RETRIES] = max_retries
        if rate_limited is not None:
            extensions[RATE_LIMITED] = rate_limited
        # form: an x-www-form-urlencoded body (OAuth token requests)
        response = await self._client.request(method, url, params=params, headers=headers,
                                              json=json_body, data=form, extensions=extensions)
        self._raise_for_status(response, label, host_of(url))
        return JsonResponse(data=response.extensions[DECODED], headers=response.headers,
                            size=len(response.content), url=str(response.url))

    async def request_text(
        self,
        method: str,
        url: str,
        *,
        params: Params = None,
        headers: Mapping[str, str] | None = None,
        stream: str = "",
    ) -> JsonResponse:
        """Like :meth:`request_json` for an HTML or text page: ``data`` is the decoded text
        (charset from the headers or the page), ``url`` where redirects ended."""
        label = _label(url, stream)
        response = await self._client.request(method, url, params=params, headers=headers,
                                              extensions={LABEL: label, DECODE: decode_text})
        self._raise_for_status(response, label, host_of(url))
        return JsonResponse(data=response.extensions[DECODED], headers=response.headers,
                            size=len(response.content), url=str(response.url))

    async def post_content(
        self,
        url: str,
        content: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        stream: str = "",
        max_retries: int | None = None,
    ) -> int:
        """POST *content* exactly as given (a signed webhook: the signature covers these
        bytes); returns the 2xx status, the answer's body is not read as data."""
        label = _label(url, stream)
        extensions: dict[str, Any] = {LABEL: label, DECODE: _any_body}
        if max_retries is not None:
            extensions[RETRIES] = max_retries
        response = await self._client.request("POST", url, content=content, headers=headers,
                                              extensions=extensions)
        self._raise_for_status(response, label, host_of(url))
        return response.status_code

    async def request_bytes(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        stream: str = "",
    ) -> BytesResponse:
        """GET a feed: the raw body (the parser reads its encoding), or a bodiless 304.

        For conditional GET pass ``If-None-Match`` / ``If-Modified-Since`` in
        *headers*; a 304 comes back as ``status=304`` rather than an error.
        """
        label = _label(url, stream)
        response = await self._client.request(
            "GET", url, headers=headers, extensions={LABEL: label, DECODE: decode_feed})
        if response.status_code == 304:
            return BytesResponse(304, b"", response.headers, str(response.url))
        self._raise_for_status(response, label, host_of(url))
        return BytesResponse(response.status_code, response.extensions[DECODED],
                             response.headers, str(response.url))

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
