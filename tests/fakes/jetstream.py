"""A fake Jetstream (v1 ``/subscribe``) on 127.0.0.1: a real websocket server.

It keeps a log of published events, each stamped with a ``time_us`` (unix
microseconds, strictly increasing) as the real service stamps what it relays.
A client that connects without ``cursor`` gets the live tail; with
``cursor=<µs>`` it first gets every logged event at or after that time, then
the live tail, with no gap in between. ``wantedCollections`` filters commit
events (``prefix.*`` allowed); identity and account events always pass, as
on the real service. Frames are compact JSON text frames, non-ASCII left raw,
like the Go server writes them.

Seeded posts come from :class:`tests.fakes.data.World` (the same Bluesky posts
the search fake serves, as the same records), interleaved with noise that
must NOT be collected: posts with other hashtags, link and mention facets,
'metoo' without a '#', likes, identity and account events, deletes.

Switches for tests: :meth:`JetstreamFake.drop_after` (the next connection is
cut without a close frame after N frames), :meth:`drop_connections`,
:meth:`refuse_next` (handshakes answered 429 with Retry-After),
:meth:`publish_raw` (malformed frames), and :meth:`serve_firehose` (every
connection gets a pre-built list of frames as fast as the server can send).

By hand: ``python -m tests.fakes.jetstream`` prints the URL and plays the
world's posts slowly to whoever connects; ``--firehose N --match 0.01``
serves N frames at full speed (used by benchmarks/collect.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes.data import DISPLAY, TAGS, SeedPost, World, bluesky_record

__all__ = [
    "JetstreamFake",
    "Subscription",
    "account_event",
    "commit_create",
    "commit_delete",
    "firehose_frames",
    "identity_event",
    "noise_events",
    "start_jetstream_fake",
]

POST = "app.bsky.feed.post"


# ---------------------------------------------------------------------------- events


def _rev(rng: random.Random) -> str:
    return "3l" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(11))


def _cid(rng: random.Random) -> str:
    return "bafyrei" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(52))


def commit_create(did: str, rkey: str, record: dict[str, Any], *, collection: str = POST,
                  rng: random.Random | None = None) -> dict[str, Any]:
    """A commit/create event (``time_us`` is stamped when it is published)."""
    rng = rng or random.Random(hash((did, rkey)))
    return {"did": did, "time_us": 0, "kind": "commit",
            "commit": {"rev": _rev(rng), "operation": "create", "collection": collection,
                       "rkey": rkey, "record": record, "cid": _cid(rng)}}


def commit_delete(did: str, rkey: str, *, collection: str = POST) -> dict[str, Any]:
    """A commit/delete event: no record, no cid."""
    return {"did": did, "time_us": 0, "kind": "commit",
            "commit": {"rev": _rev(random.Random(rkey)), "operation": "delete",
                       "collection": collection, "rkey": rkey}}


def identity_event(did: str, handle: str, seq: int = 1) -> dict[str, Any]:
    return {"did": did, "time_us": 0, "kind": "identity",
            "identity": {"did": did, "handle": handle, "seq": seq,
                         "time": _iso(datetime.now(UTC))}}


def account_event(did: str, active: bool = True, seq: int = 1) -> dict[str, Any]:
    return {"did": did, "time_us": 0, "kind": "account",
            "account": {"active": active, "did": did, "seq": seq,
                        "time": _iso(datetime.now(UTC))}}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_NOISE_TEXTS = (
    "Morning coffee and a long walk ☕",
    "The metoo movement started long before the hashtag, read this history",  # no '#'
    "New blog post about gardening in small spaces",
    "猫がかわいい。今日はいい天気です。",
    "Ce soir je regarde un film 🎬",
    "Reading about #caturday traditions #cats",
    "Can't believe the game last night!! #football",
    "Notes from the conference: #python #asyncio",
    "Who else is watching the eclipse? 🌒 #space",
    "Eine ruhige Woche. #montag",
)


def _facet(text: str, word: str, feature: dict[str, Any]) -> dict[str, Any] | None:
    raw = text.encode()
    start = raw.find(word.encode())
    if start < 0:
        return None
    return {"$type": "app.bsky.richtext.facet",
            "index": {"byteStart": start, "byteEnd": start + len(word.encode())},
            "features": [feature]}


def noise_events(rng: random.Random, count: int, *, with_deletes: bool = True
                 ) -> list[dict[str, Any]]:
    """Events no follower of the world's tags should keep (but whose cursor counts)."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        did = f"did:plc:noise{rng.randrange(5000):05d}"
        roll = rng.random()
        if roll < 0.70:
            text = rng.choice(_NOISE_TEXTS)
            facets = []
            for word in text.split():
                if word.startswith("#"):
                    f = _facet(text, word, {"$type": "app.bsky.richtext.facet#tag",
                                            "tag": word[1:]})
                    if f:
                        facets.append(f)
            if rng.random() < 0.3:
                text += " https://example.com/a/long/path?x=1#metoo"  # '#' only in a URL
                f = _facet(text, "https://example.com/a/long/path?x=1#metoo",
                           {"$type": "app.bsky.richtext.facet#link",
                            "uri": "https://example.com/a/long/path?x=1#metoo"})
                if f:
                    facets.append(f)
            record: dict[str, Any] = {"$type": POST, "text": text,
                                      "createdAt": _iso(datetime.now(UTC)),
                                      "langs": [rng.choice(["en", "ja", "fr", "de"])]}
            if facets:
                record["facets"] = facets
            out.append(commit_create(did, f"3lnoise{i:07d}{rng.randrange(10**6):06d}", record,
                                     rng=rng))
        elif roll < 0.80:
            like = {"$type": "app.bsky.feed.like", "createdAt": _iso(datetime.now(UTC)),
                    "subject": {"uri": f"at://{did}/{POST}/3lx", "cid": _cid(rng)}}
            out.append(commit_create(did, f"3llike{i:07d}", like, collection="app.bsky.feed.like",
                                     rng=rng))
        elif roll < 0.88 and with_deletes:
            out.append(commit_delete(did, f"3lgone{i:07d}"))
        elif roll < 0.94:
            out.append(identity_event(did, f"user{i}.bsky.social", seq=i))
        else:
            out.append(account_event(did, active=rng.random() < 0.9, seq=i))
    return out


