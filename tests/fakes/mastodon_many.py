"""Many fake Mastodon instances from one server: one port per instance, one request log.

Cluster tests and ``benchmarks/cluster.py`` need hundreds of "instances", each
its own host to the service (the HTTP transport keys its budget and rate-limit
state by ``host:port``, :func:`monitor.sources.ratelimit.host_of`), without
hundreds of servers. :class:`ManyMastodon` listens on *count* sockets of one
uvicorn server; the port a request arrived on says which instance it is for.
``*.localhost`` names do not resolve here (no nss-myhostname), so distinct
ports, all on 127.0.0.1, are the distinct hosts.

Each instance serves its own statuses (``origin`` ``iN.example``, so the uri
differs per instance) and some federated from another instance (the same uri
with a local id: two routes, one stored row). The timeline implements what
the collector uses of ``GET /api/v1/timelines/tag/:tag``: newest first,
``limit``, ``max_id`` / ``since_id`` / ``min_id``, and ``Link`` (next/prev).

Knobs:

* ``latency``: every API answer waits this long (a far-away instance);
* ``client_cap``: at most this many requests of one client in flight at once,
  the client told apart by its User-Agent (``http.contact`` differs per
  process): a per-IP budget as a platform enforces it, server side;
* ``rate``: a per-instance fixed window (``(limit, seconds)``); a request over
  it gets 429 with Mastodon's headers and is counted in :attr:`refused`.

The log (:attr:`log`, one :class:`Hit` per API request, stamped on arrival)
lets a test compute each host's busiest window (:meth:`ManyMastodon.max_in_window`)
and compare it with the configured budget.
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.store.buckets import bucket_start
from tests.fakes.data import _SENTENCES, DISPLAY, TAGS, SeedPost, snowflake
from tests.fakes.seeds import Expected
from tests.fakes.server import RateWindow, iso

__all__ = ["Hit", "ManyMastodon", "max_in_window"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One API request as the fake saw it arrive."""

    at: float  # time.monotonic()
    port: int  # which instance
    path: str
    tag: str | None  # the timeline's tag (None for other endpoints)
    client: str  # the User-Agent
    status: int = 200


def _id_key(value: str) -> tuple[int, str]:
    return (len(value), value)


def max_in_window(times: Iterable[float], window: float) -> int:
    """The most of *times* that fall in any half-open interval of length *window*."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Instance:
    """One instance's statuses, sorted by local id (oldest first)."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.entries: list[tuple[str, SeedPost]] = []  # (local id, post)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, sid: str, post: SeedPost) -> None:
        self.entries.append((sid, post))
        self.entries.sort(key=lambda e: _id_key(e[0]))


