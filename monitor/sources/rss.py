"""RSS and Atom feeds, any of them, including Mastodon's ``/tags/NAME.rss``.

Each configured feed URL is one stream. Feeds are read with feedparser (RSS
0.9x-2.0, RSS 1.0, Atom 0.3/1.0, encodings, dates) and fetched with a
conditional GET: the stream's cursor keeps the last ``ETag`` and
``Last-Modified``, so a poll of an unchanged feed is a bodiless ``304``,
parses nothing and stores nothing (the stream's health still says it is
alive). The cursor also keeps the keys of the items in the last document, so a
changed feed hands over only the items that are new.

* **Mastodon statuses are keyed like the Mastodon API does.** The API keys a
  status by its ``uri`` (``https://H/users/U/statuses/ID``); a Mastodon RSS
  item carries only the status *URL* (``https://H/@U/ID``; no guid). An item
  whose link has that shape is stored as platform ``mastodon`` under the
  ``uri`` Mastodon derives from the same account and id, with the author as
  ``U@H`` (the API's ``acct`` for a remote account), so a status seen through
  the API and through RSS is one post. Any other item is platform ``rss``,
  keyed by its ``guid``/Atom ``id``, else its link.
* **Which items.** A Mastodon tag feed (path ``/tags/NAME.rss``) is the tag's
  stream and every item is kept. Any other feed (stream tag ``*``) keeps the
  items that carry a followed tag as a category or as ``#tag`` in the text.
* Mastodon's tag feed holds only the 20 newest statuses and has no paging: a
  poll interval that lets more than 20 arrive in between loses the rest (use
  the API where it is open; RSS is for instances whose API needs a login).

Could not confirm: whether Mastodon's tag RSS includes remote statuses (its
``url`` then points at the origin, which this mapping handles), and the URL
shapes of non-Mastodon servers (Pleroma ``/notice/ID``, Misskey ``/notes/ID``):
those items are stored as platform ``rss`` and a copy seen through another API
is not merged with them.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import feedparser
from pydantic import Field

from monitor.durations import Duration
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.errors import HttpStatusError
from monitor.sources.fields import Rejected, plausible
from monitor.sources.http import BytesResponse, HttpClient
from monitor.sources.settings import SourceContext, SourceSettings
from monitor.tags import normalise_tag

__all__ = ["RssCollector", "RssSource", "mastodon_key", "parse_entry"]

log = logging.getLogger("monitor.sources.rss")

SOURCE = "rss"
MAX_SEEN = 2000
ACCEPT = ("application/rss+xml, application/atom+xml, application/xml;q=0.9, "
          "text/xml;q=0.9, */*;q=0.5")
_STATUS_URL = re.compile(r"^(https?://[^/?#]+)/@([A-Za-z0-9_.-]+)/(\w+)/?$")
_TAG_FEED = re.compile(r"/tags/([^/]+)\.rss$")
_HASHTAG = re.compile(r"(?<![\w&])#(\w+)")


class RssSource(SourceSettings):
    """Any RSS/Atom feeds; Mastodon tag feeds (``/tags/NAME.rss``) are recognised."""

    type: Literal["rss"]
    feeds: list[str] = Field(min_length=1)
    tags: list[str] | None = None
    interval: Duration = timedelta(minutes=5)
    jitter: Duration = timedelta(seconds=20)


def mastodon_key(link: str) -> tuple[str, str, str] | None:
    """Status URL ``https://H/@U/ID`` → (uri, author ``U@H``, id); None for other links."""
    match = _STATUS_URL.match(link)
    if match is None:
        return None
    origin, user, sid = match.groups()
    return f"{origin}/users/{user}/statuses/{sid}", f"{user}@{urlsplit(origin).netloc}", sid


def _when(entry: Any) -> datetime:
    for field in ("published_parsed", "updated_parsed"):
        value = entry.get(field)
        if value is not None:
            try:
                when = datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
            except (OverflowError, OSError, ValueError):
                raise Rejected(field.removesuffix("_parsed"), "out of range") from None
            return plausible(when, field.removesuffix("_parsed"))
    raise Rejected("published", "missing or not a date")


