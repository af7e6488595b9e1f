"""A fake Nostr relay (NIP-01) on 127.0.0.1: a real websocket server with signed events.

It keeps a store of events and answers ``["REQ", subid, filter…]`` as relays
do: the stored events matching any filter (``ids``, ``authors``, ``kinds``,
``#t``/``#e`` and other single-letter tags compared exactly, ``since``/``until``
inclusive), newest first and cut to ``limit``, then ``["EOSE", subid]``, then
every newly published matching event live. ``["CLOSE", subid]`` ends a
subscription. Frames are compact JSON text frames with non-ASCII left raw.

Events are really signed (BIP-340 with deterministic test keys, see
:func:`sign_event`). The seeded :class:`NostrWorld` carries, among its good
notes, one note with a broken signature and one note stored twice: neither
may be collected twice or at all.

Switches for tests: :meth:`NostrRelayFake.drop_after` (the next connection is
cut without a close frame after N frames), :meth:`refuse_next` (handshakes
answered 429 with Retry-After), :meth:`close_next` (the next REQ is answered
with ``CLOSED`` and a reason), :meth:`notice` (a ``NOTICE`` to everyone),
:meth:`publish_raw` (malformed frames, live), :meth:`serve_firehose` (every
REQ gets a pre-built list of frames, ignoring the filters, then EOSE).

By hand: ``python -m tests.fakes.nostr`` prints the URL and serves the world;
``--firehose N --match 0.01`` serves N frames at full speed (benchmarks/collect.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from coincurve import PrivateKey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from monitor.sources.nostr_events import event_id, post_key
from monitor.store.buckets import bucket_start
from tests.fakes.data import DISPLAY, TAGS

__all__ = ["NostrRelayFake", "NostrWorld", "deletion", "firehose_frames", "keypair", "note",
           "sign_event", "start_nostr_fake"]

_SENTENCES = (
    "Still listening, still learning.",
    "This thread made me cry 😢 but I'm glad people speak up.",
    "Je vous crois. Toujours. ✊",
    "私も。声を上げた人を支持します。",
    "Quotes \"inside\", a back\\slash,\ta tab and a\nnew line.",
    "Yo también. No estás sola 💜",
)
_NOISE = (
    "gm nostr ☕", "Stacking sats. #bitcoin", "New relay is up! #nostr #relay",
    "Zap me if you like this photo #photography", "Cats are the best #caturday",
    "the metoo movement history, a reading list (no hashtag here)",
)


# ---------------------------------------------------------------------------- events


def keypair(name: str) -> tuple[PrivateKey, str]:
    """A deterministic test key and its x-only public key (64 hex)."""
    secret = PrivateKey(hashlib.sha256(f"nostr-test-key:{name}".encode()).digest())
    return secret, secret.public_key_xonly.format().hex()


_KEYS: dict[str, tuple[PrivateKey, str]] = {}


def _key(name: str) -> tuple[PrivateKey, str]:
    if name not in _KEYS:
        _KEYS[name] = keypair(name)
    return _KEYS[name]


def sign_event(author: str, created_at: int, kind: int, tags: list[list[str]], content: str
               ) -> dict[str, Any]:
    """A complete, validly signed event by test author *author*."""
    secret, pubkey = _key(author)
    eid = event_id(pubkey, created_at, kind, tags, content)
    sig = secret.sign_schnorr(bytes.fromhex(eid)).hex()
    return {"id": eid, "pubkey": pubkey, "created_at": created_at, "kind": kind,
            "tags": tags, "content": content, "sig": sig}


def note(author: str, created_at: int, content: str, tags: Iterable[str] = (),
         extra: Iterable[list[str]] = ()) -> dict[str, Any]:
    """A kind-1 note with ``t`` tags (as given: NIP-24 wants lowercase)."""
    return sign_event(author, created_at, 1, [["t", t] for t in tags] + list(extra), content)


def deletion(author: str, created_at: int, ids: Iterable[str], reason: str = "") -> dict[str, Any]:
    """A NIP-09 deletion (kind 5) of *ids* by *author*."""
    return sign_event(author, created_at, 5, [["e", i] for i in ids], reason)


def with_bad_signature(event: dict[str, Any]) -> dict[str, Any]:
    """The same event with one signature byte flipped (the id still matches)."""
    sig = bytearray(bytes.fromhex(event["sig"]))
    sig[10] ^= 0x01
    return dict(event, sig=sig.hex())


def _encode(message: list[Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def key_of(event: dict[str, Any]) -> str:
    """What the collector stores the event under."""
    return post_key(event["id"], event["pubkey"])


# ---------------------------------------------------------------------------- the world


@dataclass(frozen=True, slots=True)
class NostrPost:
    event: dict[str, Any]
    tags: tuple[str, ...]  # normalised
    created_at: datetime

    @property
    def key(self) -> str:
        return key_of(self.event)


class NostrWorld:
    """The notes a fake relay serves: *posts* good ones over *hours* before now, plus one
    with a bad signature, one stored twice, noise and a forged deletion (another author)."""

    def __init__(self, *, seed: int = 7, posts: int = 40, hours: float = 3.0,
                 start: datetime | None = None) -> None:
        rng = random.Random(seed)
        if start is None:
            start = bucket_start(datetime.now(UTC) - timedelta(hours=hours, minutes=5))
        self.posts: list[NostrPost] = []
        span = int(hours * 3600)
        for n in range(posts):
            created = int(start.timestamp()) + rng.randrange(span)
            tags = tuple(rng.sample(TAGS, rng.choices([1, 2], weights=[3, 1])[0]))
            text = rng.choice(_SENTENCES) + " " + " ".join("#" + DISPLAY[t] for t in tags)
            # t tags lowercase as NIP-24 asks; one client writes them in capitals
            written = [t.upper() if n == 3 else t for t in tags]
            extra: list[list[str]] = []
            if n % 7 == 0:
                extra.append(["content-warning", "violence"])
            if n % 5 == 0:
                extra.append(["l", "en", "ISO-639-1"])
            event = note(f"author{n % 9}", created, text, written, extra)
            self.posts.append(NostrPost(event, tags,
                                        datetime.fromtimestamp(created, tz=UTC)))
        last = int(start.timestamp()) + span // 2
        self.bad = with_bad_signature(note("mallory", last, "Forged #MeToo", ["metoo"]))
        self.duplicate = self.posts[len(self.posts) // 2].event if self.posts else None
        self.noise = [note(f"noise{i}", last + i, rng.choice(_NOISE),
                           [w[1:].lower() for w in _NOISE[i % len(_NOISE)].split()
                            if w.startswith("#")]) for i in range(6)]
        # a deletion of someone else's note: must never remove it
        self.forged_deletion = (deletion("mallory", last + 10, [self.posts[0].event["id"]])
                                if self.posts else None)

    def add(self, tags: tuple[str, ...] = ("metoo",)) -> dict[str, Any]:
        """A new note written now (publish it on the relays yourself)."""
        created = int(time.time())
        text = "Just now. " + " ".join("#" + DISPLAY[t] for t in tags)
        event = note(f"author{len(self.posts) % 9}", created, text, tags)
        self.posts.append(NostrPost(event, tuple(tags), datetime.fromtimestamp(created, tz=UTC)))
        return event

    def expected(self) -> dict[tuple[str, str], tuple[datetime, tuple[str, ...]]]:
        """(platform, key) -> (created_at, tags) of every note to be stored."""
        return {("nostr", p.key): (p.created_at, p.tags) for p in self.posts}

    def events(self) -> list[dict[str, Any]]:
        """What the relay stores, the duplicate included twice."""
        out = [p.event for p in self.posts] + [self.bad] + self.noise
        if self.duplicate is not None:
            out.append(self.duplicate)
        if self.forged_deletion is not None:
            out.append(self.forged_deletion)
        return out

    def expected_keys(self) -> set[tuple[str, str]]:
        return {("nostr", p.key) for p in self.posts}

    def expected_tag_counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for post in self.posts:
            counts.update(post.tags)
        return dict(counts)

    def expected_bucket_counts(self) -> dict[tuple[str, datetime], int]:
        counts: Counter[tuple[str, datetime]] = Counter()
        for post in self.posts:
            counts.update((t, bucket_start(post.created_at)) for t in post.tags)
        return dict(counts)


# ---------------------------------------------------------------------------- the relay


def _matches(event: dict[str, Any], flt: dict[str, Any]) -> bool:
    if "ids" in flt and event["id"] not in flt["ids"]:
        return False
    if "authors" in flt and event["pubkey"] not in flt["authors"]:
        return False
    if "kinds" in flt and event["kind"] not in flt["kinds"]:
        return False
    if "since" in flt and event["created_at"] < flt["since"]:
        return False
    if "until" in flt and event["created_at"] > flt["until"]:
        return False
    for name, wanted in flt.items():
        if len(name) == 2 and name[0] == "#":
            values = {t[1] for t in event["tags"] if len(t) >= 2 and t[0] == name[1]}
            if not values & set(wanted):
                return False
    return True


@dataclass(frozen=True, slots=True)
class Subscription:
    subid: str
    filters: tuple[dict[str, Any], ...]
    at: float


class NostrRelayFake:
    """The fake relay; runs its own event loop in a daemon thread. Thread-safe controls."""

    def __init__(self, events: Iterable[dict[str, Any]] = (), *, port: int = 0) -> None:
        self._events: list[dict[str, Any]] = list(events)
        self._live: set[asyncio.Queue[bytes | dict[str, Any] | None]] = set()
        self._conns: set[ServerConnection] = set()
        self._drop_after: list[int] = []
        self._refuse: list[float] = []
        self._close_next: list[str] = []
        self._firehose: list[bytes] | None = None
        self.subscriptions: list[Subscription] = []
        self.refusals = 0
        self.frames_sent = 0
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._ready = threading.Event()
        self._port = port
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="fake-nostr", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError(f"fake nostr relay did not start: {self.error!r}")
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"

    # -- lifecycle ------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        async def start() -> Server:
            return await serve(self._handler, "127.0.0.1", self._port, compression=None,
                               process_request=self._check_request, max_queue=None,
                               ping_interval=None)

        try:
            self._server = self._loop.run_until_complete(start())
        except OSError as exc:  # reported by __init__
            self.error = exc
        self._ready.set()
        if self._server is not None:
            self._loop.run_forever()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            assert self._server is not None
            # cut connections outright: a client blocked elsewhere must not hold us up
            for conn in list(self._conns):
                conn.transport.abort()
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 3)
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(6)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> NostrRelayFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- controls -------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return int(self._call(lambda: len(self._live)))

    def wait_for_subscribers(self, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.subscribers < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake nostr relay: fewer than {count} subscribers")
            time.sleep(0.02)

    def publish(self, events: Iterable[dict[str, Any]]) -> None:
        """Store events and relay them live to matching subscriptions."""
        def add(items: list[dict[str, Any]]) -> None:
            self._events.extend(items)
            for queue in self._live:
                for item in items:
                    queue.put_nowait(item)
        self._call(add, list(events))

    def publish_raw(self, frames: Iterable[bytes]) -> None:
        """Send frames exactly as given to every open connection (not stored)."""
        def add(items: list[bytes]) -> None:
            for queue in self._live:
                for item in items:
                    queue.put_nowait(item)
        self._call(add, list(frames))

    def notice(self, text: str) -> None:
        self.publish_raw([_encode(["NOTICE", text])])

    def drop_after(self, frames: int) -> None:
        """Cut the NEXT connection (no close frame) after it received *frames* frames."""
        self._call(self._drop_after.append, frames)

    def refuse_next(self, count: int = 1, *, retry_after: float = 1.0) -> None:
        self._call(self._refuse.extend, [retry_after] * count)

    def close_next(self, reason: str = "rate-limited: slow down") -> None:
        """Answer the next REQ with ``["CLOSED", subid, reason]``."""
        self._call(self._close_next.append, reason)

    def drop_connections(self) -> None:
        def cut() -> None:
            for conn in list(self._conns):
                conn.transport.abort()
        self._call(cut)

    def serve_firehose(self, frames: list[bytes]) -> None:
        self._call(setattr, self, "_firehose", frames)

    # -- loop side ------------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._refuse:
            self.refusals += 1
            body = b"rate limited"
            headers = Headers([("Content-Type", "text/plain"),
                               ("Content-Length", str(len(body))),
                               ("Retry-After", f"{self._refuse.pop(0):g}")])
            return Response(HTTPStatus.TOO_MANY_REQUESTS.value, "Too Many Requests", headers,
                            body)
        return None

    async def _handler(self, conn: ServerConnection) -> None:
        limit = self._drop_after.pop(0) if self._drop_after else None
        queue: asyncio.Queue[bytes | dict[str, Any] | None] = asyncio.Queue()
        subs: dict[str, tuple[dict[str, Any], ...]] = {}
        sent = 0
        self._conns.add(conn)

        async def send(frame: bytes) -> bool:
            nonlocal sent
            if limit is not None and sent >= limit:
                conn.transport.abort()
                return False
            await conn.send(frame, text=True)
            sent += 1
            self.frames_sent += 1
            return True

        async def pump() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    await conn.close()
                    return
                if isinstance(item, bytes):
                    if not await send(item):
                        return
                    continue
                for subid, filters in list(subs.items()):
                    if any(_matches(item, f) for f in filters) and not await send(
                            _encode(["EVENT", subid, item])):
                        return

        pumping = asyncio.create_task(pump())
        self._live.add(queue)
        try:
            async for message in conn:
                try:
                    data = json.loads(message)
                except ValueError:
                    await send(_encode(["NOTICE", "error: could not parse your message"]))
                    continue
                if not isinstance(data, list) or not data:
                    continue
                if data[0] == "CLOSE" and len(data) > 1:
                    subs.pop(str(data[1]), None)
                elif data[0] == "REQ" and len(data) >= 3:
                    subid = str(data[1])
                    filters = tuple(f for f in data[2:] if isinstance(f, dict))
                    self.subscriptions.append(Subscription(subid, filters, time.monotonic()))
                    if self._close_next:
                        await send(_encode(["CLOSED", subid, self._close_next.pop(0)]))
                        continue
                    if self._firehose is not None:
                        for frame in self._firehose:
                            await conn.send(frame, text=True)
                        self.frames_sent += len(self._firehose)
                        await send(_encode(["EOSE", subid]))
                        continue
                    stored = self._stored(filters)
                    subs[subid] = filters
                    for event in stored:
                        if not await send(_encode(["EVENT", subid, event])):
                            return
                    if not await send(_encode(["EOSE", subid])):
                        return
        except ConnectionClosed:
            return
        finally:
            self._live.discard(queue)
            self._conns.discard(conn)
            pumping.cancel()

    def _stored(self, filters: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for flt in filters:
            found = [e for e in self._events if _matches(e, flt)]
            # newest first, ties by lowest id, as NIP-01 asks of the initial answer
            found.sort(key=lambda e: (-e["created_at"], e["id"]))
            if isinstance(flt.get("limit"), int):
                found = found[: flt["limit"]]
            out.extend(found)
        return out


# ---------------------------------------------------------------------------- firehose


def firehose_frames(count: int, *, match: float = 0.01, seed: int = 11
                    ) -> tuple[list[bytes], int]:
    """*count* EVENT frames, a share *match* of them signed notes with a followed tag.

    The rest come from a pool of 2,000 signed noise notes (signing all of them
    would take the fake longer than the benchmark); none is ever verified by a
    consumer that filters first, which is the point being measured.
    """
    rng = random.Random(seed)
    now = int(time.time()) - 3600
    pool = [_encode(["EVENT", "sub", note(f"hose{i % 50}", now + i, rng.choice(_NOISE),
                                          ["nostr"] if i % 3 else [])])
            for i in range(2000)]
    frames: list[bytes] = []
    matching = 0
    for i in range(count):
        if rng.random() < match:
            tag = rng.choice(TAGS)
            event = note(f"hose{i % 97}", now + i // 100, f"Note {i} about this. #{DISPLAY[tag]}",
                         [tag])
            frames.append(_encode(["EVENT", "sub", event]))
            matching += 1
        else:
            frames.append(pool[i % len(pool)])
    return frames, matching


# ---------------------------------------------------------------------------- by hand


def start_nostr_fake(world: NostrWorld | None = None, *, port: int = 0) -> NostrRelayFake:
    """A relay storing *world*'s events (a fresh default world if None)."""
    return NostrRelayFake((world or NostrWorld()).events(), port=port)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--firehose", type=int, default=0)
    parser.add_argument("--match", type=float, default=0.01)
    args = parser.parse_args(argv)
    if args.firehose:
        frames, matching = firehose_frames(args.firehose, match=args.match)
        fake = NostrRelayFake(port=args.port)
        fake.serve_firehose(frames)
        print(json.dumps({"url": fake.url, "frames": len(frames), "matching": matching,
                          "bytes": sum(map(len, frames))}), flush=True)
    else:
        fake = start_nostr_fake(port=args.port)
        print(f"nostr relay  {fake.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
