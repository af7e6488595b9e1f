"""A fake HN Algolia API on 127.0.0.1: ``GET /api/v1/search_by_date``.

Answers like hn.algolia.com: ``{"hits", "nbHits", "page", "nbPages",
"hitsPerPage", "exhaustiveNbHits", "processingTimeMS", "query", "params"}``,
newest first, ``page`` from 0, ``hitsPerPage`` up to 1000, ``tags`` (``story``,
``comment``, ``(story,comment)``) and ``numericFilters`` on ``created_at_i``
(``>``, ``>=``, ``<``, ``<=``, ``=``, comma = AND). The **1,000-hit cap**:
``nbHits`` counts every match but no page reaches beyond the first 1,000
(``nbPages`` is capped accordingly). ``query`` matches word prefixes, case
insensitively, in title, story_text, comment_text (so "metoo" finds
"metoolkit" too, which the collector drops). A rate limit answers 429.
"""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.seeds import Expected, Seed, SeedList
from tests.fakes.server import FakeBase, RateWindow, RunningServer, admin_routes, apply_fault, iso

__all__ = ["DELETE", "HackerNewsFake", "HackerNewsWorld", "start_hackernews_fake"]

DELETE = object()
CAP = 1000
_FILTER = re.compile(r"^created_at_i(<=|>=|<|>|=)(-?\d+)$")


class HackerNewsWorld:
    def __init__(self, seed: int = 21, count: int = 60, hours: float = 2.0) -> None:
        self.seeds = SeedList(seed, 0, hours=hours, first_n=40_000_000)
        rng = self.seeds.rng
        for i in range(count):
            created = self.seeds.start + timedelta(seconds=hours * 3600 * (i + rng.random())
                                                   / count)
            self.add(created_at=created.replace(microsecond=0), decoy=i % 25 == 3)

    def add(self, tags: tuple[str, ...] | None = None, *, created_at: datetime | None = None,
            decoy: bool = False, kind: str | None = None) -> Seed:
        with self.seeds.lock:
            rng = self.seeds.rng
            seed = self.seeds.add(("metoo",) if decoy else tags, created_at=created_at,
                                  decoy=decoy, kind=kind or rng.choice(["story", "comment"]))
            return seed

    def bulk(self, count: int, start: datetime, seconds: float, tag: str = "metoo") -> None:
        """*count* posts of *tag* spread over *seconds* from *start* (for the hit cap)."""
        with self.seeds.lock:
            for i in range(count):
                self.add((tag,), created_at=start + timedelta(seconds=seconds * i / count),
                         kind="comment")

    def real(self) -> list[Seed]:
        return [s for s in self.seeds.all() if not s.extra["decoy"]]

    def expected(self) -> Expected:
        return {("hackernews", str(s.n)): (s.created_at, s.tags) for s in self.real()}


class HackerNewsFake(FakeBase):
    def __init__(self, world: HackerNewsWorld) -> None:
        super().__init__()
        self.world = world
        self.corruptions: dict[int, dict[str, Any]] = {}
        self.server: RunningServer | None = None
        self.app = Starlette(routes=[
            Route("/api/v1/search_by_date", self.search),
            *admin_routes(self, self._admin_add, lambda: {"posts": len(world.expected())}),
        ])

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def set_rate_limit(self, limit: int, window: float) -> None:
        self.rate = RateWindow(limit, window)

    def corrupt(self, seed: Seed, field: str, value: Any) -> None:
        self.corruptions.setdefault(seed.n, {})[field] = value

    def hit(self, seed: Seed) -> dict[str, Any]:
        story = seed.extra["kind"] == "story"
        text = ("The metoolkit is out" if seed.extra["decoy"]
                else html.escape(seed.text))
        hit: dict[str, Any] = {
            "created_at": iso(seed.created_at), "created_at_i": int(seed.created_at.timestamp()),
            "author": seed.author, "objectID": str(seed.n),
            "title": f"Ask HN: thread {seed.n}" if story else None,
            "url": None, "points": seed.n % 50 if story else None,
            "story_text": f"<p>{text}</p>" if story else None,
            "comment_text": None if story else f"<p>{text}</p>",
            "num_comments": seed.n % 7 if story else None,
            "story_id": None if story else seed.n - 1, "parent_id": None if story else seed.n - 1,
            "_tags": [seed.extra["kind"], f"author_{seed.author}", f"story_{seed.n}"],
        }
        for field, value in self.corruptions.get(seed.n, {}).items():
            if value is DELETE:
                hit.pop(field, None)
            else:
                hit[field] = value
        return hit

    def _limited(self, seconds: float) -> Response:
        return JSONResponse({"message": "Too many requests", "status": 429}, status_code=429,
                            headers={"Retry-After": str(max(1, round(seconds)))})

    async def search(self, request: Request) -> Response:
        self.record(request)
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._search(request), self._limited)
        return self._search(request)

    def _search(self, request: Request) -> Response:
        if self.rate is not None:
            allowed, _, reset = self.rate.hit()
            if not allowed:
                return self._limited(reset - datetime.now(UTC).timestamp())
        q = request.query_params
        try:
            page = int(q.get("page", "0"))
            per = int(q.get("hitsPerPage", "20"))
        except ValueError:
            return JSONResponse({"message": "invalid integer", "status": 400}, status_code=400)
        per = max(1, min(1000, per))
        checks = []
        for part in filter(None, (q.get("numericFilters") or "").split(",")):
            match = _FILTER.match(part.strip())
            if match is None:
                return JSONResponse({"message": f"invalid numericFilters {part!r}",
                                     "status": 400}, status_code=400)
            checks.append((match.group(1), int(match.group(2))))
        kinds = set(re.findall(r"story|comment", q.get("tags") or "story,comment"))
        words = (q.get("query") or "").lower().split()
        rows = []
        for seed in self.world.seeds.all():
            t = int(seed.created_at.timestamp())
            if seed.extra["kind"] not in kinds or not all(_cmp(t, op, v) for op, v in checks):
                continue
            hit = self.hit(seed)
            hay = " ".join(str(hit.get(f) or "") for f in ("title", "story_text",
                                                           "comment_text")).lower()
            if all(re.search(r"(?<![a-z0-9])#?" + re.escape(w), hay) for w in words):
                rows.append((t, seed.n, hit))
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        reachable = rows[:CAP]
        chunk = reachable[page * per:(page + 1) * per]
        return JSONResponse({
            "hits": [h for _, _, h in chunk], "nbHits": len(rows), "page": page,
            "nbPages": math.ceil(len(reachable) / per), "hitsPerPage": per,
            "exhaustiveNbHits": True, "processingTimeMS": 1, "query": q.get("query") or "",
            "params": str(request.url.query),
        })

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        seed = self.world.add(tuple(data.get("tags") or ["metoo"]))
        return {"objectID": str(seed.n)}


def _cmp(value: int, op: str, bound: int) -> bool:
    return {"<": value < bound, "<=": value <= bound, ">": value > bound,
            ">=": value >= bound, "=": value == bound}[op]


def start_hackernews_fake(world: HackerNewsWorld, *, port: int = 0) -> HackerNewsFake:
    from tests.fakes.server import run_app

    fake = HackerNewsFake(world)
    fake.server = run_app(fake.app, "hackernews", port)
    return fake
