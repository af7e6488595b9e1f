"""A fake Reddit (www + oauth hosts in one server) on 127.0.0.1 with its own posts.

* ``POST /api/v1/access_token``: HTTP Basic ``client_id:client_secret`` and
  ``grant_type=client_credentials`` → ``{"access_token", "token_type":
  "bearer", "expires_in": 86400, "scope": "*"}``; wrong credentials: 401
  ``{"message": "Unauthorized", "error": 401}``.
* ``GET /search?q=&sort=new`` and ``GET /r/SUB/new``: ``Authorization:
  bearer`` required (401 otherwise; ``expire_tokens()`` makes issued tokens
  answer 401); ``limit`` (default 25, max 100), ``after`` / ``before``
  fullnames (an anchor that is no longer listed gives an empty listing, as on
  Reddit); ``{"kind": "Listing", "data": {"after", "before", "dist",
  "children": [{"kind": "t3", "data": {...}}]}}`` newest first. Search matches
  the query word anywhere in title or selftext, as a substring (Reddit's
  search is looser than a tag: the collector must filter).
* ``X-Ratelimit-Used/Remaining/Reset`` (reset = **seconds left** in the
  window) on every API answer; over the window 429 ``{"message": "Too Many
  Requests", "error": 429}`` with the same headers and no Retry-After.
* ``private`` subreddits answer 403 ``{"reason": "private", ...}``.
"""

from __future__ import annotations

import base64
import math
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.store.buckets import bucket_start
from tests.fakes.data import DISPLAY, TAGS
from tests.fakes.server import (
    FakeBase,
    RateWindow,
    RunningServer,
    admin_routes,
    apply_fault,
    run_app,
)

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "PLATFORM", "FakeRedditPost", "RedditFake",
           "start_reddit_fake"]

PLATFORM = "reddit"
CLIENT_ID = "fake-reddit-client"
CLIENT_SECRET = "fake-reddit-secret"
SUBREDDITS = ("TwoXChromosomes", "MensLib", "news")
_SENTENCES = ("Sharing my story, finally", "Ten years later, still here",
              "What changed at your workplace?", "Thank you all for listening",
              "Discussion thread")


def _b36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if not value:
            return out


@dataclass(frozen=True, slots=True)
class FakeRedditPost:
    id: str  # base36
    created_at: datetime
    subreddit: str
    title: str
    selftext: str
    author: str
    tags: tuple[str, ...]  # what a correct collector finds as tag words (normalised)
    over_18: bool = False

    @property
    def name(self) -> str:
        return f"t3_{self.id}"


