"""A fake feed server on 127.0.0.1: Mastodon tag feeds and a generic Atom feed.

* ``GET /tags/NAME.rss``: what Mastodon serves (app/views/tags/show.rss.ruby):
  RSS 2.0, the 20 newest statuses of the tag from the shared
  :class:`~tests.fakes.data.World` (one Mastodon instance's view), items with
  ``link`` (the status URL), ``pubDate``, ``description`` (escaped HTML), one
  ``category`` per tag, and no ``title`` and no ``guid``; 404 for an unknown tag.
* ``GET /feeds/blog.atom``: an Atom 1.0 feed of its own posts (``id``, ``link``,
  ``title``, ``published``/``updated``, ``content`` HTML, ``category``), all
  of them, plus a few entries without any followed tag.

Both send ``ETag`` and ``Last-Modified`` and answer a matching
``If-None-Match`` / ``If-Modified-Since`` with a bodiless 304. Faults come from
the shared switchboard (a truncated feed is cut in half, ``wrong_type`` is an
HTML page).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from html import escape
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.data import DISPLAY, TAGS, SeedPost, World
from tests.fakes.seeds import Expected, Seed, SeedList
from tests.fakes.server import FakeBase, RunningServer, admin_routes, apply_fault

__all__ = ["DELETE", "FeedWorld", "RssFake", "start_rss_fake"]

DELETE = object()
BLOG = "https://blog.example"


class FeedWorld:
    """The generic Atom feed's entries (the Mastodon feeds read the shared World)."""

    def __init__(self, seed: int = 13, count: int = 30, hours: float = 2.0) -> None:
        self.seeds = SeedList(seed, 0, hours=hours, first_n=1)
        rng = self.seeds.rng
        for i in range(count):
            created = self.seeds.start + timedelta(seconds=hours * 3600 * (i + rng.random())
                                                   / count)
            self.add(created_at=created.replace(microsecond=0), untagged=i % 10 == 4)

    def add(self, tags: tuple[str, ...] | None = None, *, created_at: datetime | None = None,
            untagged: bool = False) -> Seed:
        seed = self.seeds.add(tags, created_at=created_at, untagged=untagged)
        seed.hashed = True
        return seed

    def real(self) -> list[Seed]:
        return [s for s in self.seeds.all() if not s.extra["untagged"]]

    def key(self, seed: Seed) -> str:
        return f"{BLOG}/posts/{seed.n}"

    def expected(self) -> Expected:
        return {("rss", self.key(s)): (s.created_at, s.tags) for s in self.real()}


def _rfc822(dt: datetime) -> str:
    return format_datetime(dt, usegmt=True)


