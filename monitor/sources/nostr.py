"""Nostr: NIP-01 subscriptions for the followed tags on several relays.

One configured ``nostr`` source gives one streaming collector per relay, each
its own stream (``nostr`` / ``<relay host>#*``) with its own cursor and health,
so a relay that drops or misbehaves is retried with backoff while the others
go on. To each relay we send one subscription::

    ["REQ", "<subid>", {"kinds": [1], "#t": [tags…], "since": S, "limit": N},
                       {"kinds": [5], "since": S}]

The ``#t`` values are every followed tag in lowercase (NIP-24 says ``t`` MUST be
lowercase) plus its upper-case and capitalised forms, because some clients
emit mixed case and relays compare exactly. The second filter brings NIP-09
deletions (``deletions: false`` leaves it out); a deletion only removes a post
of the same author (see :mod:`monitor.sources.nostr_events`).

Every kept event is verified (id and BIP-340 signature), and events are
deduplicated by id across the relays of the source. ``EOSE`` marks the end of
the stored events (logged once per connection), ``CLOSED`` ends the session
(``rate-limited:`` blocks the relay's host for a backoff step), ``NOTICE`` is
logged (relay text, never post text).

Cursor: the newest ``created_at`` among the verified events of that relay
(never one ahead of our clock). A (re)connect asks for ``since = cursor -
overlap``; a first run asks for ``since = now - backfill``. Replays are dropped
by the unique key in the store.

Each (re)connect takes a slot of the host's budget from the shared
:class:`~monitor.sources.ratelimit.HostBudgets`, a handshake refused with 429
blocks the host, and the wait between reconnects is the shared backoff.

Not confirmed against real relays: whether relays send a ``CLOSED`` before
closing for rate limits (NIP-01 allows both), and how many ``#t`` values or
filters a relay accepts per REQ (NIP-11 ``limitation``, unread here). Events
with a ``created_at`` older than the cursor but published late (backdated) are
missed after a restart, as with any ``since`` subscription. NIP-42 AUTH is not
supported: a relay that answers ``auth-required:`` is reported as failing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import Field
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from monitor import __version__
from monitor.durations import Duration
from monitor.errors import RateLimited, SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.errors import describe_transport_error, format_wait
from monitor.sources.nostr_events import (
    PLATFORM,
    EventRejected,
    NostrFilter,
    SeenIds,
    parse_event,
    plausible_time,
    raw_created,
    raw_id,
)
from monitor.sources.protocols import Sink
from monitor.sources.ratelimit import HostBudgets, host_of
from monitor.sources.settings import SourceContext, SourceSettings

__all__ = ["NostrCollector", "NostrSource", "nostr_collectors"]

log = logging.getLogger("monitor.sources.nostr")

SOURCE = "nostr"
_FAILURES_BEFORE_REPORT = 3  # sessions in a row that brought nothing, then raise
_HEARTBEAT = 30.0
_EOSE = ("", "")  # _control's answer for "stored events done"


class NostrSource(SourceSettings):
    """Kind-1 notes with a followed ``t`` tag from one or more Nostr relays."""

    type: Literal["nostr"]
    relays: list[str] = Field(min_length=1)
    tags: list[str] | None = None
    backfill: Duration = timedelta(hours=24)  # first run: notes this far back
    overlap: Duration = timedelta(minutes=2)  # a reconnect re-asks this much before the cursor
    limit: int = Field(default=500, ge=1, le=5000)  # stored events per REQ (relay's first answer)
    deletions: bool = True  # also subscribe to NIP-09 deletions (kind 5)
    batch_size: int = Field(default=200, ge=1)
    batch_interval: Duration = timedelta(seconds=2)


def nostr_collectors(cfg: NostrSource, config: SourceContext, budgets: HostBudgets
                     ) -> list[NostrCollector]:
    """One collector per relay, sharing the ids already seen."""
    seen = SeenIds()
    return [NostrCollector(cfg, config, budgets, relay, seen) for relay in cfg.relays]


def tag_variants(tags: list[str]) -> list[str]:
    """Each tag as NIP-24 wants it (lowercase) and as sloppy clients write it."""
    out: dict[str, None] = {}
    for tag in tags:
        for form in (tag, tag.upper(), tag.capitalize()):
            out[form] = None
    return list(out)


class _SinkFailed(Exception):
    """The sink (the store) raised; kept apart from connection errors, cause attached."""


class NostrCollector:
    """A :class:`~monitor.sources.protocols.StreamingSource` on one relay (see module doc)."""

    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: NostrSource, config: SourceContext, budgets: HostBudgets,
                 relay: str, seen: SeenIds | None = None) -> None:
        self.cfg = cfg
        self.config = config
        self.relay = relay
        self._budgets = budgets
        self.seen = seen if seen is not None else SeenIds()
        self.tags = config.followed(cfg.tags)
        self._filter = NostrFilter(self.tags)
        endpoint = host_of(relay) + relay.split(host_of(relay), 1)[-1].rstrip("/")
        self._stream = StreamKey(SOURCE, endpoint, "*")
        self._label = f"nostr {endpoint}"
        self._user_agent = f"hashtag-monitor/{__version__} (+{config.http.contact})"
        self._posts: list[Post] = []
        self._deleted: list[str] = []
        self._rejected = 0
        self._cursor: int | None = None
        self._flushed: int | None = None
        self._lock = asyncio.Lock()
        self._connected = False
        self._live = False  # EOSE seen on this connection
        self._held: int | None = None  # newest created_at among stored events before EOSE
        self._stored = 0
        self._oldest = 2**62
        self._last_flush = time.monotonic()
        self.heartbeat = _HEARTBEAT
        self.events_seen = 0  # every EVENT frame received
        self.duplicates = 0  # EVENT frames dropped because another relay (or this) sent them
        self.eose = 0

    def streams(self) -> list[StreamKey]:
        return [self._stream]

    # ------------------------------------------------------------------ running

    async def run(self, cursor: Cursor | None, sink: Sink) -> None:
        """Consume until cancelled; reconnect with backoff; raise :class:`SourceError`
        after a few sessions in a row that brought nothing (the supervisor records it
        and restarts from the saved cursor)."""
        self._posts, self._deleted, self._rejected = [], [], 0
        self._cursor = self._flushed = _cursor_value(cursor, self._label)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._tick(sink), name="nostr-flush")
                group.create_task(self._connect_loop(sink), name="nostr-read")
        except BaseExceptionGroup as group_error:
            first = group_error.exceptions[0]
            if isinstance(first, _SinkFailed) and first.__cause__ is not None:
                raise first.__cause__ from None
            raise first from None
        finally:
            try:
                await asyncio.shield(self._flush(sink))
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc, _SinkFailed) else exc
                log.warning("%s: could not store the last batch (%s); it will be replayed "
                            "from the saved cursor", self._label, cause)

    async def _connect_loop(self, sink: Sink) -> None:
        backoff = self._budgets.backoff()
        failures = 0
        while True:
            before = (self.events_seen, self.eose)
            what, hint = await self._session(sink)
            if (self.events_seen, self.eose) != before:
                failures = 0
                backoff.reset()
            else:
                failures += 1
            tip = f" — {hint}" if hint else ""
            if failures >= _FAILURES_BEFORE_REPORT:
                raise SourceError(f"{self._label}: {what} ({failures} attempts in a row){tip}")
            delay = backoff.next_delay()
            # offline, the one "looks offline" line stands for every reconnect
            quiet = self._budgets.offline.failed(host_of(self.relay), what)
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "%s: %s; reconnecting in %s%s", self._label, what, format_wait(delay), tip)
            await asyncio.sleep(delay)

    def request(self, subid: str) -> str:
        """The REQ frame for this relay's next session."""
        if self._cursor is None:
            since = int(time.time() - self.cfg.backfill.total_seconds())
        else:
            since = max(0, self._cursor - int(self.cfg.overlap.total_seconds()))
        filters: list[dict[str, object]] = [
            {"kinds": [1], "#t": tag_variants(self.tags), "since": since,
             "limit": self.cfg.limit}]
        if self.cfg.deletions:
            filters.append({"kinds": [5], "since": since})
        return json.dumps(["REQ", subid, *filters], separators=(",", ":"))

    async def _session(self, sink: Sink) -> tuple[str, str]:
        """One connection, read until it ends; returns (why it ended, a hint or "")."""
        url = self.relay
        try:
            async with self._budgets.opening(url, self._label):
                ws = await connect(url, compression=None, user_agent_header=self._user_agent,
                                   open_timeout=self.config.http.timeout.total_seconds(),
                                   max_queue=256, max_size=2**22)
            self._budgets.offline.answered(host_of(url))
            async with ws:
                self._live, self._held, self._stored, self._oldest = False, None, 0, 2**62
                subid = "hm-" + secrets.token_hex(4)
                await ws.send(self.request(subid))
                overlap = format_wait(self.cfg.overlap.total_seconds())
                log.info("%s: subscribed (%s)", self._label, "first run, backfilling"
                         if self._cursor is None else f"since {_fmt(self._cursor)} - {overlap}")
                self._connected = True
                try:
                    return await self._consume(ws, subid, sink)
                finally:
                    self._connected = False
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            why = "no close frame" if rcvd is None else f"code {rcvd.code}" + (
                f": {rcvd.reason}" if rcvd.reason else "")
            return f"connection dropped ({why})", ""
        except RateLimited as exc:
            return str(exc).removeprefix(f"{self._label}: "), ""
        except InvalidURI as exc:
            return f"invalid URL ({exc})", "check sources[].relays in the config"
        except InvalidStatus as exc:
            answer = exc.response
            wait = self._budgets.refused(url, answer.status_code, answer.headers)
            if answer.status_code == 429:
                after = f"; next connect allowed in {format_wait(wait)}" if wait else ""
                return f"HTTP 429 (rate limited){after}", ""
            return f"websocket handshake refused ({exc})", "is this a Nostr relay (wss://…)?"
        except InvalidHandshake as exc:
            return f"websocket handshake refused ({exc})", "is this a Nostr relay (wss://…)?"
        except (OSError, TimeoutError) as exc:
            return describe_transport_error(exc)
        return "connection closed by the relay", ""

    async def _consume(self, ws: ClientConnection, subid: str, sink: Sink) -> tuple[str, str]:
        batch_size = self.cfg.batch_size
        while True:
            raw = await ws.recv(decode=False)
            if raw.startswith(b'["EVENT"'):
                self.events_seen += 1
                self._event(raw)
                if len(self._posts) + len(self._deleted) >= batch_size:
                    await self._flush(sink)
                continue
            ended = self._control(raw, subid)
            if ended is _EOSE:
                await self._flush(sink)  # the stored events are in: store them now
            elif ended is not None:
                return ended

    def _event(self, raw: bytes) -> None:
        eid = raw_id(raw)
        if eid is not None and eid in self.seen:
            # the same id is the same signed content: already kept (or known bad)
            self.duplicates += 1
            log.debug("%s: event %s already seen (duplicate dropped)", self._label, eid)
            self._note_time(raw_created(raw))
            return
        if not self._filter.may_match(raw):
            return
        try:
            message = json.loads(raw)
            if not isinstance(message, list) or len(message) < 3:
                raise ValueError('expected ["EVENT", subid, event]')
            event = message[2]
            what, value, eid, created = parse_event(event, self._filter, len(raw))
        except EventRejected as exc:
            self._reject(exc, event)
            return
        except (ValueError, UnicodeDecodeError) as exc:
            self._rejected += 1
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            log.warning("nostr: skipped a malformed EVENT frame from %s (%d bytes): %s",
                        self._stream.endpoint, len(raw), reason)
            return
        if what == "skip":
            return
        self.seen.add(eid)
        self._note_time(created)
        if isinstance(value, Post):
            self._posts.append(value)
        elif isinstance(value, tuple):
            self._deleted.extend(value)

    def _reject(self, exc: EventRejected, event: object) -> None:
        """Count and log a bad event once, however many relays send it."""
        sig = event.get("sig") if isinstance(event, dict) else None
        # keyed by id AND signature: a forged copy must not shadow the genuine event
        if len(exc.ref) == 64:
            mark = f"{exc.ref}/{sig}"
            if mark in self.seen:
                self.duplicates += 1
                return
            self.seen.add(mark)
        self._rejected += 1
        log.warning("nostr: skipped event %s from %s: field %s %s", exc.ref,
                    self._stream.endpoint, exc.field, exc.problem)

    def _note_time(self, created: int | None) -> None:
        if created is None or not plausible_time(created):
            return
        self._stored += 1
        self._oldest = min(self._oldest, created)
        if self._cursor is None or created > self._cursor:
            if self._live:
                self._cursor = created
            else:
                # stored events come newest first: the cursor may only move once all of
                # them are in (EOSE), or a drop half-way would skip the older ones
                self._held = max(self._held or 0, created)

    def _control(self, raw: bytes, subid: str) -> tuple[str, str] | None:
        """EOSE / CLOSED / NOTICE / anything else; (why, hint) when the session must end."""
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            message = None
        if not isinstance(message, list) or not message or not isinstance(message[0], str):
            self._rejected += 1
            log.warning("nostr: %s sent a frame that is not a relay message (%d bytes); "
                        "ignored", self._stream.endpoint, len(raw))
            return None
        verb = message[0]
        text = str(message[2] if verb == "CLOSED" and len(message) > 2 else
                   message[1] if len(message) > 1 else "")[:200]
        if verb == "EOSE":
            self.eose += 1
            self._live = True
            if self._held is not None and (self._cursor is None or self._held > self._cursor):
                self._cursor = self._held
            if self._stored >= self.cfg.limit:
                log.warning("%s: the relay sent %d stored events, the limit; notes older "
                            "than %s in the window may be missing (raise limit)", self._label,
                            self._stored, _fmt(self._oldest))
            log.info("%s: stored events received, now live", self._label)
            return _EOSE
        elif verb == "CLOSED" and (len(message) < 2 or message[1] == subid):
            if text.startswith("rate-limited:"):
                wait = self._budgets.backoff().ceiling(2)
                self._budgets.of(host_of(self.relay)).block(wait)
                return f"subscription closed by the relay ({text})", ""
            if text.startswith("auth-required:"):
                return (f"subscription closed by the relay ({text})",
                        "this relay wants NIP-42 authentication, which is not supported")
            return f"subscription closed by the relay ({text or 'no reason'})", ""
        elif verb == "NOTICE":
            log.warning("%s: relay notice: %s", self._label, text)
        # OK, AUTH, COUNT and later verbs are not ours to act on
        return None

    async def _tick(self, sink: Sink) -> None:
        interval = max(self.cfg.batch_interval.total_seconds(), 0.01)
        heartbeat = max(self.heartbeat, interval)
        while True:
            await asyncio.sleep(interval)
            beat = self._connected and time.monotonic() - self._last_flush >= heartbeat
            await self._flush(sink, force=beat)

    async def _flush(self, sink: Sink, *, force: bool = False) -> None:
        """Hand over what is pending with the cursor; in order, thanks to the lock."""
        async with self._lock:
            cursor_value = self._cursor
            if (not force and not self._posts and not self._deleted and not self._rejected
                    and cursor_value == self._flushed):
                return
            self._last_flush = time.monotonic()
            posts, deleted, rejected = self._posts, self._deleted, self._rejected
            self._posts, self._deleted, self._rejected = [], [], 0
            cursor = None if cursor_value is None else Cursor(
                SOURCE, self._stream.name, str(cursor_value))
            try:
                await sink(Batch(stream=self._stream, posts=tuple(posts), cursor=cursor,
                                 deleted=tuple(deleted), rejected=rejected))
            except Exception as exc:
                raise _SinkFailed() from exc
            self._flushed = cursor_value


def _cursor_value(cursor: Cursor | None, label: str) -> int | None:
    if cursor is None:
        return None
    try:
        value = int(cursor.value)
    except ValueError:
        value = -1
    if not plausible_time(value):
        log.warning("%s: saved cursor %r is not a unix time; starting with the backfill window",
                    label, cursor.value[:40])
        return None
    return value


def _fmt(value: int | None) -> str:
    if value is None:
        return "(none)"
    return f"{datetime.fromtimestamp(value, tz=UTC):%Y-%m-%dT%H:%M:%SZ}"
