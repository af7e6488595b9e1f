"""What a Nostr relay message means: a verified followed note, a deletion, or nothing of ours.

Every event we keep is verified first (NIP-01):

* ``id`` is the sha256 of the UTF-8 of ``[0,pubkey,created_at,kind,tags,content]``
  serialised as compact JSON with non-ASCII left raw. Python's
  ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` escapes exactly
  what JavaScript's ``JSON.stringify`` escapes (``\\n``, ``\\"``, ``\\\\``, ``\\r``,
  ``\\t``, ``\\b``, ``\\f``, other C0 controls as ``\\u00XX``), and that is what the
  common clients sign;
* ``sig`` is a BIP-340 schnorr signature of that id by ``pubkey``, checked with
  libsecp256k1 through ``coincurve``.

The post key binds the author: ``<event id>:<16 hex of sha256(pubkey)>``. A NIP-09
deletion (kind 5) names the events it deletes by id in ``e`` tags; we turn each
into the key it would have *if the deleter wrote it*. So only a deletion by the
same author can ever match a stored post, even one stored before a restart or a
deletion that arrives first, and no pubkey is written into the key itself.

Speed: a relay that ignores our filter (or a broad subscription) may send
mostly events that are not ours; an event is only decoded when its raw bytes
could hold a followed tag (the same test as Jetstream's), and only decoded
candidates are verified.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from coincurve import PublicKeyXOnly

from monitor.enrich.text import extract_hashtags
from monitor.models import ImplausibleDate, Post, plausible_created
from monitor.sources.jetstream_events import EventFilter
from monitor.tags import normalise_tag

__all__ = ["PLATFORM", "EventRejected", "NostrFilter", "SeenIds", "author_digest", "event_id",
           "parse_event", "plausible_time", "post_key", "raw_created", "raw_id", "verify"]

PLATFORM = "nostr"
NOTE = 1
DELETION = 5
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(rb'"id"\s*:\s*"([0-9a-f]{64})"')
_CREATED = re.compile(rb'"created_at"\s*:\s*(\d{1,12})[,}]')
_FUTURE = 900  # seconds a created_at may lie ahead of our clock (clock skew)


class EventRejected(ValueError):
    """An event that cannot be kept; names the event id and the field, never the text."""

    def __init__(self, ref: str, field: str, problem: str) -> None:
        self.ref = ref
        self.field = field
        self.problem = problem
        super().__init__(f"{ref}: {field} {problem}")


def author_digest(pubkey: str) -> str:
    """16 hex of sha256(pubkey bytes): ties a key to its author without naming them."""
    return hashlib.sha256(bytes.fromhex(pubkey)).hexdigest()[:16]


def post_key(event_id: str, pubkey: str) -> str:
    """The stored key of event *event_id* written by *pubkey* (see the module docstring)."""
    return f"{event_id}:{author_digest(pubkey)}"


def event_id(pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
             ) -> str:
    """The NIP-01 id: sha256 of the canonical serialisation, lowercase hex."""
    payload = json.dumps([0, pubkey, created_at, kind, tags, content],
                         separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class SeenIds:
    """Event ids already handled, shared by every relay of a source (two generations,
    so memory stays bounded and membership stays O(1))."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._current: set[str] = set()
        self._previous: set[str] = set()

    def __contains__(self, item: str) -> bool:
        return item in self._current or item in self._previous

    def add(self, item: str) -> None:
        if len(self._current) >= self.capacity:
            self._previous, self._current = self._current, set()
        self._current.add(item)


class NostrFilter(EventFilter):
    """Which raw frames are worth decoding, and whether a note is ours."""

    def may_match(self, raw: bytes) -> bool:
        # kind-5 deletions carry no hashtag; let every one through to be checked
        if b'"kind":5' in raw or b'"kind": 5' in raw:
            return True
        return super().may_match(raw)

    def note_tags(self, tags: list[list[str]], content: str) -> tuple[bool, tuple[str, ...]]:
        """(is it ours, its ``t`` tag values): a followed ``t`` tag, or a hashtag in the text."""
        values = tuple(t[1] for t in tags if len(t) >= 2 and t[0] == "t")
        wanted = self.tags
        if any(normalise_tag(v) in wanted for v in values):
            return True, values
        return any(t in wanted for t in extract_hashtags(content)), values


def raw_id(raw: bytes) -> str | None:
    """The event id of a raw ``EVENT`` frame without decoding it (None if not found)."""
    match = _ID.search(raw)
    return match.group(1).decode() if match else None


def raw_created(raw: bytes) -> int | None:
    """The ``created_at`` of a raw ``EVENT`` frame without decoding it."""
    match = _CREATED.search(raw)
    return int(match.group(1)) if match else None