def parse_entry(entry: Any, followed: list[str], *, tag_feed: bool, raw_size: int = 0
                ) -> Post | None:
    """A feedparser entry → Post; None when a non-tag feed's item carries no followed tag."""
    link = entry.get("link")
    if link is not None and not isinstance(link, str):
        raise Rejected("link", "not a string")
    guid = entry.get("id")
    created = _when(entry)
    categories = tuple(t.get("term") for t in entry.get("tags") or []
                       if isinstance(t.get("term"), str) and t.get("term"))
    content = entry.get("content")
    body = (content[0].get("value") if content else None) or entry.get("summary") or ""
    title = entry.get("title") or ""
    if not tag_feed:
        found = {normalise_tag(t) for t in categories}
        found |= {normalise_tag(t) for t in _HASHTAG.findall(f"{title} {body}")}
        if not found & set(followed):
            return None
    mastodon = mastodon_key(link) if link else None
    if mastodon is not None:
        uri, author, _ = mastodon
        return Post(platform="mastodon", key=uri, created_at=created, url=link, author=author,
                    html=body, tags=categories, raw_size=raw_size)
    key = guid if isinstance(guid, str) and guid else link
    if not key:
        raise Rejected("link", "missing (and no guid/id)")
    html = f"<p>{title}</p>{body}" if title and title not in body else body
    author = entry.get("author")
    return Post(platform="rss", key=key, created_at=created, url=link,
                author=author if isinstance(author, str) and author else None, html=html,
                tags=categories, raw_size=raw_size)


def _ref(entry: Any, index: int) -> str:
    """How a skip line names an item without its author: a Mastodon id, else guid/position."""
    link = entry.get("link")
    mastodon = mastodon_key(link) if isinstance(link, str) else None
    if mastodon is not None:
        return f"status {mastodon[2]}"
    guid = entry.get("id")
    return str(guid) if isinstance(guid, str) and guid and "@" not in guid else f"#{index + 1}"


class RssCollector:
    source = SOURCE
    platform = SOURCE  # Mastodon items are stored as "mastodon" (see the module doc)

    def __init__(self, cfg: RssSource, config: SourceContext, http: HttpClient) -> None:
        self.cfg = cfg
        self.http = http
        self.tags = config.followed(cfg.tags)
        self._feeds: dict[str, tuple[str, str]] = {}  # endpoint -> (url, tag or "*")
        for url in cfg.feeds:
            parts = urlsplit(url if "://" in url else "https://" + url)
            endpoint = parts.netloc + parts.path + (f"?{parts.query}" if parts.query else "")
            match = _TAG_FEED.search(parts.path)
            tag = normalise_tag(match.group(1)) if match else "*"
            self._feeds[endpoint] = (parts.geturl(), tag or "*")

    def streams(self) -> list[StreamKey]:
        return [StreamKey(SOURCE, endpoint, tag) for endpoint, (_, tag) in self._feeds.items()]

    def interval(self) -> timedelta:
        return self.cfg.interval

    def jitter(self) -> timedelta:
        return self.cfg.jitter

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        url, tag = self._feeds[stream.endpoint]
        state = _state(cursor)
        headers = {"Accept": ACCEPT}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("modified"):
            headers["If-Modified-Since"] = state["modified"]
        try:
            response = await self.http.request_bytes(url, headers=headers, stream=stream.name)
        except HttpStatusError as exc:
            if exc.status in (401, 403, 404, 410):
                raise SourceError(f"{stream.name}: HTTP {exc.status}: the feed is not there "
                                  "or not public; check the URL in sources[].feeds",
                                  retryable=exc.status == 404, status=exc.status) from None
            raise
        if response.status == 304:
            return  # unchanged: nothing parsed, nothing stored
        posts, rejected, keys = self._parse(stream, response, tag)
        seen = set(state.get("seen") or [])
        new = [p for p in posts if p.key not in seen]
        new.sort(key=lambda p: (p.created_at, p.key))
        value = json.dumps({"etag": response.headers.get("etag"),
                            "modified": response.headers.get("last-modified"),
                            "seen": keys[:MAX_SEEN]})
        yield Batch(stream=stream, posts=tuple(new), rejected=rejected,
                    cursor=Cursor(SOURCE, stream.name, value))

    def _parse(self, stream: StreamKey, response: BytesResponse, tag: str
               ) -> tuple[list[Post], int, list[str]]:
        # only the content type (for the charset): with a content-location feedparser
        # also rewrites every relative link in every item, which costs a third more
        parsed = feedparser.parse(response.content, response_headers={
            "content-type": response.headers.get("content-type", "application/xml")})
        entries = parsed.get("entries") or []
        if parsed.get("bozo") and not entries:
            reason = type(parsed.get("bozo_exception")).__name__
            raise SourceError(f"{stream.name}: not an RSS/Atom feed ({reason}); retrying next "
                              "tick", retryable=True)
        size = len(response.content) // max(1, len(entries))
        posts: list[Post] = []
        keys: list[str] = []
        rejected = 0
        for index, entry in enumerate(entries):
            try:
                post = parse_entry(entry, self.tags, tag_feed=tag != "*", raw_size=size)
            except Rejected as exc:
                rejected += 1
                log.warning("rss: skipped item %s on %s: field %s %s", _ref(entry, index),
                            stream.name, exc.field, exc.problem)
                continue
            if post is not None:
                posts.append(post)
                keys.append(post.key)
        return posts, rejected, keys


def _state(cursor: Cursor | None) -> dict[str, Any]:
    if cursor is None or not cursor.value:
        return {}
    try:
        data = json.loads(cursor.value)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