class RedditFake(FakeBase):
    """One fake Reddit (see the module docstring)."""

    def __init__(self, *, seed: int = 3, posts: int = 60, hours: float = 2.0,
                 start: datetime | None = None) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.posts: list[FakeRedditPost] = []
        self.removed: set[str] = set()  # names no longer listed (deleted / removed)
        self.private: set[str] = set()
        self.tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.tokens_issued = 0
        self.corruptions: dict[str, dict[str, Any]] = {}
        self.server: RunningServer | None = None
        # Reddit's documented window: 600 requests per 10 minutes per client id
        self.rate = RateWindow(600, 600.0)
        self._n = 0
        if start is None:
            start = bucket_start(datetime.now(UTC) - timedelta(hours=hours, minutes=5))
        for offset in sorted(self.rng.uniform(0, hours * 3600) for _ in range(posts)):
            created = (start + timedelta(seconds=offset)).replace(microsecond=0)
            if self._n % 12 == 11:
                self._decoy(created)
            else:
                count = self.rng.choices([1, 2], weights=[3, 1])[0]
                self._add(created, tuple(self.rng.sample(TAGS, count)))
        self.app = Starlette(routes=[
            Route("/api/v1/access_token", self.access_token, methods=["POST"]),
            Route("/search", self.search),
            Route("/r/{sub}/new", self.subreddit_new),
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

    def _add(self, created: datetime, tags: tuple[str, ...], *, subreddit: str | None = None
             ) -> FakeRedditPost:
        with self.lock:
            self._n += 1
            words = " ".join("#" + DISPLAY.get(t, t) for t in tags)
            # the tag words sit in the title or in the body, Reddit has no hashtag field
            in_title = self.rng.random() < 0.5
            title = self.rng.choice(_SENTENCES) + (" " + words if in_title else "")
            body = "" if in_title and self.rng.random() < 0.5 else \
                "It took me a while to write this.\n\n" + ("" if in_title else words)
            post = FakeRedditPost(
                id=_b36(1_000_000 + self._n), created_at=created,
                subreddit=subreddit or self.rng.choice(SUBREDDITS), title=title,
                selftext=body, author=f"redditor{self.rng.randrange(30)}", tags=tags,
                over_18=self.rng.random() < 0.05)
            self.posts.append(post)
            return post

    def _decoy(self, created: datetime) -> FakeRedditPost:
        """A post search finds for "metoo" that carries no followed tag word."""
        with self.lock:
            self._n += 1
            post = FakeRedditPost(
                id=_b36(1_000_000 + self._n), created_at=created,
                subreddit=self.rng.choice(SUBREDDITS), title="The metoomovement archive",
                selftext="", author="archivist", tags=())
            self.posts.append(post)
            return post

    def add_post(self, tags: tuple[str, ...] = ("metoo",), *, subreddit: str | None = None,
                 created_at: datetime | None = None) -> FakeRedditPost:
        # whole seconds, so created_utc (a float) round-trips exactly
        return self._add(created_at or datetime.now(UTC).replace(microsecond=0), tags,
                         subreddit=subreddit)

    def remove(self, post: FakeRedditPost) -> None:
        """The post stops being listed (deleted by its author or removed by a moderator)."""
        with self.lock:
            self.removed.add(post.name)

    def corrupt(self, post: FakeRedditPost, field: str, value: Any) -> None:
        self.corruptions.setdefault(post.name, {})[field] = value

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = {t: 0.0 for t in self.tokens}

    def set_rate_limit(self, limit: int, window: float) -> None:
        self.rate = RateWindow(limit, window)

    def kept(self, tags: tuple[str, ...] = TAGS) -> list[FakeRedditPost]:
        with self.lock:
            return [p for p in self.posts if set(p.tags) & set(tags)
                    and p.name not in self.removed]

    def expected(self) -> dict[tuple[str, str], tuple[datetime, tuple[str, ...]]]:
        """(platform, key) → (created_at, tags) of every post the database must hold."""
        return {(PLATFORM, p.name): (p.created_at, p.tags) for p in self.kept()}

    def expected_keys(self) -> set[tuple[str, str]]:
        return {(PLATFORM, p.name) for p in self.kept()}

    def expected_tag_counts(self) -> dict[str, int]:
        return dict(Counter(t for p in self.kept() for t in p.tags))

    def expected_bucket_counts(self) -> dict[tuple[str, datetime], int]:
        return dict(Counter((t, bucket_start(p.created_at)) for p in self.kept()
                            for t in p.tags))

    # -- payloads ---------------------------------------------------------------

    def child(self, post: FakeRedditPost) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": post.id, "name": post.name, "subreddit": post.subreddit,
            "subreddit_name_prefixed": f"r/{post.subreddit}", "title": post.title,
            "selftext": post.selftext, "author": post.author,
            "created_utc": float(post.created_at.timestamp()),
            "permalink": f"/r/{post.subreddit}/comments/{post.id}/slug/",
            "url": f"https://www.reddit.com/r/{post.subreddit}/comments/{post.id}/slug/",
            "over_18": post.over_18, "spoiler": False, "score": 3, "num_comments": 1,
            "is_self": True,
        }
        for field, value in self.corruptions.get(post.name, {}).items():
            data[field] = value
        return {"kind": "t3", "data": data}

    def _headers(self, remaining: int, reset_epoch: float) -> dict[str, str]:
        used = (self.rate.limit if self.rate else 600) - remaining
        left = max(0, math.ceil(reset_epoch - time.time()))
        return {"x-ratelimit-used": str(used), "x-ratelimit-remaining": f"{remaining:.1f}",
                "x-ratelimit-reset": str(left)}

    def _limited(self, seconds: float) -> Response:
        headers = {"x-ratelimit-used": str(self.rate.limit if self.rate else 600),
                   "x-ratelimit-remaining": "0.0",
                   "x-ratelimit-reset": str(max(1, math.ceil(seconds)))}
        return JSONResponse({"message": "Too Many Requests", "error": 429}, status_code=429,
                            headers=headers)

    # -- handlers ---------------------------------------------------------------

    async def access_token(self, request: Request) -> Response:
        self.record(request)
        want = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        # parsed by hand: Starlette's form parser needs python-multipart
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if request.headers.get("authorization") != f"Basic {want}":
            return JSONResponse({"message": "Unauthorized", "error": 401}, status_code=401)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"})
        token = secrets.token_urlsafe(16)
        with self.lock:
            self.tokens[token] = time.monotonic() + 86400
            self.tokens_issued += 1
        return JSONResponse({"access_token": token, "token_type": "bearer",
                             "expires_in": 86400, "scope": "*"})

    async def search(self, request: Request) -> Response:
        return await self._listing(request, None)

    async def subreddit_new(self, request: Request) -> Response:
        return await self._listing(request, request.path_params["sub"])

    async def _listing(self, request: Request, sub: str | None) -> Response:
        self.record(request)
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._answer(request, sub), self._limited)
        return self._answer(request, sub)

    def _answer(self, request: Request, sub: str | None) -> Response:
        headers: dict[str, str] = {}
        if self.rate is not None:
            allowed, remaining, reset = self.rate.hit()
            if not allowed:
                return self._limited(reset - time.time())
            headers = self._headers(remaining, reset)
        auth = request.headers.get("authorization", "")
        token = auth.split(" ", 1)[1] if auth.lower().startswith("bearer ") else ""
        with self.lock:
            valid = self.tokens.get(token, 0.0) > time.monotonic()
        if not valid:
            return JSONResponse({"message": "Unauthorized", "error": 401}, status_code=401,
                                headers=headers)
        if sub is not None and sub.lower() in self.private:
            return JSONResponse({"reason": "private", "message": "Forbidden", "error": 403},
                                status_code=403, headers=headers)
        q = request.query_params
        try:
            limit = min(100, max(1, int(q.get("limit", "25"))))
        except ValueError:
            limit = 25
        with self.lock:
            listed = [p for p in self.posts if p.name not in self.removed]
        if sub is not None:
            listed = [p for p in listed if p.subreddit.lower() == sub.lower()]
        else:
            word = (q.get("q") or "").lower().lstrip("#")
            listed = [p for p in listed if word and word in (p.title + p.selftext).lower()]
        listed.sort(key=lambda p: (p.created_at, p.id), reverse=True)  # newest first
        names = [p.name for p in listed]
        more_newer = more_older = False
        if q.get("before"):
            if q["before"] not in names:
                page = []
            else:
                newer = listed[:names.index(q["before"])]
                page = newer[-limit:]  # the ones immediately newer than the anchor
                more_newer = len(newer) > limit
                more_older = True
        elif q.get("after"):
            if q["after"] not in names:
                page = []
            else:
                older = listed[names.index(q["after"]) + 1:]
                page = older[:limit]
                more_older = len(older) > limit
                more_newer = True
        else:
            page = listed[:limit]
            more_older = len(listed) > limit
        body = {"kind": "Listing", "data": {
            "after": page[-1].name if page and more_older else None,
            "before": page[0].name if page and more_newer else None,
            "dist": len(page), "modhash": None, "geo_filter": "",
            "children": [self.child(p) for p in page]}}
        return JSONResponse(body, headers=headers)

    # -- admin ------------------------------------------------------------------

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        post = self.add_post(tuple(data.get("tags") or ["metoo"]))
        return {"name": post.name}

    def _admin_expected(self) -> dict[str, Any]:
        return {"tags": self.expected_tag_counts(), "posts": len(self.expected_keys())}


def start_reddit_fake(*, seed: int = 3, posts: int = 60, hours: float = 2.0,
                      start: datetime | None = None, port: int = 0) -> RedditFake:
    """Start a fake Reddit on 127.0.0.1; ``stop()`` it when done."""
    fake = RedditFake(seed=seed, posts=posts, hours=hours, start=start)
    fake.server = run_app(fake.app, "reddit", port)
    return fake