class ManyMastodon:
    """*count* fake Mastodon instances on 127.0.0.1, one port each, in one server thread.

    *posts* statuses are spread over the instances and over the last *hours*;
    a share *federated* of them is also on a second instance. Thread-safe:
    tests add posts (:meth:`add_post`) while it serves.
    """

    def __init__(self, count: int, *, posts: int = 0, hours: float = 2.0, seed: int = 5,
                 tags: tuple[str, ...] = TAGS, federated: float = 0.2, latency: float = 0.0,
                 client_cap: int | None = None, rate: tuple[int, float] | None = None,
                 page_cap: int = 40) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.tags = tags
        self.latency = latency
        self.client_cap = client_cap
        self.page_cap = page_cap
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.log: list[Hit] = []
        self.refused: Counter[int] = Counter()  # port -> 429s sent
        self._rate = rate
        self._windows: dict[int, RateWindow] = {}
        self._caps: dict[str, asyncio.Semaphore] = {}
        self._inflight: Counter[str] = Counter()
        self.peak_inflight: Counter[str] = Counter()  # client -> most requests at once
        self._host_inflight: Counter[int] = Counter()
        # port -> most requests in flight at once, whichever processes sent them
        self.peak_host_inflight: Counter[int] = Counter()
        # (port, client, arrived, answered): to say who overlapped whom
        self.spans: list[tuple[int, str, float, float]] = []
        self._seq = 0
        self._posts: dict[str, SeedPost] = {}  # uri -> post
        self._sockets = [self._bind() for _ in range(count)]
        self.instances = [_Instance(f"i{n}", s.getsockname()[1])
                          for n, s in enumerate(self._sockets)]
        self._by_port = {inst.port: inst for inst in self.instances}
        start = bucket_start(datetime.now(UTC) - timedelta(hours=hours, minutes=5))
        for _ in range(posts):
            created = start + timedelta(seconds=self.rng.uniform(0, hours * 3600))
            self._add(created.replace(microsecond=self.rng.randrange(1000) * 1000),
                      None, None, federated)
        app = Starlette(routes=[
            Route("/api/v1/timelines/tag/{tag}", self._timeline),
            Route("/api/v1/statuses/{id}", self._show_status),
        ])
        config = uvicorn.Config(app, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1, access_log=False,
                                backlog=4096, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": self._sockets},
                                        name="fake-mastodon-many", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake mastodon instances did not start")
            time.sleep(0.01)

    @staticmethod
    def _bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        return sock

    # -- control --------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [inst.url for inst in self.instances]

    def host(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        for sock in self._sockets:
            sock.close()

    def _add(self, created: datetime, tags: tuple[str, ...] | None, home: int | None,
             federated: float) -> SeedPost:
        with self.lock:
            if tags is None:
                count = self.rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
                tags = tuple(self.rng.sample(self.tags, min(count, len(self.tags))))
            index = self.rng.randrange(len(self.instances)) if home is None else home
            names = [index]
            if len(self.instances) > 1 and self.rng.random() < federated:
                other = self.rng.randrange(len(self.instances) - 1)
                names.append(other + (other >= index))
            sentence, lang = self.rng.choice(_SENTENCES)
            n = len(self._posts) + 1
            ids: dict[str, str] = {}
            for i in names:
                self._seq += 1
                ids[self.instances[i].name] = snowflake(created, self._seq)
            text = sentence + " " + " ".join("#" + DISPLAY.get(t, t) for t in tags)
            post = SeedPost(n=n, platform="mastodon", created_at=created, tags=tags, text=text,
                            lang=lang, author=f"user{self.rng.randrange(40)}",
                            instances=tuple(self.instances[i].name for i in names), ids=ids,
                            origin=f"{self.instances[index].name}.example")
            self._posts[post.uri] = post
            for i in names:
                inst = self.instances[i]
                inst.add(ids[inst.name], post)
            return post

    def add_post(self, tags: Iterable[str] | None = None, *, instance: int | None = None,
                 federated: float = 0.2) -> SeedPost:
        """A status posted now (its id is the newest, so polling picks it up)."""
        return self._add(datetime.now(UTC), tuple(tags) if tags else None, instance, federated)

    def posts(self) -> list[SeedPost]:
        with self.lock:
            return list(self._posts.values())

    def expected(self) -> Expected:
        """(platform, key) -> (created_at, tags) of every distinct status served."""
        return {("mastodon", p.uri): (p.created_at, p.tags) for p in self.posts()}

    # -- the request log --------------------------------------------------------------

    def hits(self, since: float = 0.0, *, timelines_only: bool = True) -> list[Hit]:
        return [h for h in list(self.log)
                if h.at >= since and (h.tag is not None or not timelines_only)]

    def times_by_host(self, since: float = 0.0) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for hit in self.hits(since, timelines_only=False):
            out.setdefault(self.host(hit.port), []).append(hit.at)
        return out

    def max_in_window(self, window: float, since: float = 0.0) -> dict[str, int]:
        """Per host: the most requests that arrived within any *window* seconds."""
        return {host: max_in_window(times, window)
                for host, times in self.times_by_host(since).items()}

    def over_budget(self, window: float, allowed: int, since: float = 0.0) -> dict[str, int]:
        """Hosts that got more than *allowed* requests within some *window* seconds."""
        return {h: n for h, n in self.max_in_window(window, since).items() if n > allowed}

    def overlapping(self, port: int) -> list[tuple[str, str, float]]:
        """Requests to one instance that were in flight together: (client, client, when)."""
        spans = sorted((a, b, c) for p, c, a, b in list(self.spans) if p == port)
        out = []
        for i, (_, a1, c0) in enumerate(spans):
            for b0, _, c1 in spans[i + 1:]:
                if b0 >= a1:
                    break
                out.append((c0, c1, b0))
        return out

    def clients(self, since: float = 0.0) -> Counter[str]:
        return Counter(h.client for h in self.hits(since))

    # -- handlers -----------------------------------------------------------------------

    def _instance(self, request: Request) -> _Instance:
        port = int(request.scope["server"][1])
        return self._by_port[port]

    async def _serve(self, request: Request, tag: str | None, answer: Any) -> Response:
        inst = self._instance(request)
        client = request.headers.get("user-agent", "")
        status = 200
        if self._rate is not None:
            window = self._windows.setdefault(inst.port, RateWindow(*self._rate))
            allowed, _, reset = window.hit()
            if not allowed:
                status = 429
        self.log.append(Hit(time.monotonic(), inst.port, request.url.path, tag, client, status))
        if status == 429:
            self.refused[inst.port] += 1
            when = datetime.fromtimestamp(reset, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return JSONResponse({"error": "Too many requests"}, status_code=429, headers={
                "X-RateLimit-Limit": str(self._rate[0] if self._rate else 0),
                "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": when})
        cap = None
        if self.client_cap is not None:
            cap = self._caps.get(client)
            if cap is None:
                cap = self._caps[client] = asyncio.Semaphore(self.client_cap)
            await cap.acquire()
        arrived = time.monotonic()
        self._inflight[client] += 1
        self._host_inflight[inst.port] += 1
        self.peak_inflight[client] = max(self.peak_inflight[client], self._inflight[client])
        self.peak_host_inflight[inst.port] = max(self.peak_host_inflight[inst.port],
                                                 self._host_inflight[inst.port])
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return answer(inst)
        finally:
            self.spans.append((inst.port, client, arrived, time.monotonic()))
            self._inflight[client] -= 1
            self._host_inflight[inst.port] -= 1
            if cap is not None:
                cap.release()

    async def _timeline(self, request: Request) -> Response:
        tag = request.path_params["tag"].lower()
        return await self._serve(request, tag, lambda inst: self._page(inst, tag, request))

    def _page(self, inst: _Instance, tag: str, request: Request) -> Response:
        q = request.query_params
        try:
            limit = min(self.page_cap, max(1, int(q.get("limit", "20"))))
        except ValueError:
            limit = 20
        with self.lock:
            keep = [(sid, p) for sid, p in inst.entries if tag in p.tags]
        if q.get("max_id"):
            bound = _id_key(q["max_id"])
            keep = [(i, p) for i, p in keep if _id_key(i) < bound]
        for name in ("since_id", "min_id"):
            if q.get(name):
                low = _id_key(q[name])
                keep = [(i, p) for i, p in keep if _id_key(i) > low]
        page = keep[:limit] if q.get("min_id") and not q.get("since_id") else keep[-limit:]
        page.reverse()  # newest first
        headers: dict[str, str] = {}
        if page:
            base = f"{inst.url}/api/v1/timelines/tag/{tag}"
            extra = {"limit": str(limit)} if "limit" in q else {}
            nxt = urlencode({**extra, "max_id": page[-1][0]})
            prev = urlencode({**extra, "min_id": page[0][0]})
            headers["Link"] = f'<{base}?{nxt}>; rel="next", <{base}?{prev}>; rel="prev"'
        return JSONResponse([_status(inst, sid, p) for sid, p in page], headers=headers)

    async def _show_status(self, request: Request) -> Response:
        sid = request.path_params["id"]

        def answer(inst: _Instance) -> Response:
            with self.lock:
                for local, post in inst.entries:
                    if local == sid:
                        return JSONResponse(_status(inst, sid, post))
            return JSONResponse({"error": "Record not found"}, status_code=404)

        return await self._serve(request, None, answer)


def _status(inst: _Instance, sid: str, post: SeedPost) -> dict[str, Any]:
    """The Mastodon Status entity of *post* as *inst* serves it (its local id *sid*)."""
    names = [DISPLAY[t] if post.n % 2 and t in DISPLAY else t for t in post.tags]
    return {
        "id": sid, "created_at": iso(post.created_at), "in_reply_to_id": None,
        "in_reply_to_account_id": None, "sensitive": False, "spoiler_text": "",
        "visibility": "public", "language": post.lang, "uri": post.uri,
        "url": f"https://{post.origin}/@{post.author}/{post.n:08d}",
        "replies_count": 0, "reblogs_count": 0, "favourites_count": 0, "edited_at": None,
        "content": post.html(), "reblog": None,
        "account": {"id": str(100000 + post.n % 40), "username": post.author,
                    "acct": f"{post.author}@{post.origin}", "display_name": post.author.title(),
                    "url": f"https://{post.origin}/@{post.author}", "bot": False},
        "media_attachments": [], "mentions": [],
        "tags": [{"name": name, "url": f"{inst.url}/tags/{name.lower()}"} for name in names],
        "emojis": [], "poll": None,
    }
