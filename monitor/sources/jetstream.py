"""Bluesky through Jetstream: the JSON firehose, filtered here for the followed tags.

Jetstream (v1 ``/subscribe``) sends every event of the network for the
collections asked for: about every new post on Bluesky. Which of them are
ours is decided in :mod:`monitor.sources.jetstream_events`; this module keeps
the connection, the batches and the cursor.

Cursor: the ``time_us`` of the last event seen (unix microseconds), saved with
each batch. A restart or a reconnect asks for ``cursor - rewind`` so nothing
falls between two connections; the replayed posts are dropped by the unique
``at://`` key in the store. A cursor is valid on every Jetstream instance, so a
failing host is simply replaced by the next one in ``hosts``.

Each (re)connect takes a slot of the host's budget from the shared
:class:`~monitor.sources.ratelimit.HostBudgets` (the same one the HTTP
transport uses) for the handshake only, a handshake refused with 429 blocks
the host there, and the wait between reconnects is the shared backoff.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from monitor import __version__
from monitor.errors import RateLimited, SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.errors import describe_transport_error, format_wait
from monitor.sources.jetstream_events import (
    PLATFORM,
    POST_COLLECTION,
    EventFilter,
    EventRejected,
    parse_event,
    parse_with,
)
from monitor.sources.protocols import Sink
from monitor.sources.ratelimit import HostBudgets, host_of
from monitor.sources.settings import JetstreamSource, SourceContext

__all__ = ["POST_COLLECTION", "JetstreamCollector", "parse_event"]

log = logging.getLogger("monitor.sources.jetstream")

_TIME_US = re.compile(rb'"time_us"\s*:\s*(\d+)')
# a session that delivered events and then dropped is not a failing host
_HEALTHY_SESSION_EVENTS = 1
_LOOKBACK_WARN = 30 * 3600  # seconds; Jetstream replays about 36 h
_HEARTBEAT = 30.0  # seconds between health updates on a quiet connection


class _SinkFailed(Exception):
    """The sink (the store) raised; kept apart from connection errors, cause attached."""


class JetstreamCollector:
    """A :class:`~monitor.sources.protocols.StreamingSource` over Jetstream v1.

    One stream, ``jetstream`` / ``<first host>#*``: its cursor is the
    ``time_us`` of the last event seen. Posts and deletes are handed to the
    sink in batches of ``batch_size`` or every ``batch_interval``, whichever
    comes first; a batch may be empty and only move the cursor.
    """

    source = "jetstream"
    platform = PLATFORM

    def __init__(self, source_cfg: JetstreamSource, config: SourceContext, budgets: HostBudgets
                 ) -> None:
        self.cfg = source_cfg
        self.config = config
        self._budgets = budgets
        self.tags = config.followed(source_cfg.tags)
        self._filter = EventFilter(self.tags)
        self._stream = StreamKey(self.source, host_of(source_cfg.hosts[0]), "*")
        self._host_index = 0
        self._rewind_us = int(source_cfg.rewind.total_seconds() * 1_000_000)
        self._user_agent = f"hashtag-monitor/{__version__} (+{config.http.contact})"
        # state of the current run()
        self._posts: list[Post] = []
        self._deleted: list[str] = []
        self._rejected = 0
        self._pending = 0  # posts + deletes waiting for the next flush
        self._last_raw: bytes | None = None
        self._cursor_us: int | None = None
        self._flushed_us: int | None = None
        self._flush_lock = asyncio.Lock()
        self._connected = False
        self._last_flush = time.monotonic()
        self.heartbeat = _HEARTBEAT  # seconds between empty batches on a quiet connection
        self.events_seen = 0  # every event received, for health lines and benchmarks

    def streams(self) -> list[StreamKey]:
        return [self._stream]

    # ------------------------------------------------------------------ running

    async def run(self, cursor: Cursor | None, sink: Sink) -> None:
        """Consume until cancelled. Reconnects itself, rotating hosts with backoff;
        raises :class:`SourceError` once every host failed in a row (and whatever
        the sink raised), so the supervisor records it in the stream's health
        and restarts from the saved cursor."""
        self._posts, self._deleted, self._rejected, self._pending = [], [], 0, 0
        self._last_raw = None
        self._cursor_us = self._flushed_us = _cursor_value(cursor)
        self._last_flush = time.monotonic()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._tick(sink), name="jetstream-flush")
                group.create_task(self._connect_loop(sink), name="jetstream-read")
        except BaseExceptionGroup as group_error:
            first = group_error.exceptions[0]
            if isinstance(first, _SinkFailed) and first.__cause__ is not None:
                raise first.__cause__ from None
            raise first from None
        finally:
            # finish the batch in hand; if the sink itself failed, the saved
            # cursor makes the next run replay these events
            try:
                await asyncio.shield(self._flush(sink))
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc, _SinkFailed) else exc
                log.warning("jetstream: could not store the last batch (%s); it will be "
                            "replayed from the saved cursor", cause)

    async def _connect_loop(self, sink: Sink) -> None:
        backoff = self._budgets.backoff()
        failures = 0
        while True:
            url = self.cfg.hosts[self._host_index]
            seen_before = self.events_seen
            what, hint = await self._session(url, sink)
            delivered = self.events_seen - seen_before
            self._host_index = (self._host_index + 1) % len(self.cfg.hosts)
            nxt = host_of(self.cfg.hosts[self._host_index])
            if delivered >= _HEALTHY_SESSION_EVENTS:
                failures = 0
                backoff.reset()
            else:
                failures += 1
            tip = f" — {hint}" if hint else ""
            if failures >= len(self.cfg.hosts):
                every = f" (all {failures} hosts failed)" if failures > 1 else ""
                raise SourceError(f"jetstream {host_of(url)}: {what}{every}{tip}")
            delay = backoff.next_delay()
            log.warning("jetstream %s: %s; reconnecting to %s in %s%s", host_of(url), what,
                        nxt, format_wait(delay), tip)
            await asyncio.sleep(delay)

    def _subscribe_url(self, url: str) -> str:
        params: list[tuple[str, str]] = [("wantedCollections", POST_COLLECTION)]
        if self._cursor_us is not None:
            params.append(("cursor", str(max(0, self._cursor_us - self._rewind_us))))
        query = urlencode(params)
        return f"{url}{'&' if urlsplit(url).query else '?'}{query}"

    async def _session(self, url: str, sink: Sink) -> tuple[str, str]:
        """One connection, read until it ends; returns (why it ended, a hint or "")."""
        self._advance_cursor()
        target = self._subscribe_url(url)
        host = host_of(url)
        try:
            # the host's slot covers the handshake only: the session runs for hours
            async with self._budgets.opening(url, f"jetstream {host}"):
                ws = await connect(
                    target,
                    compression=None,  # JSON over loopback or TLS; deflate costs more CPU
                    user_agent_header=self._user_agent,
                    open_timeout=self.config.http.timeout.total_seconds(),
                    max_queue=256,
                    max_size=2**22,
                )
            async with ws:
                log.info("jetstream %s: connected%s", host,
                         f" (replaying from {_fmt_us(self._cursor_us - self._rewind_us)})"
                         if self._cursor_us is not None else " (live tail)")
                self._connected = True
                try:
                    await self._consume(ws, sink)
                finally:
                    self._connected = False
        except ConnectionClosed as exc:
            return f"connection dropped ({_close_reason(exc)})", ""
        except RateLimited as exc:
            return str(exc).removeprefix(f"jetstream {host}: "), ""
        except InvalidURI as exc:
            return f"invalid URL ({exc})", "check sources[].hosts in the config"
        except InvalidStatus as exc:
            answer = exc.response
            wait = self._budgets.refused(url, answer.status_code, answer.headers)
            if answer.status_code == 429:
                after = f"; next connect allowed in {format_wait(wait)}" if wait else ""
                return f"HTTP 429 (rate limited){after}", ""
            return f"websocket handshake refused ({exc})", "is this a Jetstream /subscribe URL?"
        except InvalidHandshake as exc:
            return f"websocket handshake refused ({exc})", "is this a Jetstream /subscribe URL?"
        except (OSError, TimeoutError) as exc:
            return describe_transport_error(exc)
        return "connection closed by the server", ""

    async def _consume(self, ws: ClientConnection,
                       sink: Sink) -> None:
        may_match = self._filter.may_match
        batch_size = self.cfg.batch_size
        recv = ws.recv
        while True:
            raw = await recv(decode=False)
            self.events_seen += 1
            self._last_raw = raw
            if may_match(raw):
                self._handle(raw)
                if self._pending >= batch_size:
                    await self._flush(sink)

    def _handle(self, raw: bytes) -> None:
        try:
            kind, value = parse_with(raw, self._filter)
        except EventRejected as exc:
            self._rejected += 1
            log.warning("bluesky post %s skipped: %s %s", exc.key, exc.field, exc.problem)
            return
        except ValueError as exc:
            self._rejected += 1
            log.warning("jetstream: malformed event skipped (%d bytes): %s", len(raw), exc)
            return
        if kind == "post":
            assert isinstance(value, Post)
            self._posts.append(value)
            self._pending += 1
        elif kind == "delete":
            assert isinstance(value, str)
            self._deleted.append(value)
            self._pending += 1

    async def _tick(self, sink: Sink) -> None:
        interval = max(self.cfg.batch_interval.total_seconds(), 0.01)
        heartbeat = max(self.heartbeat, interval)
        while True:
            await asyncio.sleep(interval)
            # a quiet but open connection is healthy: say so now and then, so the
            # stream's "last success" does not age while nothing matches
            beat = self._connected and time.monotonic() - self._last_flush >= heartbeat
            await self._flush(sink, force=beat)

    def _advance_cursor(self) -> None:
        raw = self._last_raw
        if raw is None:
            return
        self._last_raw = None
        match = _TIME_US.search(raw)
        if match is None:
            return
        value = int(match.group(1))
        # a garbled time must not become the cursor: a restart would replay from it
        if not _plausible_us(value):
            return
        if self._cursor_us is None or value > self._cursor_us:
            self._cursor_us = value

    async def _flush(self, sink: Sink, *,
                     force: bool = False) -> None:
        """Hand over what is pending, with the cursor of the last event seen.

        The lock keeps batches in order: a later cursor is never saved before
        an earlier one. Nothing new means no batch, unless *force*.
        """
        async with self._flush_lock:
            self._advance_cursor()
            cursor_us = self._cursor_us
            if (not force and not self._posts and not self._deleted and not self._rejected
                    and cursor_us == self._flushed_us):
                return
            self._last_flush = time.monotonic()
            posts, deleted, rejected = self._posts, self._deleted, self._rejected
            self._posts, self._deleted, self._rejected, self._pending = [], [], 0, 0
            cursor = None if cursor_us is None else Cursor(
                self.source, self._stream.name, str(cursor_us))
            try:
                await sink(Batch(stream=self._stream, posts=tuple(posts), cursor=cursor,
                                 deleted=tuple(deleted), rejected=rejected))
            except Exception as exc:
                raise _SinkFailed() from exc
            self._flushed_us = cursor_us


def _plausible_us(value: int) -> bool:
    """A unix time in microseconds between 2001 and a day from now."""
    return 1_000_000_000_000_000 <= value <= (time.time() + 86_400) * 1_000_000


def _cursor_value(cursor: Cursor | None) -> int | None:
    if cursor is None:
        return None
    try:
        value = int(cursor.value)
    except ValueError:
        value = 0
    if not _plausible_us(value):
        log.warning("jetstream: saved cursor %r is not a time in microseconds; "
                    "starting from the live tail", cursor.value[:40])
        return None
    age = time.time() - value / 1_000_000
    if age > _LOOKBACK_WARN:
        log.warning("jetstream: the saved cursor is %s old but Jetstream keeps only about 36h; "
                    "older posts are lost to the firehose (Bluesky search can backfill them)",
                    format_wait(age))
    return value


def _fmt_us(value: int) -> str:
    when = datetime.fromtimestamp(value / 1_000_000, tz=UTC)
    ago = max(0.0, time.time() - value / 1_000_000)
    return f"{when:%Y-%m-%dT%H:%M:%SZ}, {format_wait(ago)} ago"


def _close_reason(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "no close frame"
    return f"code {rcvd.code}{': ' + rcvd.reason if rcvd.reason else ''}"
