"""Hacker News through the Algolia search API: ``search_by_date`` per tag word.

Streams are one per tag (endpoint: the API host). Hacker News has no
hashtags: Algolia matches the word (with prefixes and typo tolerance), so the
collector keeps a hit only when a followed tag occurs as a *word* in its title
or text, and gives it every followed tag that does.

* **Polling window.** ``numericFilters=created_at_i>LO,created_at_i<=HI`` with
  ``LO`` = the cursor (the newest ``created_at_i`` seen) minus ``overlap``
  (Algolia indexes with a delay, and several items share a second) and ``HI``
  = now; hits already handed over in the overlap are not handed over twice.
  First run: ``LO`` = now − ``backfill``.
* **The 1,000-hit cap.** Algolia pages stop at 1,000 hits per query
  (``nbHits`` still says how many match). A window with more hits than that is
  split in two halves by time, recursively, oldest half first, until every
  window fits; a one-second window that still does not fit is taken as far as
  it goes, with one log line.
* **Key.** ``objectID`` (the HN item id); ``url`` is the item's page.
* Each window is one batch, oldest window first, with the newest
  ``created_at_i`` as cursor, so a crash mid-way loses nothing.

Could not confirm: what a throttled Algolia answer looks like (documented
only as "10,000 requests per hour per IP"; a 429 is handled by the shared
transport either way), and whether ``nbPages`` is capped at
``1000 / hitsPerPage`` or only the pages beyond are empty (both are handled).
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field

from monitor.durations import Duration
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.fields import Rejected, epoch_time, opt_str, req_str, word_tags
from monitor.sources.http import HttpClient
from monitor.sources.ratelimit import host_of
from monitor.sources.settings import SourceContext, SourceSettings

__all__ = ["HackerNewsCollector", "HackerNewsSource", "parse_hit"]

log = logging.getLogger("monitor.sources.hackernews")

PLATFORM = SOURCE = "hackernews"
HIT_CAP = 1000  # Algolia's paginationLimitedTo on the HN index
ITEM_URL = "https://news.ycombinator.com/item?id="


class HackerNewsSource(SourceSettings):
    """Stories and comments that mention a tag word, newest first."""

    type: Literal["hackernews"]
    api: str = "https://hn.algolia.com/api/v1"
    tags: list[str] | None = None
    item_types: str = "(story,comment)"  # Algolia ``tags``: parentheses OR them
    interval: Duration = timedelta(minutes=5)
    jitter: Duration = timedelta(seconds=20)
    backfill: Duration = timedelta(days=1)
    overlap: Duration = timedelta(minutes=2)
    hits_per_page: int = Field(default=1000, ge=1, le=1000)


def parse_hit(hit: Any, followed: list[str], raw_size: int = 0) -> Post | None:
    """An Algolia hit → Post; None when no followed tag occurs as a word."""
    if not isinstance(hit, dict):
        raise Rejected("(hit)", f"expected an object, got {type(hit).__name__}")
    oid = req_str(hit, "objectID")
    created = epoch_time(hit.get("created_at_i"), "created_at_i")
    title = opt_str(hit, "title")
    body = opt_str(hit, "story_text") or opt_str(hit, "comment_text")
    tags = word_tags(followed, title, html.unescape(body) if body else None)
    if not tags:
        return None
    author = req_str(hit, "author")
    parts = [f"<p>{html.escape(title)}</p>"] if title else []
    if body:
        parts.append(body)
    return Post(platform=PLATFORM, key=oid, created_at=created, url=ITEM_URL + oid,
                author=f"{author}@news.ycombinator.com", html="".join(parts), tags=tags,
                raw_size=raw_size)


class HackerNewsCollector:
    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: HackerNewsSource, config: SourceContext, http: HttpClient,
                 *, clock: Any = time.time) -> None:
        self.cfg = cfg
        self.http = http
        self.tags = config.followed(cfg.tags)
        self.base = cfg.api.rstrip("/")
        self._clock = clock
        # objectIDs handed over with created_at_i inside the overlap, per stream
        self._recent: dict[str, dict[str, int]] = {}

    def streams(self) -> list[StreamKey]:
        return [StreamKey(SOURCE, host_of(self.base), tag) for tag in self.tags]

    def interval(self) -> timedelta:
        return self.cfg.interval

    def jitter(self) -> timedelta:
        return self.cfg.jitter

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        now = int(self._clock())
        newest: int | None = None
        if cursor is not None and cursor.value.isdigit():
            newest = int(cursor.value)
            low = newest - int(self.cfg.overlap.total_seconds())
        else:
            low = now - int(self.cfg.backfill.total_seconds())
        recent = self._recent.setdefault(stream.name, {})
        windows = [(low, now)]  # a stack; the oldest window is on top
        yielded = 0
        while windows:
            lo, hi = windows.pop()
            hits, total, size = await self._window(stream, lo, hi)
            if total > HIT_CAP and hi - lo > 1:
                mid = (lo + hi) // 2
                windows.extend([(mid, hi), (lo, mid)])
                continue
            if total > HIT_CAP:
                log.warning("%s: %d hits in one second (%d); keeping the first %d",
                            label_of(stream), total, hi, HIT_CAP)
            posts, rejected = self._parse(stream, hits, size, recent)
            if hits:
                top = max((h["created_at_i"] for h in hits if isinstance(h, dict)
                           and isinstance(h.get("created_at_i"), int)), default=None)
                if top is not None and (newest is None or top > newest):
                    newest = top
            if newest is not None:
                floor = newest - int(self.cfg.overlap.total_seconds())
                for key in [k for k, t in recent.items() if t <= floor]:
                    del recent[key]
            if posts or rejected or (newest is not None and hits):
                yielded += 1
                yield Batch(stream=stream, posts=tuple(posts), rejected=rejected,
                            cursor=None if newest is None else
                            Cursor(SOURCE, stream.name, str(newest)))
        if yielded == 0:
            yield Batch(stream=stream)

    async def _window(self, stream: StreamKey, lo: int, hi: int) -> tuple[list[Any], int, int]:
        """Every hit of ``lo < created_at_i <= hi`` (up to the cap), its nbHits, bytes/hit."""
        hits: list[Any] = []
        page, pages, total, size = 0, 1, 0, 0
        while page < pages:
            data, nbytes = await self._fetch(stream, lo, hi, page)
            got = data.get("hits")
            if not isinstance(got, list) or not isinstance(data.get("nbHits"), int):
                raise SourceError(f"{label_of(stream)}: expected an object with 'hits' and "
                                  "'nbHits'", retryable=True)
            total = data["nbHits"]
            if total > HIT_CAP and page == 0 and hi - lo > 1:
                return [], total, 0  # split before paging through a window that cannot fit
            nb_pages = data.get("nbPages")
            pages = nb_pages if isinstance(nb_pages, int) else 0
            hits.extend(got)
            size += nbytes
            if not got:
                break
            page += 1
        return hits, total, size // max(1, len(hits))

    async def _fetch(self, stream: StreamKey, lo: int, hi: int, page: int
                     ) -> tuple[dict[str, Any], int]:
        params = {"query": stream.tag, "tags": self.cfg.item_types,
                  "numericFilters": f"created_at_i>{lo},created_at_i<={hi}",
                  "hitsPerPage": self.cfg.hits_per_page, "page": page}
        response = await self.http.request_json("GET", f"{self.base}/search_by_date",
                                                params=params, stream=f"#{stream.tag}")
        if not isinstance(response.data, dict):
            raise SourceError(f"{label_of(stream)}: expected a JSON object, got "
                              f"{type(response.data).__name__}", retryable=True)
        return response.data, response.size

    def _parse(self, stream: StreamKey, hits: list[Any], size: int, recent: dict[str, int]
               ) -> tuple[list[Post], int]:
        posts: dict[str, Post] = {}
        rejected = 0
        for hit in hits:
            oid = hit.get("objectID") if isinstance(hit, dict) else None
            if isinstance(oid, str) and (oid in recent or oid in posts):
                continue  # handed over already (overlap, or a page shifted)
            try:
                post = parse_hit(hit, self.tags, size)
            except Rejected as exc:
                rejected += 1
                log.warning("hackernews: skipped item %s on %s: field %s %s",
                            oid if isinstance(oid, str) else "(no id)", label_of(stream),
                            exc.field, exc.problem)
                continue
            if post is not None:
                posts[post.key] = post
                recent[post.key] = int(post.created_at.timestamp())
        return sorted(posts.values(), key=lambda p: (p.created_at, p.key)), rejected


def label_of(stream: StreamKey) -> str:
    return f"{stream.endpoint} #{stream.tag}"
