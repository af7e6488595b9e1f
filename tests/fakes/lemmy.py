"""A fake Lemmy 0.19 instance on 127.0.0.1: ``GET /api/v3/search``.

Answers like Lemmy: ``{"type_": "Posts", "comments": [], "posts": [PostView],
"communities": [], "users": []}``, ``sort=New`` newest first, ``page`` from 1,
``limit`` default 10 max 50, a case-insensitive *substring* match of ``q`` on
title and body (so "metoo" also finds "metoolkit", which the collector must
drop). Over its rate window it answers like 0.19: **HTTP 400**
``{"error":"rate_limit_error"}`` and no rate-limit headers. Posts are
federated to one or both instances ("a", "b"): same ``ap_id``, different
local ``id``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.seeds import Expected, Seed, SeedList
from tests.fakes.server import FakeBase, RateWindow, RunningServer, admin_routes, apply_fault

__all__ = ["DELETE", "LemmyFake", "LemmyWorld", "start_lemmy_fake"]

DELETE = object()
ORIGIN = "lemmy-origin.example"


def _published(dt: datetime) -> str:
    # 0.19 writes microseconds and a Z
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LemmyWorld:
    def __init__(self, seed: int = 9, count: int = 50, hours: float = 2.0,
                 decoys: int = 3) -> None:
        self.seeds = SeedList(seed, 0, hours=hours)
        rng = self.seeds.rng
        self._local = {"a": 0, "b": 0}
        for i in range(count):
            created = self.seeds.start + timedelta(seconds=hours * 3600 * (i + rng.random())
                                                   / count)
            self.add(created_at=created.replace(microsecond=0),
                     decoy=i % max(1, count // max(1, decoys)) == 1 and decoys > 0)

    def add(self, tags: tuple[str, ...] | None = None, *, instances: tuple[str, ...] | None = None,
            created_at: datetime | None = None, decoy: bool = False) -> Seed:
        with self.seeds.lock:
            rng = self.seeds.rng
            if instances is None:
                instances = rng.choices([("a",), ("b",), ("a", "b")], weights=[4, 3, 3])[0]
            seed = self.seeds.add(("metoo",) if decoy else tags, created_at=created_at,
                                  instances=instances, decoy=decoy)
            ids = {}
            for instance in instances:
                self._local[instance] += 1
                ids[instance] = self._local[instance]
            seed.extra["ids"] = ids
            return seed

    def title(self, seed: Seed) -> str:
        if seed.extra["decoy"]:
            return f"The metoolkit release {seed.n}"  # substring, not the word
        return f"Thread {seed.n}"

    def body(self, seed: Seed) -> str | None:
        if seed.extra["decoy"]:
            return None
        return seed.text

    def key(self, seed: Seed) -> str:
        return f"https://{ORIGIN}/post/{seed.n}"

    def real(self) -> list[Seed]:
        return [s for s in self.seeds.all() if not s.extra["decoy"]]

    def expected(self) -> Expected:
        return {("lemmy", self.key(s)): (s.created_at, s.tags) for s in self.real()}


class LemmyFake(FakeBase):
    def __init__(self, world: LemmyWorld, instance: str = "a") -> None:
        super().__init__()
        self.world = world
        self.instance = instance
        self.corruptions: dict[int, dict[str, Any]] = {}
        self.server: RunningServer | None = None
        self.app = Starlette(routes=[
            Route("/api/v3/search", self.search),
            *admin_routes(self, self._admin_add, lambda: {"posts": len(world.expected())}),
        ])

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def set_rate_limit(self, limit: int, window: float) -> None:
        self.rate = RateWindow(limit, window)

    def corrupt(self, seed: Seed, field: str, value: Any) -> None:
        """*field* is ``post.<name>`` or ``creator.<name>`` or a top-level PostView key."""
        self.corruptions.setdefault(seed.n, {})[field] = value

    def view(self, seed: Seed) -> dict[str, Any]:
        lid = seed.extra["ids"][self.instance]  # type: ignore[index]
        view: dict[str, Any] = {
            "post": {"id": lid, "name": self.world.title(seed), "body": self.world.body(seed),
                     "url": None, "creator_id": 7, "community_id": 3,
                     "published": _published(seed.created_at), "updated": None,
                     "deleted": False, "removed": False, "locked": False,
                     "nsfw": seed.n % 13 == 0, "ap_id": self.world.key(seed),
                     "local": False, "language_id": 0, "featured_community": False},
            "creator": {"id": 7, "name": seed.author, "actor_id":
                        f"https://{ORIGIN}/u/{seed.author}", "local": False},
            "community": {"id": 3, "name": "metoo", "actor_id": f"https://{ORIGIN}/c/metoo"},
            "counts": {"post_id": lid, "comments": seed.n % 4, "score": seed.n % 9,
                       "upvotes": seed.n % 9, "downvotes": 0},
            "subscribed": "NotSubscribed", "saved": False, "read": False,
        }
        for field, value in self.corruptions.get(seed.n, {}).items():
            where, _, name = field.rpartition(".")
            target = view[where] if where else view
            if value is DELETE:
                target.pop(name, None)
            else:
                target[name] = value
        return view

    def _limited(self, seconds: float) -> Response:
        # 0.19: a 400, no headers (newer Lemmy: 429)
        return JSONResponse({"error": "rate_limit_error"}, status_code=400)

    async def search(self, request: Request) -> Response:
        self.record(request)
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._search(request), self._limited)
        return self._search(request)

    def _search(self, request: Request) -> Response:
        if self.rate is not None and not self.rate.hit()[0]:
            return self._limited(0)
        q = request.query_params
        try:
            page = max(1, int(q.get("page", "1")))
            limit = int(q.get("limit", "10"))
        except ValueError:
            return JSONResponse({"error": "couldnt_parse"}, status_code=400)
        if not 1 <= limit <= 50:
            return JSONResponse({"error": "couldnt_get_posts"}, status_code=400)
        needle = (q.get("q") or "").lower()
        rows = [s for s in self.world.seeds.all() if self.instance in s.extra["instances"]  # type: ignore[operator]
                and needle in f"{self.world.title(s)} {self.world.body(s) or ''}".lower()]
        rows.sort(key=lambda s: (s.created_at, s.n), reverse=True)
        chunk = rows[(page - 1) * limit: page * limit]
        return JSONResponse({"type_": "Posts", "comments": [], "posts":
                             [self.view(s) for s in chunk], "communities": [], "users": []})

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        seed = self.world.add(tuple(data.get("tags") or ["metoo"]),
                              instances=tuple(data.get("instances") or [self.instance]))
        return {"ap_id": self.world.key(seed)}


def start_lemmy_fake(world: LemmyWorld, instance: str = "a", *, port: int = 0) -> LemmyFake:
    from tests.fakes.server import run_app

    fake = LemmyFake(world, instance)
    fake.server = run_app(fake.app, f"lemmy-{instance}", port)
    return fake