class RssFake(FakeBase):
    def __init__(self, world: World, feeds: FeedWorld, instance: str = "a") -> None:
        super().__init__()
        self.world = world
        self.feeds = feeds
        self.instance = instance
        self.item_limit = 20
        self.corruptions: dict[str, dict[str, Any]] = {}
        self.server: RunningServer | None = None
        self.app = Starlette(routes=[
            Route("/tags/{tag}.rss", self.tag_feed),
            Route("/feeds/blog.atom", self.blog),
            *admin_routes(self, self._admin_add,
                          lambda: {"posts": len(feeds.expected())}),
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

    def corrupt(self, uri: str, field: str, value: Any) -> None:
        """*field* of the item of status *uri* (``pubDate``, ``link``, ...) or DELETE."""
        self.corruptions.setdefault(uri, {})[field] = value

    # -- documents ----------------------------------------------------------------------

    def tag_items(self, tag: str) -> list[SeedPost]:
        posts = [p for p in self.world.mastodon_posts(self.instance) if tag in p.tags]
        posts.sort(key=lambda p: (len(p.ids[self.instance]), p.ids[self.instance]),
                   reverse=True)
        return posts[:self.item_limit]

    def _item(self, post: SeedPost) -> str:
        fields: dict[str, Any] = {
            "link": f"https://origin.example/@{post.author}/{post.n:08d}",
            "pubDate": _rfc822(post.created_at),
            "description": post.html(),
        }
        for field, value in self.corruptions.get(post.uri, {}).items():
            if value is DELETE:
                fields.pop(field, None)
            else:
                fields[field] = value
        parts = [f"<{k}>{escape(str(v), quote=False)}</{k}>" for k, v in fields.items()]
        parts += [f"<category>{DISPLAY.get(t, t)}</category>" for t in post.tags]
        return "<item>" + "".join(parts) + "</item>"

    def tag_document(self, tag: str) -> tuple[str, datetime | None]:
        items = self.tag_items(tag)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:webfeeds="http://webfeeds.org/rss/1.0" '
            'xmlns:media="http://search.yahoo.com/mrss/"><channel>'
            f"<title>#{DISPLAY.get(tag, tag)}</title>"
            f"<description>Public posts tagged #{tag}</description>"
            f"<link>{self.url}/tags/{tag}</link>"
            + "".join(self._item(p) for p in items) + "</channel></rss>")
        return body, max((p.created_at for p in items), default=None)

    def blog_document(self) -> tuple[str, datetime | None]:
        seeds = sorted(self.feeds.seeds.all(), key=lambda s: s.created_at, reverse=True)
        entries = []
        for s in seeds:
            text = s.sentence if s.extra["untagged"] else s.text
            cats = "" if s.extra["untagged"] else "".join(
                f'<category term="{DISPLAY.get(t, t)}"/>' for t in s.tags)
            stamp = s.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            entries.append(
                f"<entry><id>{self.feeds.key(s)}</id><title>Note {s.n}</title>"
                f'<link href="{self.feeds.key(s)}"/><published>{stamp}</published>'
                f"<updated>{stamp}</updated><author><name>{s.author}</name></author>"
                f'<content type="html">{escape("<p>" + escape(text) + "</p>")}</content>'
                f"{cats}</entry>")
        updated = max((s.created_at for s in seeds), default=None)
        body = ('<?xml version="1.0" encoding="utf-8"?>\n'
                '<feed xmlns="http://www.w3.org/2005/Atom"><title>A blog</title>'
                f"<id>{BLOG}/</id><updated>{(updated or datetime.now()).isoformat()}</updated>"
                + "".join(entries) + "</feed>")
        return body, updated

    # -- handlers -----------------------------------------------------------------------

    def _conditional(self, request: Request, body: str, modified: datetime | None,
                     media: str) -> Response:
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:20] + '"'
        headers = {"ETag": etag}
        if modified is not None:
            headers["Last-Modified"] = _rfc822(modified)
        match = request.headers.get("if-none-match")
        since = request.headers.get("if-modified-since")
        if match is not None:
            if match == etag:
                return Response(status_code=304, headers=headers)
        elif since and modified is not None:
            try:
                if modified.replace(microsecond=0) <= parsedate_to_datetime(since):
                    return Response(status_code=304, headers=headers)
            except (TypeError, ValueError):
                pass
        return Response(body, media_type=media, headers=headers)

    async def tag_feed(self, request: Request) -> Response:
        self.record(request)
        tag = request.path_params["tag"].lower()

        def answer() -> Response:
            if tag not in TAGS and not self.tag_items(tag):
                return Response("<html><body>Not found</body></html>", status_code=404,
                                media_type="text/html")
            body, modified = self.tag_document(tag)
            return self._conditional(request, body, modified, "application/rss+xml")

        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, answer, self._limited)
        return answer()

    async def blog(self, request: Request) -> Response:
        self.record(request)

        def answer() -> Response:
            body, modified = self.blog_document()
            return self._conditional(request, body, modified, "application/atom+xml")

        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, answer, self._limited)
        return answer()

    @staticmethod
    def _limited(seconds: float) -> Response:
        return JSONResponse({"error": "Too many requests"}, status_code=429,
                            headers={"Retry-After": str(max(1, round(seconds)))})

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        seed = self.feeds.add(tuple(data.get("tags") or ["metoo"]))
        return {"id": self.feeds.key(seed)}


def start_rss_fake(world: World, feeds: FeedWorld | None = None, *, instance: str = "a",
                   port: int = 0) -> RssFake:
    from tests.fakes.server import run_app

    fake = RssFake(world, feeds or FeedWorld(), instance)
    fake.server = run_app(fake.app, "rss", port)
    return fake
