"""Lemmy (API v3, 0.19): full-text post search, since Lemmy has no hashtags.

Streams are instances × tags. Each poll asks ``GET /api/v3/search?q=<tag>
&type_=Posts&sort=New&listing_type=All&page=N&limit=L`` page by page (pages
start at 1, newest first) until it reaches a post it has already seen (the
cursor), then hands the pages over oldest first.

* **Matching.** Lemmy search is a substring match on title and body, so the
  collector keeps a post only when a followed tag occurs there as a *word*
  (``MeToo``, ``#metoo``; not ``metoolkit``), and gives it every followed tag
  that occurs so, whichever stream found it first.
* **Key.** ``post.ap_id``, the ActivityPub id: the same post federated to
  several instances (different local ``id``) is stored once.
* **Cursor.** JSON ``{"t": newest published, "keys": [ap_ids published then]}``,
  so a poll stops exactly at what it already has, with no gap and no repeat.
* **Rate limits.** 0.19 answers ``HTTP 400 {"error":"rate_limit_error"}``
  without rate-limit headers; that answer is classified as a rate limit (the
  transport's ``rate_limited`` hook) and waited out with backoff, like a 429,
  which newer Lemmy sends.
* Deleted or removed posts are skipped.

Could not confirm: the exact PostView fields of every 0.19.x release (taken
from lemmy-js-client types as mirrored by third parties); ``published`` is read
with or without a ``Z`` (older versions sent naive UTC). ``language_id`` is an
instance-local number, so language is left to detection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from monitor.durations import Duration
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.errors import HttpStatusError, error_name
from monitor.sources.fields import Rejected, base_url, iso_time, opt_str, req_str, word_tags
from monitor.sources.http import HttpClient
from monitor.sources.settings import SourceContext, SourceSettings

__all__ = ["LemmyCollector", "LemmySource", "is_rate_limited", "parse_post_view"]

log = logging.getLogger("monitor.sources.lemmy")

PLATFORM = SOURCE = "lemmy"
MAX_CATCHUP_PAGES = 200


class LemmySource(SourceSettings):
    """Post search on one or more Lemmy instances, matching the tag word."""

    type: Literal["lemmy"]
    instances: list[str] = Field(min_length=1)
    tags: list[str] | None = None
    interval: Duration = timedelta(minutes=5)
    jitter: Duration = timedelta(seconds=20)
    backfill_pages: int = Field(default=3, ge=1, le=10_000)
    page_limit: int = Field(default=50, ge=1, le=50)
    access_token: str | None = None


def is_rate_limited(response: httpx.Response) -> bool:
    """Lemmy 0.19's rate limit: HTTP 400 with ``{"error": "rate_limit_error"}``."""
    return response.status_code == 400 and error_name(response.content) == "rate_limit_error"


def parse_post_view(view: Any, followed: list[str], raw_size: int = 0) -> Post | None:
    """A PostView → Post; None when no followed tag occurs as a word (or it was deleted)."""
    if not isinstance(view, dict):
        raise Rejected("(post)", f"expected an object, got {type(view).__name__}")
    post = view.get("post")
    if not isinstance(post, dict):
        raise Rejected("post", "missing or not an object")
    ap_id = req_str(post, "ap_id", label="post.ap_id")
    created = iso_time(post.get("published"), "post.published")
    title = req_str(post, "name", label="post.name")
    body = opt_str(post, "body", label="post.body")
    if post.get("deleted") is True or post.get("removed") is True:
        return None
    tags = word_tags(followed, title, body)
    if not tags:
        return None
    creator = view.get("creator")
    if not isinstance(creator, dict):
        raise Rejected("creator", "missing or not an object")
    name = req_str(creator, "name", label="creator.name")
    actor = opt_str(creator, "actor_id", label="creator.actor_id")
    host = urlsplit(actor).netloc if actor else urlsplit(ap_id).netloc
    nsfw = post.get("nsfw", False)
    if not isinstance(nsfw, bool):
        raise Rejected("post.nsfw", f"expected true/false, got {type(nsfw).__name__}")
    text = title if not body else f"{title}\n\n{body}"
    return Post(platform=PLATFORM, key=ap_id, created_at=created, url=ap_id,
                author=f"{name}@{host}", text=text, tags=tags, sensitive=nsfw,
                raw_size=raw_size)


def _load_cursor(cursor: Cursor | None) -> tuple[datetime | None, set[str]]:
    if cursor is None or not cursor.value:
        return None, set()
    try:
        data = json.loads(cursor.value)
        return iso_time(data["t"], "t"), set(data.get("keys", []))
    except (ValueError, KeyError, TypeError, Rejected):
        log.warning("lemmy: unreadable cursor for %s; starting over", cursor.stream)
        return None, set()