def _encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------- the server


@dataclass(frozen=True, slots=True)
class Subscription:
    """What one client asked for: ``wantedCollections`` and ``cursor`` (None = live)."""

    collections: tuple[str, ...]
    cursor: int | None
    at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class _Logged:
    time_us: int
    collection: str | None  # None for identity/account events and raw frames
    frame: bytes


def _wanted(collection: str | None, wanted: Sequence[str]) -> bool:
    if collection is None or not wanted:
        return True
    for w in wanted:
        if w == collection or (w.endswith(".*") and collection.startswith(w[:-1])):
            return True
    return False


class JetstreamFake:
    """The fake service; runs its own event loop in a daemon thread. Thread-safe."""

    def __init__(self, *, port: int = 0) -> None:
        self._log: list[_Logged] = []
        self._last_us = 0
        self._queues: set[asyncio.Queue[_Logged | None]] = set()
        self._conns: set[ServerConnection] = set()
        self._drop_after: list[int] = []
        self._firehose: list[bytes] | None = None
        self.subscriptions: list[Subscription] = []
        # index into subscriptions -> time.monotonic() its connection closed (either side)
        self.closed_at: dict[int, float] = {}
        self._closers: set[asyncio.Task[None]] = set()
        self.refusals: list[float] = []  # time.monotonic() of each handshake refused with 429
        self._refuse: list[float] = []  # Retry-After seconds of the next handshakes to refuse
        self.frames_sent = 0
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port = port
        self._thread = threading.Thread(target=self._run, name="fake-jetstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError(f"fake jetstream did not start: {self._error!r}")
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/subscribe"

    # -- lifecycle ------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported by __init__
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> Server:
        return await serve(self._handler, "127.0.0.1", self._port, compression=None,
                           process_request=self._check_request, max_queue=None,
                           ping_interval=None)

    def stop(self) -> None:
        """Close every connection and the listening socket, then end the thread."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            assert self._server is not None
            for queue in self._queues:
                queue.put_nowait(None)  # wake the handlers waiting for live events
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

    def __enter__(self) -> JetstreamFake:
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
        """Clients connected right now."""
        return int(self._call(lambda: len(self._queues)))

    def wait_for_subscribers(self, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.subscribers < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake jetstream: fewer than {count} subscribers after "
                                   f"{timeout}s")
            time.sleep(0.02)

    def publish(self, events: Iterable[dict[str, Any]]) -> list[int]:
        """Stamp, log and relay events; returns their ``time_us``."""
        items = [(e, e.get("commit", {}).get("collection") if e.get("kind") == "commit"
                  else None) for e in events]
        return list(self._call(self._publish_events, items))

    def publish_raw(self, frames: Iterable[bytes]) -> None:
        """Relay frames exactly as given (malformed JSON, wrong types...); they are logged too."""
        self._call(self._publish_frames, list(frames))

    def publish_posts(self, posts: Iterable[SeedPost], *, noise: int = 0,
                      seed: int = 1) -> list[int]:
        """Publish seed posts as commit/create events, each followed by *noise* noise events."""
        rng = random.Random(seed)
        events: list[dict[str, Any]] = []
        for post in posts:
            events.append(commit_create(post.did, post.rkey, bluesky_record(post), rng=rng))
            events.extend(noise_events(rng, noise))
        return self.publish(events)

    def delete_posts(self, posts: Iterable[SeedPost]) -> list[int]:
        return self.publish(commit_delete(p.did, p.rkey) for p in posts)

    def drop_after(self, frames: int) -> None:
        """Cut the NEXT connection (no close frame) after it received *frames* frames."""
        self._call(self._drop_after.append, frames)

    def refuse_next(self, count: int = 1, *, retry_after: float = 1.0) -> None:
        """Answer the next *count* handshakes with 429 and ``Retry-After: retry_after``."""
        self._call(self._refuse.extend, [retry_after] * count)

    def drop_connections(self) -> None:
        """Cut every open connection now, without a close frame."""
        def cut() -> None:
            for conn in list(self._conns):
                conn.transport.abort()
        self._call(cut)

    def serve_firehose(self, frames: list[bytes]) -> None:
        """From now on every connection gets *frames* as fast as possible, then stays open."""
        self._call(setattr, self, "_firehose", frames)

    @property
    def last_time_us(self) -> int:
        return int(self._call(lambda: self._last_us))

    # -- loop side ------------------------------------------------------------------

    def _stamp(self) -> int:
        now = time.time_ns() // 1000
        self._last_us = max(now, self._last_us + 1)
        return self._last_us

    def _append(self, item: _Logged) -> None:
        self._log.append(item)
        for queue in self._queues:
            queue.put_nowait(item)

    def _publish_events(self, items: list[tuple[dict[str, Any], str | None]]) -> list[int]:
        stamps = []
        for event, collection in items:
            stamped = dict(event, time_us=self._stamp())
            stamps.append(stamped["time_us"])
            self._append(_Logged(stamped["time_us"], collection, _encode(stamped)))
        return stamps

    def _publish_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._append(_Logged(self._stamp(), None, frame))

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if self._refuse:
            self.refusals.append(time.monotonic())
            response = _http_error(HTTPStatus.TOO_MANY_REQUESTS, "rate limited")
            response.headers["Retry-After"] = f"{self._refuse.pop(0):g}"
            return response
        if url.path != "/subscribe":
            return _http_error(HTTPStatus.NOT_FOUND, "not found")
        params = parse_qs(url.query)
        cursor = params.get("cursor", [None])[0]
        if cursor is not None:
            try:
                int(cursor)
            except ValueError:
                return _http_error(HTTPStatus.BAD_REQUEST, "invalid cursor")
        return None

    async def _handler(self, conn: ServerConnection) -> None:
        assert conn.request is not None
        params = parse_qs(urlsplit(conn.request.path).query)
        wanted = tuple(params.get("wantedCollections", []))
        raw_cursor = params.get("cursor", [None])[0]
        cursor = int(raw_cursor) if raw_cursor is not None else None
        self.subscriptions.append(Subscription(wanted, cursor, time.monotonic()))
        # noted when the connection closes, not when this handler next sends (a client
        # killed with SIGKILL is gone at once, though its handler waits for an event)
        closer = asyncio.get_running_loop().create_task(
            self._note_close(conn, len(self.subscriptions) - 1))
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)
        limit = self._drop_after.pop(0) if self._drop_after else None
        if self._firehose is not None:
            await self._send_firehose(conn, self._firehose)
            return
        queue: asyncio.Queue[_Logged | None] = asyncio.Queue()
        # register before taking the replay snapshot: no event falls in between
        self._queues.add(queue)
        self._conns.add(conn)
        snapshot = len(self._log)
        sent = 0
        try:
            if cursor is not None:
                for item in self._log[:snapshot]:
                    if item.time_us >= cursor and _wanted(item.collection, wanted):
                        if limit is not None and sent >= limit:
                            conn.transport.abort()
                            return
                        await conn.send(item.frame, text=True)
                        sent += 1
                        self.frames_sent += 1
            while True:
                got = await queue.get()
                if got is None:
                    return
                if not _wanted(got.collection, wanted):
                    continue
                if limit is not None and sent >= limit:
                    conn.transport.abort()
                    return
                await conn.send(got.frame, text=True)
                sent += 1
                self.frames_sent += 1
        except ConnectionClosed:
            return
        finally:
            self._queues.discard(queue)
            self._conns.discard(conn)

    async def _note_close(self, conn: ServerConnection, index: int) -> None:
        await conn.wait_closed()
        self.closed_at[index] = time.monotonic()

    def overlaps(self) -> list[tuple[int, int, float]]:
        """Pairs of connections that were open at the same time, and for how long (s)."""
        now = time.monotonic()
        spans = [(sub.at, self.closed_at.get(i, now)) for i, sub in enumerate(self.subscriptions)]
        out = []
        for i, (a0, a1) in enumerate(spans):
            for j in range(i + 1, len(spans)):
                b0, b1 = spans[j]
                both = min(a1, b1) - max(a0, b0)
                if both > 0:
                    out.append((i, j, both))
        return out

    async def _send_firehose(self, conn: ServerConnection, frames: list[bytes]) -> None:
        try:
            for frame in frames:
                await conn.send(frame, text=True)
            self.frames_sent += len(frames)
            await conn.wait_closed()
        except ConnectionClosed:
            return


def _http_error(status: HTTPStatus, message: str) -> Response:
    body = json.dumps({"error": message}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


# ---------------------------------------------------------------------------- firehose


def firehose_frames(count: int, *, match: float = 0.01, seed: int = 11,
                    start_us: int | None = None) -> tuple[list[bytes], int]:
    """*count* realistic frames, a share *match* of them posts with a followed tag.

    Returns (frames, number of matching posts). ``time_us`` grows by 1 µs per
    frame from *start_us* so a consumer's cursor reaches exactly the last one.
    """
    rng = random.Random(seed)
    now_us = start_us if start_us is not None else time.time_ns() // 1000
    frames: list[bytes] = []
    matching = 0
    pool = noise_events(rng, 512, with_deletes=True)
    pool = [e for e in pool if e["kind"] != "commit" or e["commit"]["collection"] == POST]
    for i in range(count):
        time_us = now_us + i
        if rng.random() < match:
            tag = rng.choice(TAGS)
            text = f"Post {i} about this. #{DISPLAY[tag]}"
            start = text.encode().find(b"#")
            record = {"$type": POST, "text": text, "createdAt": _iso(datetime.now(UTC)),
                      "langs": ["en"],
                      "facets": [{"$type": "app.bsky.richtext.facet",
                                  "index": {"byteStart": start, "byteEnd": len(text.encode())},
                                  "features": [{"$type": "app.bsky.richtext.facet#tag",
                                                "tag": DISPLAY[tag]}]}]}
            event = commit_create(f"did:plc:hose{i % 997:04d}", f"3lhose{i:09d}", record,
                                  rng=rng)
            matching += 1
        else:
            event = dict(pool[i % len(pool)])
            if event["kind"] == "commit":
                event["commit"] = dict(event["commit"], rkey=f"3lnh{i:09d}")
        event["time_us"] = time_us
        frames.append(_encode(event))
    return frames, matching


# ---------------------------------------------------------------------------- by hand


def start_jetstream_fake(world: World, *, port: int = 0, rate: float = 20.0,
                         noise: int = 3) -> JetstreamFake:
    """A fake that plays the world's Bluesky posts (with noise) once a client connects,
    *rate* events per second, then keeps sending noise so the cursor moves."""
    fake = JetstreamFake(port=port)

    def play() -> None:
        try:
            fake.wait_for_subscribers(1, timeout=24 * 3600)
        except (TimeoutError, RuntimeError):
            return
        rng = random.Random(5)
        for post in world.bluesky_posts():
            for event in [commit_create(post.did, post.rkey, bluesky_record(post), rng=rng),
                          *noise_events(rng, noise)]:
                try:
                    fake.publish([event])
                except RuntimeError:
                    return
                time.sleep(1.0 / rate)
        while fake._thread.is_alive():
            try:
                fake.publish(noise_events(rng, 1))
            except RuntimeError:
                return
            time.sleep(1.0)

    threading.Thread(target=play, name="fake-jetstream-player", daemon=True).start()
    return fake


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--firehose", type=int, default=0,
                        help="serve N pre-built frames as fast as possible to each client")
    parser.add_argument("--match", type=float, default=0.01,
                        help="share of firehose frames that carry a followed tag")
    args = parser.parse_args(argv)
    if args.firehose:
        frames, matching = firehose_frames(args.firehose, match=args.match)
        fake = JetstreamFake(port=args.port)
        fake.serve_firehose(frames)
        last = json.loads(frames[-1])["time_us"]
        print(json.dumps({"url": fake.url, "frames": len(frames), "matching": matching,
                          "last_time_us": last, "bytes": sum(map(len, frames))}), flush=True)
    else:
        fake = start_jetstream_fake(World())
        print(f"jetstream  {fake.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
