"""Mastodon live mode (``streaming: true``): the hashtag stream over SSE.

``GET /api/v1/streaming/hashtag?tag=`` on the instance's streaming host
(``configuration.urls.streaming`` of ``/api/v2/instance``). Live batches carry
no cursor: polling (:mod:`monitor.sources.mastodon`) keeps running beside it
and stays the source of completeness (a reconnect gap is filled by the next
``min_id`` poll), so live mode only brings posts in within seconds.

The stream is an ordinary request of the shared client: its connect takes a
slot of the host's budget and has 429s, 5xx and connection failures retried
by the transport like any poll; the slot is given back once the stream is
open, so a stream that runs for hours does not hold back the host's polls.

Besides ``update`` (a new status) the stream carries:

* ``status.update``: an edited status, the whole new Status. It is passed on
  as ``Batch.edited``; the service re-enriches it and replaces the stored post
  (text, language, sentiment, tags, sensitivity) and corrects the buckets
  (:mod:`monitor.store.edits`). An edit of a status not stored is stored as new.
* ``delete``: the payload is only the status's *instance-local id*, while posts
  are keyed by ``uri``. The id is turned back into the uri through the polled
  collector's map of recently seen statuses (:meth:`MastodonCollector.remember`:
  every status a poll or this stream parsed, per instance, the last 50,000),
  and passed on as a deletion of that uri. Chosen over asking the instance
  (a deleted status answers 404, so the uri cannot be fetched any more) and
  over guessing the uri from the id (only a status *posted on* that instance
  has its local id in its uri). Limits: the map lives in memory, so a delete
  of a status seen only before the last restart, or pushed out by 50,000
  newer ones on a busy instance, is not resolved (counted in
  ``unresolved_deletes``, logged at debug); the privacy re-check job
  (``privacy.recheck``) still finds those posts gone by asking their origin.
  A status seen on two instances is deleted by whichever stream reports it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx

from monitor.errors import SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.errors import describe_transport_error, format_wait
from monitor.sources.http import HttpClient
from monitor.sources.mastodon import (
    PLATFORM,
    SOURCE,
    MastodonCollector,
    StatusRejected,
    label_of,
    parse_status,
)
from monitor.sources.protocols import Sink
from monitor.sources.settings import MastodonSource, SourceContext

__all__ = ["MastodonLiveCollector"]

log = logging.getLogger("monitor.sources.mastodon")


class _Refused(Exception):
    def __init__(self, status: int, error: str | None) -> None:
        self.status = status
        self.error = error
        super().__init__(f"HTTP {status} {error or ''}".strip())


class MastodonLiveCollector:
    """One SSE consumer per (instance, tag); see the module docstring.

    When an instance refuses the stream (400/401/403/404; hashtag streams need
    a user token since 4.2) the stream logs one line, is left to polling, and
    is re-tried hourly. ``delete`` events are passed on as deletions of the
    status ``uri``.
    """

    source = SOURCE
    platform = PLATFORM
    refused_retry = 3600.0  # seconds before asking a refusing instance again
    read_timeout = 90.0  # Mastodon sends a heartbeat about every 10 s

    def __init__(self, cfg: MastodonSource, config: SourceContext, http: HttpClient, *,
                 polled: MastodonCollector | None = None) -> None:
        self.cfg = cfg
        self.http = http
        # the polled companion: its id → uri map of recently seen statuses resolves deletes
        self.polled = polled or MastodonCollector(cfg, config, http)
        self._stream_base: dict[str, str] = {}
        self.unresolved_deletes = 0  # delete events for statuses not seen by this process
        self.connected: set[str] = set()  # stream names currently live (for tests/health)

    def streams(self) -> list[StreamKey]:
        return self.polled.streams()

    async def run(self, cursor: Cursor | None, sink: Sink) -> None:
        """One SSE consumer per (instance, tag) until cancelled; *cursor* is not used."""
        async with asyncio.TaskGroup() as group:
            for stream in self.streams():
                group.create_task(self._follow(stream, sink), name=f"live {stream.name}")

    async def _follow(self, stream: StreamKey, sink: Sink) -> None:
        label = label_of(stream)
        backoff = self.http.budgets.backoff()
        while True:
            started = time.monotonic()
            try:
                await self._consume(stream, sink)
                what, hint = "the server closed the live stream", "polling continues meanwhile"
            except _Refused as exc:
                self.connected.discard(stream.name)
                log.warning("%s: live stream refused (%s); polling every %s instead, asking "
                            "again in %s%s", label, exc, format_wait(
                                self.cfg.interval.total_seconds()),
                            format_wait(self.refused_retry),
                            "" if self.cfg.access_token else
                            " (hashtag streams need a user access_token since Mastodon 4.2)")
                await asyncio.sleep(self.refused_retry)
                continue
            except (httpx.TransportError, SourceError) as exc:
                # a TransportError here broke an open stream; a failed connect was
                # already retried by the transport and arrives as a SourceError
                what, hint = (describe_transport_error(exc)
                              if isinstance(exc, httpx.TransportError)
                              else (str(exc), "polling continues meanwhile"))
            self.connected.discard(stream.name)
            if time.monotonic() - started > 60:
                backoff.reset()
            delay = backoff.next_delay()
            # offline, the one "looks offline" line stands for every reconnect
            log.log(logging.DEBUG if self.http.budgets.offline.offline else logging.WARNING,
                    "%s: live stream: %s; reconnecting in %s — %s", label, what,
                    format_wait(delay), hint)
            await asyncio.sleep(delay)

    async def _streaming_base(self, stream: StreamKey) -> str:
        known = self._stream_base.get(stream.endpoint)
        if known is not None:
            return known
        base = self.polled.base_url(stream.endpoint)
        found = base
        try:
            info, _ = await self.http.get_json(f"{base}/api/v2/instance", stream="instance",
                                               headers=self._auth())
            urls = info.get("configuration", {}).get("urls", {}) if isinstance(info, dict) \
                else {}
            streaming = urls.get("streaming") if isinstance(urls, dict) else None
            if isinstance(streaming, str) and "://" in streaming:
                scheme, rest = streaming.split("://", 1)
                found = ("https" if scheme in ("wss", "https") else "http") + "://" + \
                    rest.rstrip("/")
        except SourceError:
            pass  # older servers: the streaming API lives on the same host
        self._stream_base[stream.endpoint] = found
        return found

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cfg.access_token}"} if self.cfg.access_token \
            else {}

    async def _consume(self, stream: StreamKey, sink: Sink) -> None:
        base = await self._streaming_base(stream)
        headers = {**self._auth(), "Accept": "text/event-stream"}
        timeout = httpx.Timeout(self.http.settings.timeout.total_seconds(),
                                read=self.read_timeout)
        async with self.http.stream(
            "GET", f"{base}/api/v1/streaming/hashtag", params={"tag": stream.tag},
            headers=headers, timeout=timeout, label=f"#{stream.tag} live",
        ) as response:
            if response.status_code in (400, 401, 403, 404, 422):
                body = await response.aread()
                error = None
                try:
                    data = json.loads(body)
                    error = data.get("error") if isinstance(data, dict) else None
                except ValueError:
                    pass
                raise _Refused(response.status_code, error if isinstance(error, str) else None)
            if response.status_code != 200:
                raise SourceError(f"HTTP {response.status_code}", status=response.status_code)
            self.connected.add(stream.name)
            log.info("%s: live stream connected", label_of(stream))
            event, data_lines = "message", list[str]()
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    continue  # heartbeat
                if line == "":
                    if data_lines:
                        await self._dispatch(stream, event, "\n".join(data_lines), sink)
                    event, data_lines = "message", []
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "data":
                    data_lines.append(value)

    async def _dispatch(self, stream: StreamKey, event: str, data: str, sink: Sink) -> None:
        if event in ("update", "status.update"):
            post = await self._status(stream, data, sink)
            if post is None:
                return
            if event == "update":
                await sink(Batch(stream=stream, posts=(post,)))
            else:
                # an edit: the stored post is replaced and its buckets corrected
                await sink(Batch(stream=stream, edited=(post,)))
        elif event == "delete":
            sid = data.strip()
            uri = self.polled.uri_of(stream.endpoint, sid)
            if uri is not None:
                await sink(Batch(stream=stream, deleted=(uri,)))
            else:
                # not seen since this process started (or forgotten): the key is unknown
                self.unresolved_deletes += 1
                log.debug("mastodon: %s: delete of status %s, not seen since start; ignored",
                          label_of(stream), sid or "(no id)")

    async def _status(self, stream: StreamKey, data: str, sink: Sink) -> Post | None:
        """The Status of an ``update`` / ``status.update`` event, or None (skipped, counted)."""
        try:
            status = json.loads(data)
        except ValueError:
            log.warning("mastodon: live update on %s is not valid JSON; skipped",
                        label_of(stream))
            await sink(Batch(stream=stream, rejected=1))
            return None
        sid = status.get("id") if isinstance(status, dict) else None
        try:
            if not isinstance(sid, str) or not sid:
                raise StatusRejected("id", "missing or not a string")
            post = parse_status(status, stream.endpoint, len(data))
        except StatusRejected as exc:
            log.warning("mastodon: skipped status %s on %s: field %s %s",
                        sid or "(no id)", label_of(stream), exc.field, exc.problem)
            await sink(Batch(stream=stream, rejected=1))
            return None
        self.polled.remember(stream.endpoint, sid, post.key)
        return post
