"""A fake Mastodon instance on 127.0.0.1 serving the World's statuses.

Implements ``GET /api/v1/timelines/tag/:hashtag`` the way Mastodon does:
newest-first arrays, ``max_id`` / ``since_id`` / ``min_id`` (the page
immediately newer), ``limit`` default 20 max 40, a ``Link`` header with
``rel="next"`` (max_id) and ``rel="prev"`` (min_id) only on non-empty pages,
``X-RateLimit-*`` headers with an ISO reset time, 429 without Retry-After,
401 when a token is required, 404 for an unknown tag. Also
``GET /api/v1/statuses/:id`` (404 after ``World.delete``),
``GET /api/v2/instance``, ``GET /api/v1/streaming/health`` and the live hashtag
stream ``GET /api/v1/streaming/hashtag?tag=`` (SSE: ``event: update`` with the
Status JSON, ``event: delete`` with the id, ``event: status.update`` with an
edited Status (:meth:`MastodonFake.edit`), ``:thump`` heartbeats), whose
connect takes faults from its own queue, ``stream_faults``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.data import DISPLAY, TAGS, SeedPost, World
from tests.fakes.server import (
    FakeBase,
    Faults,
    RateWindow,
    RunningServer,
    admin_routes,
    apply_fault,
    iso,
)

__all__ = ["DELETE", "MastodonFake", "start_mastodon_fake"]

DELETE = object()  # marker for corrupt(): drop the field entirely


def _id_key(value: str) -> tuple[int, str]:
    return (len(value), value)


class MastodonFake(FakeBase):
    """One fake instance. ``instance`` is "a" or "b" of the World's instances."""

    def __init__(self, world: World, instance: str = "a", *, token: str | None = None) -> None:
        super().__init__()
        self.world = world
        self.instance = instance
        self.token = token  # when set, the timeline needs "Authorization: Bearer <token>"
        self.corruptions: dict[str, dict[str, Any]] = {}
        self.server: RunningServer | None = None
        # live (SSE) hashtag stream: "open", "token" (needs the token) or "refuse" (404)
        self.streaming = "open"
        self.heartbeat = 1.0
        self.deleted_ids: list[str] = []
        # edited statuses and the tags whose streams announce the edit (old and new)
        self.edited: list[tuple[SeedPost, frozenset[str]]] = []
        self._generation = 0  # drop_streams() bumps it and open streams end
        # faults of the live stream's connect, apart from the timeline's queue
        self.stream_faults = Faults()
        self.app = Starlette(routes=[
            Route("/api/v1/timelines/tag/{tag}", self.timeline),
            Route("/api/v1/statuses/{id}", self.show_status),
            Route("/api/v2/instance", self.instance_info),
            Route("/api/v1/streaming/health", self.health),
            Route("/api/v1/streaming/hashtag", self.stream_hashtag),
            *admin_routes(self, self._admin_add, self._admin_expected),
        ])

    # -- control ----------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None, "fake not started"
        return self.server.url

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def set_rate_limit(self, limit: int, window: float) -> None:
        self.rate = RateWindow(limit, window)

    def corrupt(self, post: SeedPost, field: str, value: Any) -> None:
        """Serve *post* with *field* replaced by *value* (or removed with DELETE)."""
        self.corruptions.setdefault(post.uri, {})[field] = value

    def delete(self, post: SeedPost) -> None:
        """Announce a deletion of *post* on the live streams."""
        self.deleted_ids.append(post.ids[self.instance])

    def edit(self, post: SeedPost, text: str, tags: Sequence[str],
             language: str | None = "en") -> None:
        """Edit *post* as its author would: served with the new text, tags and language
        from now on (``edited_at`` set), and announced on the live streams of its old
        and new tags as ``status.update`` with the whole new Status."""
        words = {t: DISPLAY.get(t, t) for t in tags}
        body = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        links = " ".join(f'<a href="https://origin.example/tags/{t}" class="mention hashtag" '
                         f'rel="tag">#<span>{w}</span></a>' for t, w in words.items())
        self.corrupt(post, "content", f"<p>{body} {links}</p>")
        self.corrupt(post, "tags", [{"name": w, "url": f"{self.url}/tags/{t}"}
                                    for t, w in words.items()])
        self.corrupt(post, "language", language)
        self.corrupt(post, "edited_at", iso(datetime.now(UTC)))
        self.edited.append((post, frozenset(post.tags) | frozenset(tags)))

    def drop_streams(self) -> None:
        """Close every open live stream (clients must reconnect)."""
        self._generation += 1

    def status_id(self, post: SeedPost) -> str:
        return post.ids[self.instance]

    # -- payloads ---------------------------------------------------------------

    def status(self, post: SeedPost) -> dict[str, Any]:
        sid = post.ids[self.instance]
        tag_names = [DISPLAY[t] if post.n % 2 and t in DISPLAY else t for t in post.tags]
        status: dict[str, Any] = {
            "id": sid,
            "created_at": iso(post.created_at),
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": post.sensitive,
            "spoiler_text": post.spoiler_text,
            "visibility": "public",
            "language": post.lang,
            "uri": post.uri,
            "url": f"https://{post.origin}/@{post.author}/{post.n:08d}",
            "replies_count": post.n % 3,
            "reblogs_count": post.n % 5,
            "favourites_count": post.n % 7,
            "edited_at": None,
            "content": post.html(),
            "reblog": None,
            "account": {
                "id": str(100000 + post.n % 40),
                "username": post.author,
                "acct": f"{post.author}@origin.example",
                "display_name": post.author.title(),
                "url": f"https://origin.example/@{post.author}",
                "bot": False,
            },
            "media_attachments": [],
            "mentions": [],
            "tags": [{"name": name, "url": f"{self.url}/tags/{name.lower()}"}
                     for name in tag_names],
            "emojis": [],
            "poll": None,
        }
        for field, value in self.corruptions.get(post.uri, {}).items():
            if value is DELETE:
                status.pop(field, None)
            else:
                status[field] = value
        return status

    def _rate_headers(self, remaining: int, reset_epoch: float) -> dict[str, str]:
        assert self.rate is not None
        reset = datetime.fromtimestamp(reset_epoch, tz=UTC)
        return {
            "X-RateLimit-Limit": str(self.rate.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    def _limited(self, seconds: float) -> Response:
        reset = datetime.now(UTC).timestamp() + seconds
        headers = {
            "X-RateLimit-Limit": str(self.rate.limit if self.rate else 300),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": datetime.fromtimestamp(reset, tz=UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        # Mastodon sends no Retry-After: the client must read X-RateLimit-Reset
        return JSONResponse({"error": "Too many requests"}, status_code=429, headers=headers)

    # -- handlers ---------------------------------------------------------------

    async def timeline(self, request: Request) -> Response:
        self.record(request)
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._timeline(request), self._limited)
        return self._timeline(request)

    def _timeline(self, request: Request) -> Response:
        headers: dict[str, str] = {}
        if self.rate is not None:
            allowed, remaining, reset = self.rate.hit()
            if not allowed:
                return self._limited(reset - datetime.now(UTC).timestamp())
            headers.update(self._rate_headers(remaining, reset))
        if self.token is not None and \
                request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "The access token is invalid"}, status_code=401,
                                headers=headers)
        tag = request.path_params["tag"].lower()
        q = request.query_params
        try:
            limit = min(40, max(1, int(q.get("limit", "20"))))
        except ValueError:
            limit = 20
        posts = [p for p in self.world.mastodon_posts(self.instance) if tag in p.tags]
        if not posts and tag not in TAGS:
            return JSONResponse({"error": "Record not found"}, status_code=404, headers=headers)
        posts.sort(key=lambda p: _id_key(p.ids[self.instance]))
        ids = [p.ids[self.instance] for p in posts]
        keep = list(zip(ids, posts, strict=True))
        if q.get("max_id"):
            bound = _id_key(q["max_id"])
            keep = [(i, p) for i, p in keep if _id_key(i) < bound]
        if q.get("since_id"):
            bound = _id_key(q["since_id"])
            keep = [(i, p) for i, p in keep if _id_key(i) > bound]
        if q.get("min_id"):
            bound = _id_key(q["min_id"])
            keep = [(i, p) for i, p in keep if _id_key(i) > bound]
        # min_id: the page immediately newer than it; otherwise the newest page
        page = keep[:limit] if q.get("min_id") and not q.get("since_id") else keep[-limit:]
        page.reverse()  # newest first, always
        body = [self.status(p) for _, p in page]
        if page:
            base = f"{self.url}/api/v1/timelines/tag/{tag}"
            extra = {"limit": str(limit)} if "limit" in q else {}
            nxt = urlencode({**extra, "max_id": page[-1][0]})
            prev = urlencode({**extra, "min_id": page[0][0]})
            headers["Link"] = f'<{base}?{nxt}>; rel="next", <{base}?{prev}>; rel="prev"'
        return JSONResponse(body, headers=headers)

    async def show_status(self, request: Request) -> Response:
        """``GET /api/v1/statuses/:id``: a status this instance holds, by its local id
        or, for a status posted here (``origin`` = this host), by the id in its uri;
        404 ``Record not found`` once deleted (``World.delete``)."""
        self.record(request)
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._show_status(request), self._limited)
        return self._show_status(request)

    def _show_status(self, request: Request) -> Response:
        sid = request.path_params["id"]
        for post in self.world.mastodon_posts():
            if self.instance not in post.instances:
                continue
            local = post.ids.get(self.instance) == sid
            if local or (post.origin == self.host and f"{post.n:08d}" == sid):
                return JSONResponse(self.status(post) if local else
                                    {**self.status(post), "id": sid})
        return JSONResponse({"error": "Record not found"}, status_code=404)

    async def instance_info(self, request: Request) -> Response:
        self.record(request)
        return JSONResponse({
            "domain": self.host, "title": f"Fake instance {self.instance}", "version": "4.5.0",
            "configuration": {
                "urls": {"streaming": self.url.replace("http", "ws", 1)},
                "timelines_access": {"hashtag_feeds": {
                    "local": "authenticated" if self.token else "public",
                    "remote": "authenticated" if self.token else "public"}},
            },
        })

    async def stream_hashtag(self, request: Request) -> Response:
        self.record(request)
        tag = (request.query_params.get("tag") or "").lower()
        if not tag:
            return JSONResponse({"error": "Unknown channel requested"}, status_code=400)
        fault = self.stream_faults.take()
        if fault is not None and fault.kind == "stall":
            await asyncio.sleep(fault.seconds)  # a slow connect, then the stream as usual
        elif fault is not None:
            return await apply_fault(fault, lambda: PlainTextResponse(""), self._limited)
        if self.streaming == "refuse":
            return JSONResponse({"error": "Not found"}, status_code=404)
        if self.streaming == "token" and \
                request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "Error while authenticating"}, status_code=401)

        def newest() -> tuple[int, str]:
            ids = [p.ids[self.instance] for p in self.world.mastodon_posts(self.instance)
                   if tag in p.tags]
            return max((_id_key(i) for i in ids), default=(0, ""))

        generation = self._generation

        async def events() -> AsyncIterator[str]:
            last = newest()
            deletes_sent = len(self.deleted_ids)
            edits_sent = len(self.edited)
            beat = time.monotonic()
            yield ":)\n"
            while generation == self._generation:
                await asyncio.sleep(0.02)
                fresh = [p for p in self.world.mastodon_posts(self.instance)
                         if tag in p.tags and _id_key(p.ids[self.instance]) > last]
                fresh.sort(key=lambda p: _id_key(p.ids[self.instance]))
                for post in fresh:
                    last = _id_key(post.ids[self.instance])
                    yield f"event: update\ndata: {json.dumps(self.status(post))}\n\n"
                while edits_sent < len(self.edited):
                    post, on = self.edited[edits_sent]
                    edits_sent += 1
                    if tag in on and self.instance in post.instances:
                        yield f"event: status.update\ndata: {json.dumps(self.status(post))}\n\n"
                while deletes_sent < len(self.deleted_ids):
                    yield f"event: delete\ndata: {self.deleted_ids[deletes_sent]}\n\n"
                    deletes_sent += 1
                if time.monotonic() - beat > self.heartbeat:
                    beat = time.monotonic()
                    yield ":thump\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("OK")

    # -- admin --------------------------------------------------------------------

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        tags = data.get("tags") or ["metoo"]
        instances = tuple(data.get("instances") or [self.instance])
        post = self.world.add_mastodon_post(tags, instances=instances)
        return {"uri": post.uri, "ids": post.ids}

    def _admin_expected(self) -> dict[str, Any]:
        return {"tags": self.world.expected_tag_counts(["mastodon"]),
                "posts": len(self.world.expected_keys(["mastodon"]))}


def start_mastodon_fake(world: World, instance: str = "a", *, token: str | None = None,
                        port: int = 0) -> MastodonFake:
    """Start a fake instance serving *world* on 127.0.0.1; ``stop()`` it when done."""
    from tests.fakes.server import run_app

    fake = MastodonFake(world, instance, token=token)
    fake.server = run_app(fake.app, f"mastodon-{instance}", port)
    return fake