def _check_shape(event: Any) -> tuple[str, str, int, int, list[list[str]], str, str]:
    if not isinstance(event, dict):
        raise EventRejected("(event)", "(event)", f"expected an object, got {type(event).__name__}")
    eid = event.get("id")
    if not isinstance(eid, str) or not _HEX64.fullmatch(eid):
        raise EventRejected("(no id)", "id", "missing or not 64 lowercase hex")
    pubkey = event.get("pubkey")
    if not isinstance(pubkey, str) or not _HEX64.fullmatch(pubkey):
        raise EventRejected(eid, "pubkey", "missing or not 64 lowercase hex")
    created = event.get("created_at")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise EventRejected(eid, "created_at", "missing or not a whole number of seconds")
    kind = event.get("kind")
    if not isinstance(kind, int) or isinstance(kind, bool):
        raise EventRejected(eid, "kind", "missing or not an integer")
    tags = event.get("tags")
    if not isinstance(tags, list) or not all(
            isinstance(t, list) and all(isinstance(v, str) for v in t) for t in tags):
        raise EventRejected(eid, "tags", "expected a list of lists of strings")
    content = event.get("content")
    if not isinstance(content, str):
        raise EventRejected(eid, "content", "missing or not a string")
    sig = event.get("sig")
    if not isinstance(sig, str) or len(sig) != 128:
        raise EventRejected(eid, "sig", "missing or not 128 hex")
    return eid, pubkey, created, kind, tags, content, sig


def verify(eid: str, pubkey: str, created: int, kind: int, tags: list[list[str]], content: str,
           sig: str) -> None:
    """Raise :class:`EventRejected` unless the id and the schnorr signature both hold."""
    try:
        computed = event_id(pubkey, created, kind, tags, content)
    except UnicodeEncodeError:  # a lone surrogate: no client could have hashed it
        raise EventRejected(eid, "content", "is not valid Unicode") from None
    if computed != eid:
        raise EventRejected(eid, "id", "does not match the sha256 of the event")
    try:
        ok = PublicKeyXOnly(bytes.fromhex(pubkey)).verify(bytes.fromhex(sig), bytes.fromhex(eid))
    except ValueError:  # not a point on the curve, or sig not hex
        ok = False
    if not ok:
        raise EventRejected(eid, "sig", "is not a valid schnorr signature by pubkey")


def _to_post(eid: str, pubkey: str, created: int, tags: list[list[str]], content: str,
             platform_tags: tuple[str, ...], raw_size: int) -> Post:
    # created_at is the author's claim; a note cannot be newer than our clock says
    try:
        when = plausible_created(datetime.fromtimestamp(min(created, int(time.time())), tz=UTC))
    except ImplausibleDate as exc:
        raise EventRejected(eid, "created_at", str(exc)) from None
    lang = None
    sensitive = False
    for tag in tags:
        if tag and tag[0] == "content-warning":  # NIP-36
            sensitive = True
        elif len(tag) >= 3 and tag[0] == "l" and tag[2] == "ISO-639-1":  # NIP-32
            lang = lang or tag[1]
    return Post(platform=PLATFORM, key=post_key(eid, pubkey), created_at=when, url=None,
                author=pubkey, text=content, lang=lang, tags=platform_tags, is_repost=False,
                sensitive=sensitive, raw_size=raw_size)


def parse_event(event: Any, flt: NostrFilter, raw_size: int = 0
                ) -> tuple[str, Post | tuple[str, ...] | None, str, int]:
    """One decoded event → (what, value, id, created_at).

    ``("post", Post)`` for a verified followed note, ``("delete", keys)`` for a
    verified NIP-09 deletion, ``("skip", None)`` for anything else of a valid
    shape. Raises :class:`EventRejected` for a bad shape, id or signature.
    """
    eid, pubkey, created, kind, tags, content, sig = _check_shape(event)
    if kind == NOTE:
        ours, platform_tags = flt.note_tags(tags, content)
        if not ours:
            return "skip", None, eid, created
        verify(eid, pubkey, created, kind, tags, content, sig)
        return "post", _to_post(eid, pubkey, created, tags, content, platform_tags,
                                raw_size), eid, created
    if kind == DELETION:
        targets = [t[1] for t in tags if len(t) >= 2 and t[0] == "e" and _HEX64.fullmatch(t[1])]
        if not targets:
            return "skip", None, eid, created
        verify(eid, pubkey, created, kind, tags, content, sig)
        digest = author_digest(pubkey)
        return "delete", tuple(f"{t}:{digest}" for t in targets), eid, created
    return "skip", None, eid, created


def plausible_time(created: int, now: float | None = None) -> bool:
    """A created_at that may move a cursor: after 2009 and not ahead of our clock."""
    now = time.time() if now is None else now
    return 1_230_000_000 <= created <= now + _FUTURE
