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

Frame limit: an atproto record is at most 1,000,000 bytes of CBOR (the sync
spec's hard limit), at most :data:`MAX_JSON_RECORD_BYTES` (2 MiB, indigo's
``MAX_JSON_RECORD_SIZE``) as JSON; with the event's envelope that is
:data:`FRAME_LIMIT`, which is also sent as ``maxMessageSizeBytes`` so the server
drops anything larger itself. A server that still sends a larger event must not
stall the stream (reconnecting at the same cursor forever): an event up to
:data:`READ_LIMIT` is read and skipped (its ``time_us`` logged once, counted as
rejected in ``monitor status``); a bigger one closes the connection (1009),
and the next connection starts just after the last event read, stepping on by a
few milliseconds if the same oversized event comes first again.

Start position: on the live tail, the first event's ``time_us`` is saved at
once (an empty batch), so a drop before the first full batch resumes there and
not at a later live tail.

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
MAX_JSON_RECORD_BYTES = 2 * 1024 * 1024  # atproto: 1,000,000 B of CBOR, at most 2 MiB as JSON
FRAME_LIMIT = MAX_JSON_RECORD_BYTES + 64 * 1024  # plus the event envelope (did, commit, ...)
READ_LIMIT = 8 * FRAME_LIMIT  # larger events are not even read: the connection is closed
_TOO_BIG = 1009  # websocket close code "message too big"
_SKIP_STEP_US = 1  # first step (µs, doubling) past an unreadable event of unknown time_us


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
        self.frame_limit = FRAME_LIMIT  # larger events are skipped (a setting for tests)
        self.read_limit = READ_LIMIT  # larger events close the connection (1009)
        self.skipped: list[int] = []  # time_us of the oversized events skipped (last 100)
        self._too_big_at: int | None = None  # cursor when a 1009 closed the last session
        self._skip_step = 0  # µs added to the cursor after repeated 1009s at one place

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
            # stepping past an unreadable event is progress, not a failing host
            if delivered >= _HEALTHY_SESSION_EVENTS or self._too_big_at is not None:
                failures = 0
                backoff.reset()
            else:
                failures += 1
            tip = f" — {hint}" if hint else ""
            if failures >= len(self.cfg.hosts):
                every = f" (all {failures} hosts failed)" if failures > 1 else ""
                raise SourceError(f"jetstream {host_of(url)}: {what}{every}{tip}")
            delay = backoff.next_delay()
            # stepping past an unreadable event was logged once, with its position
            # and offline, the one "looks offline" line stands for every reconnect
            quiet = self._budgets.offline.failed(host_of(url), what)
            level = logging.DEBUG if self._too_big_at is not None or quiet else logging.WARNING
            log.log(level, "jetstream %s: %s; reconnecting to %s in %s%s", host_of(url), what,
                    nxt, format_wait(delay), tip)
            await asyncio.sleep(delay)

    def _subscribe_url(self, url: str) -> str:
        params: list[tuple[str, str]] = [("wantedCollections", POST_COLLECTION),
                                         ("maxMessageSizeBytes", str(self.frame_limit))]
        if self._cursor_us is not None:
            if self._too_big_at is not None:
                # just past what was read: a rewind would replay into the same event
                start = self._cursor_us + 1 + self._skip_step
            else:
                start = max(0, self._cursor_us - self._rewind_us)
            params.append(("cursor", str(start)))
        query = urlencode(params)
        return f"{url}{'&' if urlsplit(url).query else '?'}{query}"

    async def _session(self, url: str, sink: Sink) -> tuple[str, str]:
        """One connection, read until it ends; returns (why it ended, a hint or "")."""
        self._advance_cursor()
        target = self._subscribe_url(url)
        host = host_of(url)
        seen_before = self.events_seen
        try:
            # the host's slot covers the handshake only: the session runs for hours
            async with self._budgets.opening(url, f"jetstream {host}"):
                ws = await connect(
                    target,
                    compression=None,  # JSON over loopback or TLS; deflate costs more CPU
                    user_agent_header=self._user_agent,
                    open_timeout=self.config.http.timeout.total_seconds(),
                    max_queue=256,
                    max_size=self.read_limit,
                )
            self._budgets.offline.answered(host)
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
            if exc.sent is not None and exc.sent.code == _TOO_BIG:
                return self._too_big(self.events_seen - seen_before), ""
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

    def _too_big(self, delivered: int) -> str:
        """A 1009 close: an event over READ_LIMIT came next. Plan to start past it."""
        self._advance_cursor()
        at = self._cursor_us
        if at is None:
            return f"an event over {_mib(self.read_limit)} closed the connection (1009)"
        if self._too_big_at == at and delivered == 0:
            # the same place again: its time_us is unknown, so step past it in time
            self._skip_step = min(max(self._skip_step * 2, _SKIP_STEP_US), 1_000_000)
            return (f"the event after {_fmt_us(at)} is still over {_mib(self.read_limit)}; "
                    f"resuming {self._skip_step / 1000:g} ms later (events in between may "
                    "be lost)")
        self._too_big_at, self._skip_step = at, 0
        self._rejected += 1
        log.warning("jetstream: the event after time_us=%d (%s) is larger than %s and cannot "
                    "be read; skipped, resuming just after it", at, _fmt_us(at),
                    _mib(self.read_limit))
        return f"skipping an event over {_mib(self.read_limit)} (1009)"

    def _oversized(self, raw: bytes) -> None:
        """An event over FRAME_LIMIT (larger than any valid record): skip it, once."""
        head = raw[:512]
        self._last_raw = head  # the cursor moves past it
        match = _TIME_US.search(head)
        at = int(match.group(1)) if match else None
        if at is not None and at in self.skipped:
            return  # replayed after a reconnect: logged and counted already
        self._rejected += 1
        if at is not None:
            self.skipped = [*self.skipped[-99:], at]
        log.warning("jetstream: event at time_us=%s (%s) is %s, over the %s an atproto record "
                    "can take; skipped", at, _fmt_us(at) if at else "unknown time",
                    _mib(len(raw)), _mib(self.frame_limit))

    async def _consume(self, ws: ClientConnection,
                       sink: Sink) -> None:
        may_match = self._filter.may_match
        batch_size = self.cfg.batch_size
        frame_limit = self.frame_limit
        recv = ws.recv
        while True:
            raw = await recv(decode=False)
            self.events_seen += 1
            if self._too_big_at is not None:
                self._too_big_at, self._skip_step = None, 0  # past it: rewind again
            if len(raw) > frame_limit:
                self._oversized(raw)
                continue
            if self._flushed_us is None:
                await self._save_start(sink, raw)
            self._last_raw = raw
            if may_match(raw):
                self._handle(raw)
                if self._pending >= batch_size:
                    await self._flush(sink)

    async def _save_start(self, sink: Sink, raw: bytes) -> None:
        """On a live-tail start, save the first event's time at once (a cursor-only batch):
        a drop before the first full batch then resumes here, not at a later live tail."""
        match = _TIME_US.search(raw[:512])
        value = int(match.group(1)) if match else 0
        if not _plausible_us(value):
            return
        async with self._flush_lock:
            if self._flushed_us is not None:
                return
            try:
                await sink(Batch(stream=self._stream,
                                 cursor=Cursor(self.source, self._stream.name, str(value))))
            except Exception as exc:
                raise _SinkFailed() from exc
            self._flushed_us = value
            if self._cursor_us is None or value > self._cursor_us:
                self._cursor_us = value

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


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


def _close_reason(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "no close frame"
    return f"code {rcvd.code}{': ' + rcvd.reason if rcvd.reason else ''}"
