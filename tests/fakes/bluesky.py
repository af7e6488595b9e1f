"""A fake Bluesky AppView + PDS on 127.0.0.1 serving the World's Bluesky posts.

* ``GET /xrpc/app.bsky.feed.searchPosts``: ``q`` (``#tag`` terms are required
  tags), repeatable ``tag`` (AND, on facet tags and ``record.tags``),
  ``sort=latest`` (by indexedAt), ``limit`` 1–100 (default 25), an
  offset-like ``cursor`` absent on the last page; ``{cursor?, hitsTotal, posts}``.
* ``GET /xrpc/app.bsky.feed.getPosts``: ``uris`` 1–25; deleted posts left out.
* ``POST /xrpc/com.atproto.server.createSession`` / ``refreshSession``.
* ``RateLimit-Limit/Remaining/Reset(epoch)/Policy`` on every answer; 429 with
  ``Retry-After`` and ``RateLimitExceeded``.
* ``require_auth=True``: unauthenticated search gets 403 ``AuthMissing``;
  ``expire_tokens()`` makes issued access tokens answer 400 ``ExpiredToken``.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.data import SeedPost, World, bluesky_record
from tests.fakes.server import (
    FakeBase,
    Faults,
    RateWindow,
    RunningServer,
    admin_routes,
    apply_fault,
    iso,
)

__all__ = ["BlueskyFake", "start_bluesky_fake"]

IDENTIFIER = "researcher.bsky.social"
APP_PASSWORD = "fake-app-pass-word"


class BlueskyFake(FakeBase):
    def __init__(self, world: World, *, require_auth: bool = False,
                 identifier: str = IDENTIFIER, password: str = APP_PASSWORD) -> None:
        super().__init__()
        self.world = world
        self.require_auth = require_auth
        # as public.api.bsky.app in 2025: page 1 without a login, but no paging
        self.refuse_unauthenticated_cursor = False
        self.identifier = identifier
        self.password = password
        self._lock = threading.Lock()
        self.access: set[str] = set()
        self.expired: set[str] = set()
        self.refresh: set[str] = set()
        self.sessions_created = 0
        self.sessions_refreshed = 0
        self.corruptions: dict[str, dict[str, Any]] = {}
        self.server: RunningServer | None = None
        self.rate = RateWindow(3000, 300)
        # faults of createSession, apart from the search queue
        self.session_faults = Faults()
        self.app = Starlette(routes=[
            Route("/xrpc/app.bsky.feed.searchPosts", self.search),
            Route("/xrpc/app.bsky.feed.getPosts", self.get_posts),
            Route("/xrpc/com.atproto.server.createSession", self.create_session,
                  methods=["POST"]),
            Route("/xrpc/com.atproto.server.refreshSession", self.refresh_session,
                  methods=["POST"]),
            *admin_routes(self, self._admin_add, self._admin_expected),
        ])

    # -- control ----------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None, "fake not started"
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def set_rate_limit(self, limit: int, window: float) -> None:
        self.rate = RateWindow(limit, window)

    def expire_tokens(self) -> None:
        """Every access token issued so far now answers 400 ExpiredToken."""
        with self._lock:
            self.expired |= self.access
            self.access.clear()

    def corrupt(self, post: SeedPost, path: str, value: Any) -> None:
        """Serve *post* with a field replaced; *path* is ``field`` or ``record.field``."""
        self.corruptions.setdefault(post.uri, {})[path] = value

    # -- payloads ---------------------------------------------------------------

    def post_view(self, post: SeedPost) -> dict[str, Any]:
        view: dict[str, Any] = {
            "uri": post.uri,
            "cid": f"bafyreifake{post.n:010d}",
            "author": {"did": post.did, "handle": f"{post.did.rsplit(':', 1)[-1]}.bsky.social",
                       "displayName": "", "labels": []},
            "record": bluesky_record(post),
            "replyCount": 0, "repostCount": post.n % 4, "likeCount": post.n % 9,
            "quoteCount": 0,
            "indexedAt": iso(post.indexed_at),
            "labels": [],
        }
        for path, value in self.corruptions.get(post.uri, {}).items():
            target = view
            *parents, last = path.split(".")
            for part in parents:
                target = target[part]
            target[last] = value
        return view

    def _headers(self, remaining: int, reset: float) -> dict[str, str]:
        assert self.rate is not None
        return {"RateLimit-Limit": str(self.rate.limit), "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(int(reset)),
                "RateLimit-Policy": f"{self.rate.limit};w={int(self.rate.window)}"}

    def _limited(self, seconds: float) -> Response:
        limit = self.rate.limit if self.rate else 3000
        headers = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": "0",
                   "RateLimit-Reset": str(int(time.time() + seconds)),
                   "Retry-After": f"{max(seconds, 0):g}"}
        return JSONResponse({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                            status_code=429, headers=headers)

    # -- handlers ---------------------------------------------------------------

    def _auth(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            token = header[7:]
            with self._lock:
                if token in self.access:
                    return None
                if token in self.expired:
                    return JSONResponse({"error": "ExpiredToken", "message": "Token has expired"},
                                        status_code=400)
            return JSONResponse({"error": "InvalidToken", "message": "Token could not be verified"},
                                status_code=401)
        if self.require_auth:
            return JSONResponse({"error": "AuthMissing", "message": "Authentication Required"},
                                status_code=403)
        if self.refuse_unauthenticated_cursor and request.query_params.get("cursor"):
            return Response("Request forbidden by administrative rules", status_code=403,
                            media_type="text/plain")
        return None

    async def search(self, request: Request) -> Response:
        self.record(request)
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._search(request), self._limited)
        return self._search(request)

    def _search(self, request: Request) -> Response:
        headers: dict[str, str] = {}
        if self.rate is not None:
            allowed, remaining, reset = self.rate.hit()
            if not allowed:
                return self._limited(reset - time.time())
            headers = self._headers(remaining, reset)
        refused = self._auth(request)
        if refused is not None:
            refused.headers.update(headers)
            return refused
        params = request.query_params
        q = params.get("q")
        if not q:
            return JSONResponse({"error": "InvalidRequest",
                                 "message": 'Error: Params must have the property "q"'},
                                status_code=400, headers=headers)
        try:
            limit = int(params.get("limit", "25"))
            offset = int(params.get("cursor", "0"))
        except ValueError:
            return JSONResponse({"error": "InvalidRequest", "message": "bad limit or cursor"},
                                status_code=400, headers=headers)
        if not 1 <= limit <= 100:
            return JSONResponse({"error": "InvalidRequest",
                                 "message": "limit must be between 1 and 100"},
                                status_code=400, headers=headers)
        wanted = {t.lower() for t in params.getlist("tag")}
        wanted |= {w[1:].lower() for w in q.split() if w.startswith("#") and len(w) > 1}
        hits = [p for p in self.world.bluesky_posts() if wanted <= set(p.tags)]
        hits.sort(key=lambda p: (p.indexed_at, p.uri), reverse=True)
        page = hits[offset: offset + limit]
        body: dict[str, Any] = {"hitsTotal": len(hits),
                                "posts": [self.post_view(p) for p in page]}
        if offset + limit < len(hits):
            body["cursor"] = str(offset + limit)
        return JSONResponse(body, headers=headers)

    async def get_posts(self, request: Request) -> Response:
        """``getPosts?uris=…`` (1–25): the views of the posts that exist, in the order
        asked; a deleted one (``World.delete``) is simply left out, as the AppView does."""
        self.record(request)
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._get_posts(request), self._limited)
        return self._get_posts(request)

    def _get_posts(self, request: Request) -> Response:
        uris = request.query_params.getlist("uris")
        if not 1 <= len(uris) <= 25:
            return JSONResponse({"error": "InvalidRequest",
                                 "message": "uris must hold 1 to 25 items"}, status_code=400)
        held = {p.uri: p for p in self.world.bluesky_posts()}
        return JSONResponse({"posts": [self.post_view(held[u]) for u in uris if u in held]})

    def _issue(self) -> dict[str, Any]:
        access, refresh = secrets.token_hex(12), secrets.token_hex(12)
        with self._lock:
            self.access.add(access)
            self.refresh.add(refresh)
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.identifier,
                "did": "did:plc:fakeresearcher", "active": True}

    async def create_session(self, request: Request) -> Response:
        self.record(request)
        fault = self.session_faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: JSONResponse(self._issue()), self._limited)
        try:
            data = await request.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("identifier") != self.identifier \
                or data.get("password") != self.password:
            return JSONResponse({"error": "AuthenticationRequired",
                                 "message": "Invalid identifier or password"}, status_code=401)
        self.sessions_created += 1
        return JSONResponse(self._issue())

    async def refresh_session(self, request: Request) -> Response:
        self.record(request)
        header = request.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self._lock:
            valid = token in self.refresh
            self.refresh.discard(token)
        if not valid:
            return JSONResponse({"error": "ExpiredToken", "message": "Token has expired"},
                                status_code=400)
        self.sessions_refreshed += 1
        return JSONResponse(self._issue())

    # -- admin --------------------------------------------------------------------

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        post = self.world.add_bluesky_post(data.get("tags") or ["metoo"])
        return {"uri": post.uri}

    def _admin_expected(self) -> dict[str, Any]:
        return {"tags": self.world.expected_tag_counts(["bluesky"]),
                "posts": len(self.world.expected_keys(["bluesky"]))}


def start_bluesky_fake(world: World, *, require_auth: bool = False, port: int = 0
                       ) -> BlueskyFake:
    """Start the fake AppView/PDS on 127.0.0.1; ``stop()`` it when done."""
    from tests.fakes.server import run_app

    fake = BlueskyFake(world, require_auth=require_auth)
    fake.server = run_app(fake.app, "bluesky", port)
    return fake
