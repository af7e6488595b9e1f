"""Bluesky through Jetstream: the JSON firehose, filtered here for the followed tags.

Jetstream (v1 ``/subscribe``) sends every event of the network for the
collections asked for: about every new post on Bluesky. We keep a post when
one of its hashtags is followed, looking in this order at the facet tags
(``app.bsky.richtext.facet#tag``), ``record.tags``, and the hashtags found in
the text (the same rule the enrichment stage uses), all compared after
:func:`monitor.tags.normalise_tag`.

Cursor: the ``time_us`` of the last event seen (unix microseconds), saved with
each batch. A restart or a reconnect asks for ``cursor - rewind`` so nothing
falls between two connections; the replayed posts are dropped by the unique
``at://`` key in the store. A cursor is valid on every Jetstream instance, so a
failing host is simply replaced by the next one in ``hosts``.

Speed: most events are not ours, so an event is only decoded when its raw
bytes could hold a followed tag (see :meth:`_Filter.may_match`); the check is
exact for ASCII events and conservative for the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from monitor import __version__
from monitor.backoff import Backoff
from monitor.config import Config
from monitor.enrich.text import extract_hashtags
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.base import describe_transport_error, format_wait, host_of
from monitor.sources.settings import JetstreamSource
from monitor.tags import normalise_tag

__all__ = ["POST_COLLECTION", "JetstreamCollector", "parse_event"]

log = logging.getLogger("monitor.sources.jetstream")

POST_COLLECTION = "app.bsky.feed.post"
PLATFORM = "bluesky"  # the same platform as Bluesky search: one at:// uri is one post
_TAG_FEATURE = "app.bsky.richtext.facet#tag"
_TIME_US = re.compile(rb'"time_us"\s*:\s*(\d+)')
# a session that delivered events and then dropped is not a failing host
_HEALTHY_SESSION_EVENTS = 1
_LOOKBACK_WARN = 30 * 3600  # seconds; Jetstream replays about 36 h
_HEARTBEAT = 30.0  # seconds between health updates on a quiet connection


class _Filter:
    """Which raw events are worth decoding, and which decoded posts are ours."""

    def __init__(self, tags: list[str]) -> None:
        self.tags = frozenset(tags)
        # ASCII text is unchanged by NFKC and casefold is lower(), so for an
        # all-ASCII event a followed tag must appear as lowercase bytes.
        self.needles = tuple(t.encode() for t in self.tags if t.isascii())

    def may_match(self, raw: bytes) -> bool:
        """False only when *raw* cannot be a followed post nor a post delete."""
        if b'"delete"' in raw:
            return True
        if raw.isascii() and b"\\u" not in raw:
            low = raw.lower()
            # a plain loop: measurably faster than any() over a generator on this hot path
            for needle in self.needles:  # noqa: SIM110
                if needle in low:
                    return True
            return False
        # Non-ASCII or escaped: NFKC can turn fullwidth or styled letters into
        # a followed tag, so decode whenever the event carries any hashtag signal.
        return (
            b"facet#tag" in raw
            or b'"tags"' in raw
            or b"\xef\xbc\x83" in raw  # fullwidth number sign
            or b"\\u" in raw
            or raw.count(b"#") > raw.count(b"facet#")
        )

    def matches(self, record: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
        """(is it ours, the platform's own tags: facet tags then record.tags)."""
        platform_tags: list[str] = []
        facets = record.get("facets")
        if isinstance(facets, list):
            for facet in facets:
                features = facet.get("features") if isinstance(facet, dict) else None
                if not isinstance(features, list):
                    continue
                for feature in features:
                    if (isinstance(feature, dict) and feature.get("$type") == _TAG_FEATURE
                            and isinstance(feature.get("tag"), str)):
                        platform_tags.append(feature["tag"])
        extra = record.get("tags")
        if isinstance(extra, list):
            platform_tags.extend(t for t in extra if isinstance(t, str))
        tags = self.tags
        if any(normalise_tag(t) in tags for t in platform_tags):
            return True, tuple(platform_tags)
        text = record.get("text")
        if isinstance(text, str) and any(t in tags for t in extract_hashtags(text)):
            return True, tuple(platform_tags)
        return False, tuple(platform_tags)


class _Rejected(Exception):
    """A followed post that cannot be stored; names the field, never the text."""

    def __init__(self, key: str, field: str, problem: str) -> None:
        self.key = key
        self.field = field
        self.problem = problem
        super().__init__(f"{key}: {field} {problem}")


class _SinkFailed(Exception):
    """The sink (the store) raised; kept apart from connection errors, cause attached."""


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _to_post(did: str, rkey: str, record: dict[str, Any], tags: tuple[str, ...],
             time_us: int | None, raw_size: int) -> Post:
    key = f"at://{did}/{POST_COLLECTION}/{rkey}"
    text = record.get("text", "")
    if not isinstance(text, str):
        raise _Rejected(key, "record.text", f"must be a string, got {type(text).__name__}")
    created = _parse_time(record.get("createdAt"))
    if created is None:
        raise _Rejected(key, "record.createdAt", "is missing or not an ISO-8601 time")
    if time_us is not None:
        # createdAt is set by the client; like Bluesky's sortAt, a post cannot
        # be newer than the moment the network saw it.
        seen = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
        created = min(created, seen)
    langs = record.get("langs")
    lang = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    # self-labels (content warnings) as Bluesky search reads them
    labels = record.get("labels")
    values = labels.get("values") if isinstance(labels, dict) else None
    sensitive = isinstance(values, list) and any(
        isinstance(v, dict) and v.get("val") for v in values)
    return Post(
        platform=PLATFORM,
        key=key,
        created_at=created,
        url=f"https://bsky.app/profile/{did}/post/{rkey}",
        author=did,
        text=text,
        lang=lang,
        tags=tags,
        is_repost=False,
        sensitive=sensitive,
        raw_size=raw_size,
    )


def parse_event(raw: bytes | str, tags: list[str]) -> tuple[str, Post | str | None]:
    """Decode one Jetstream event: ("post", Post) / ("delete", key) / ("skip", None).

    Raises ``ValueError`` for a frame that is not a Jetstream event and
    :class:`_Rejected` (a ``ValueError`` too) for a followed post with a bad field.
    """
    return _parse(raw, _Filter(tags))


def _parse(raw: bytes | str, flt: _Filter) -> tuple[str, Post | str | None]:
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "bad UTF-8"
        raise ValueError(f"not JSON ({reason})") from None
    if not isinstance(event, dict):
        raise ValueError(f"expected an event object, got {type(event).__name__}")
    if event.get("kind") != "commit":
        return "skip", None  # identity / account events only move the cursor
    commit = event.get("commit")
    did = event.get("did")
    if not isinstance(commit, dict) or not isinstance(did, str) or not did:
        raise ValueError("commit event without 'did' or 'commit'")
    if commit.get("collection") != POST_COLLECTION:
        return "skip", None
    rkey = commit.get("rkey")
    if not isinstance(rkey, str) or not rkey:
        raise ValueError("commit event without 'rkey'")  # no DID in logs without a post key
    operation = commit.get("operation")
    if operation == "delete":
        return "delete", f"at://{did}/{POST_COLLECTION}/{rkey}"
    if operation not in ("create", "update"):
        return "skip", None
    record = commit.get("record")
    if not isinstance(record, dict):
        raise _Rejected(f"at://{did}/{POST_COLLECTION}/{rkey}", "commit.record", "is missing")
    ours, platform_tags = flt.matches(record)
    if not ours:
        return "skip", None
    time_us = event.get("time_us")
    return "post", _to_post(did, rkey, record, platform_tags,
                            time_us if isinstance(time_us, int) else None, len(raw))


class JetstreamCollector:
    """A :class:`~monitor.sources.base.StreamingSource` over Jetstream v1.

    One stream, ``jetstream`` / ``<first host>#*``: its cursor is the
    ``time_us`` of the last event seen. Posts and deletes are handed to the
    sink in batches of ``batch_size`` or every ``batch_interval``, whichever
    comes first; a batch may be empty and only move the cursor.
    """

    source = "jetstream"
    platform = PLATFORM

    def __init__(self, source_cfg: JetstreamSource, config: Config) -> None:
        self.cfg = source_cfg
        self.config = config
        self.tags = config.followed(source_cfg.tags)
        self._filter = _Filter(self.tags)
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

    async def run(self, cursor: Cursor | None, sink: Callable[[Batch], Awaitable[None]]) -> None:
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

    async def _connect_loop(self, sink: Callable[[Batch], Awaitable[None]]) -> None:
        backoff = Backoff.between(self.config.http.backoff_base, self.config.http.backoff_max)
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

    async def _session(self, url: str, sink: Callable[[Batch], Awaitable[None]]
                       ) -> tuple[str, str]:
        """One connection, read until it ends; returns (why it ended, a hint or "")."""
        self._advance_cursor()
        target = self._subscribe_url(url)
        host = host_of(url)
        try:
            async with connect(
                target,
                compression=None,  # JSON over loopback or TLS; deflate costs more CPU than it saves
                user_agent_header=self._user_agent,
                open_timeout=self.config.http.timeout.total_seconds(),
                max_queue=256,
                max_size=2**22,
            ) as ws:
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
        except InvalidURI as exc:
            return f"invalid URL ({exc})", "check sources[].hosts in the config"
        except InvalidHandshake as exc:
            return f"websocket handshake refused ({exc})", "is this a Jetstream /subscribe URL?"
        except (OSError, TimeoutError) as exc:
            return describe_transport_error(exc)
        return "connection closed by the server", ""

    async def _consume(self, ws: ClientConnection,
                       sink: Callable[[Batch], Awaitable[None]]) -> None:
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
            kind, value = _parse(raw, self._filter)
        except _Rejected as exc:
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

    async def _tick(self, sink: Callable[[Batch], Awaitable[None]]) -> None:
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

    async def _flush(self, sink: Callable[[Batch], Awaitable[None]], *,
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