class LemmyCollector:
    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: LemmySource, config: SourceContext, http: HttpClient) -> None:
        self.cfg = cfg
        self.http = http
        self.tags = config.followed(cfg.tags)
        self._bases = {urlsplit(base_url(i)).netloc: base_url(i) for i in cfg.instances}

    def streams(self) -> list[StreamKey]:
        return [StreamKey(SOURCE, host, tag) for host in self._bases for tag in self.tags]

    def interval(self) -> timedelta:
        return self.cfg.interval

    def jitter(self) -> timedelta:
        return self.cfg.jitter

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        newest, at_newest = _load_cursor(cursor)
        limit = self.cfg.backfill_pages if newest is None else MAX_CATCHUP_PAGES
        pages: list[tuple[list[tuple[datetime, Post]], int]] = []
        seen_now: set[str] = set()
        page_no, reached = 1, False
        while page_no <= limit and not reached:
            views, size = await self._fetch(stream, page_no)
            if not views:
                break
            page: list[tuple[datetime, Post]] = []
            rejected = 0
            for view in views:
                post_obj = view.get("post") if isinstance(view, dict) else None
                pid = post_obj.get("id") if isinstance(post_obj, dict) else None
                try:
                    published = iso_time(post_obj.get("published") if isinstance(
                        post_obj, dict) else None, "post.published")
                    ap_id = req_str(post_obj if isinstance(post_obj, dict) else {}, "ap_id",
                                    label="post.ap_id")
                    if newest is not None and (published < newest or (
                            published == newest and ap_id in at_newest)):
                        reached = True  # sorted newest first: the rest is known
                        break
                    if ap_id in seen_now:
                        continue  # offset paging shifted under a new post
                    seen_now.add(ap_id)
                    parsed = parse_post_view(view, self.tags, size)
                except Rejected as exc:
                    rejected += 1
                    log.warning("lemmy: skipped post %s on %s: field %s %s",
                                pid if pid is not None else "(no id)", label_of(stream),
                                exc.field, exc.problem)
                    continue
                if parsed is not None:
                    page.append((published, parsed))
            pages.append((page, rejected))
            page_no += 1
        if page_no > limit and not reached and newest is not None:
            log.info("%s: more than %d new pages; the rest next tick", label_of(stream), limit)
        if not any(p or r for p, r in pages):
            yield Batch(stream=stream)
            return
        mark, keys = newest, set(at_newest)
        for page, rejected in reversed(pages):
            page.reverse()  # newest first as served; ties keep the server's order reversed
            page.sort(key=lambda item: item[0])
            for published, post in page:
                if mark is None or published > mark:
                    mark, keys = published, {post.key}
                elif published == mark:
                    keys.add(post.key)
            cursor_out = None if mark is None else Cursor(SOURCE, stream.name, json.dumps(
                {"t": mark.isoformat(), "keys": sorted(keys)}))
            yield Batch(stream=stream, posts=tuple(p for _, p in page), cursor=cursor_out,
                        rejected=rejected)

    async def _fetch(self, stream: StreamKey, page: int) -> tuple[list[Any], int]:
        base = self._bases.get(stream.endpoint)
        if base is None:
            raise SourceError(f"{stream.endpoint}: not a configured Lemmy instance",
                              retryable=False)
        headers = {}
        if self.cfg.access_token:
            headers["Authorization"] = f"Bearer {self.cfg.access_token}"
        params = {"q": stream.tag, "type_": "Posts", "sort": "New", "listing_type": "All",
                  "page": page, "limit": self.cfg.page_limit}
        try:
            response = await self.http.request_json(
                "GET", f"{base}/api/v3/search", params=params, headers=headers,
                stream=f"#{stream.tag}", rate_limited=is_rate_limited)
        except HttpStatusError as exc:
            if exc.status in (401, 403):
                raise SourceError(f"{label_of(stream)}: HTTP {exc.status} "
                                  f"({exc.error or 'refused'}): this instance needs a login "
                                  "for search; set access_token "
                                  "(a JWT from /api/v3/user/login) on this lemmy source",
                                  retryable=False, status=exc.status) from None
            raise
        data = response.data
        views = data.get("posts") if isinstance(data, dict) else None
        if not isinstance(views, list):
            raise SourceError(f"{label_of(stream)}: expected a JSON object with a 'posts' list, "
                              f"got {type(data).__name__}", retryable=True)
        return views, response.size // max(1, len(views))


def label_of(stream: StreamKey) -> str:
    return f"{stream.endpoint} #{stream.tag}"
