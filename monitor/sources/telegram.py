"""Telegram public channels through their web preview, ``https://t.me/s/CHANNEL``.

The preview is an HTML page with a channel's latest messages (about 20,
oldest first). Each is a ``div.tgme_widget_message`` with
``data-post="CHANNEL/ID"``; its time is ``time[datetime]`` inside
``a.tgme_widget_message_date``, its text ``div.tgme_widget_message_text``
(hashtags as ``<a href="?q=%23tag">#tag</a>``). ``a.tme_messages_more[data-before]``
links to the older page, ``?before=ID``. We parse it with selectolax (a real
HTML5 parser), keep the messages that carry a followed tag (in a hashtag link
or in the text) and store them under ``t.me/channel/ID``.

What the preview shows, and so what we can collect: public channels only. No
groups, no private channels, no member counts beyond what the page shows, and
no author but the channel itself (a post's author is the channel name). A
channel whose owner disabled the preview, or a private group, redirects to
``t.me/CHANNEL`` without ``/s/``: that stream fails with a one-line reason,
by design, and is not retried harder.

Streams are channels (tag ``*``); the cursor is the newest message id seen.

* First run: the newest page, then ``backfill_pages - 1`` older ones via
  ``before=``, handed over oldest first.
* Later: the newest page, and older pages until one reaches the cursor (at
  most ``max_pages``), so a busy channel after downtime leaves no gap.

Not confirmed against the live site: whether ``?after=ID`` works for paging
forward (unused here), how Telegram rate-limits preview fetches (we poll
gently and treat 429/5xx like every HTTP source), and whether every message
kind (polls, albums, paid media) has the markup above; a message without a
text div is skipped quietly (it cannot carry a hashtag), one without an id or
time is skipped with a line naming the channel, id and field.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator
from selectolax.lexbor import LexborHTMLParser, LexborNode

from monitor.durations import Duration
from monitor.enrich.text import extract_hashtags
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, ImplausibleDate, Post, StreamKey, plausible_created, utc
from monitor.sources.errors import HttpStatusError
from monitor.sources.http import HttpClient, JsonResponse
from monitor.sources.settings import SourceContext, SourceSettings
from monitor.tags import normalise_tag

__all__ = ["TelegramCollector", "TelegramSource", "channel_name", "parse_page"]

log = logging.getLogger("monitor.sources.telegram")

PLATFORM = SOURCE = "telegram"
_CHANNEL = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}")
_POST = re.compile(r"([A-Za-z][A-Za-z0-9_]{3,31})/(\d{1,12})")


def channel_name(value: str) -> str:
    """``@name``, ``t.me/name``, ``https://t.me/s/name`` → ``name`` (lowercase)."""
    text = value.strip()
    if "://" in text or text.startswith("t.me/"):
        path = urlsplit(text if "://" in text else "https://" + text).path
        parts = [p for p in path.split("/") if p]
        text = parts[1] if parts[:1] == ["s"] and len(parts) > 1 else (parts[0] if parts else "")
    text = text.lstrip("@")
    if not _CHANNEL.fullmatch(text):
        raise ValueError(f"expected a public channel name (5-32 letters, digits or _), "
                         f"got {value!r}")
    return text.lower()


class TelegramSource(SourceSettings):
    """Public Telegram channels read through the t.me/s/ web preview."""

    type: Literal["telegram"]
    channels: list[str] = Field(min_length=1)
    base_url: str = "https://t.me"
    tags: list[str] | None = None
    interval: Duration = timedelta(minutes=5)
    jitter: Duration = timedelta(seconds=30)
    backfill_pages: int = Field(default=3, ge=1, le=1000)
    max_pages: int = Field(default=50, ge=1, le=10_000)

    @field_validator("channels")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [channel_name(v) for v in value]


class MessageRejected(ValueError):
    def __init__(self, ref: str, field: str, problem: str) -> None:
        self.ref, self.field, self.problem = ref, field, problem
        super().__init__(f"{ref}: {field} {problem}")


def _id_key(value: str) -> tuple[int, str]:
    return (len(value), value)


def parse_page(html: str, channel: str, tags: frozenset[str], raw_size: int = 0
               ) -> tuple[list[Post], list[str], list[MessageRejected], str | None]:
    """One preview page → (followed posts, every message id, rejected, the before= id)."""
    tree = LexborHTMLParser(html)
    posts: list[Post] = []
    ids: list[str] = []
    rejected: list[MessageRejected] = []
    nodes = tree.css("div.tgme_widget_message[data-post]")
    size = raw_size // max(1, len(nodes))
    for node in nodes:
        ref = node.attributes.get("data-post") or ""
        match = _POST.fullmatch(ref)
        if match is None:
            rejected.append(MessageRejected(f"{channel}/?", "data-post",
                                            "is not CHANNEL/ID"))
            continue
        mid = match.group(2)
        ids.append(mid)
        try:
            post = _message(node, channel, mid, tags, size)
        except MessageRejected as exc:
            rejected.append(exc)
            continue
        if post is not None:
            posts.append(post)
    more = tree.css_first("a.tme_messages_more[data-before]")
    before = more.attributes.get("data-before") if more is not None else None
    return posts, ids, rejected, before if before and before.isdigit() else None


def _message(node: LexborNode, channel: str, mid: str, tags: frozenset[str], size: int
             ) -> Post | None:
    ref = f"{channel}/{mid}"
    text_node = node.css_first("div.tgme_widget_message_text")
    if text_node is None:  # media only or a service message: no hashtag possible
        return None
    platform_tags: list[str] = []
    for link in text_node.css("a[href]"):
        href = link.attributes.get("href") or ""
        if href.startswith("?q=%23") or href.startswith("?q=#"):
            platform_tags.append(unquote(href[3:]).lstrip("#"))
    text = text_node.text(separator=" ")
    if not any(normalise_tag(t) in tags for t in platform_tags) and not any(
            t in tags for t in extract_hashtags(text)):
        return None
    time_node = node.css_first("a.tgme_widget_message_date time[datetime]") or node.css_first(
        "time[datetime]")
    raw_time = time_node.attributes.get("datetime") if time_node is not None else None
    if not raw_time:
        raise MessageRejected(ref, "time", "missing (no time[datetime])")
    try:
        created = plausible_created(utc(datetime.fromisoformat(raw_time.replace("Z", "+00:00"))))
    except ImplausibleDate as exc:
        raise MessageRejected(ref, "time", str(exc)) from None
    except ValueError:
        raise MessageRejected(ref, "time", "is not an ISO-8601 time") from None
    forwarded = node.css_first(".tgme_widget_message_forwarded_from") is not None
    return Post(platform=PLATFORM, key=f"t.me/{ref}", created_at=created,
                url=f"https://t.me/{ref}", author=channel, html=text_node.html, lang=None,
                tags=tuple(platform_tags), is_repost=forwarded, sensitive=False,
                raw_size=size)


class TelegramCollector:
    """Polls each configured channel's web preview (see module doc)."""

    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: TelegramSource, config: SourceContext, http: HttpClient) -> None:
        self.cfg = cfg
        self.http = http
        self.tags = frozenset(config.followed(cfg.tags))
        self._base = cfg.base_url.rstrip("/")

    def streams(self) -> list[StreamKey]:
        return [StreamKey(SOURCE, channel, "*") for channel in self.cfg.channels]

    def interval(self) -> timedelta:
        return self.cfg.interval

    def jitter(self) -> timedelta:
        return self.cfg.jitter

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        """New messages of one channel, oldest page first, each batch with its cursor."""
        since = cursor.value if cursor is not None and cursor.value.isdigit() else None
        limit = self.cfg.backfill_pages if since is None else self.cfg.max_pages
        pages: list[tuple[list[Post], int, str]] = []
        before: str | None = None
        for _ in range(limit):
            response = await self._fetch(stream, before)
            posts, ids, rejected, more = parse_page(response.data, stream.endpoint, self.tags,
                                                    response.size)
            for exc in rejected:
                log.warning("telegram: skipped message %s: field %s %s", exc.ref, exc.field,
                            exc.problem)
            if not ids:
                break
            if since is not None:
                posts = [p for p in posts if _id_key(p.key.rsplit("/", 1)[1]) > _id_key(since)]
            pages.append((posts, len(rejected), max(ids, key=_id_key)))
            oldest = min(ids, key=_id_key)
            if since is not None and _id_key(oldest) <= _id_key(since):
                break  # reached what we already have
            if more is None or more == before:
                break  # the channel's first message, or a page that does not move back
            before = more
        else:
            if since is not None:
                log.info("telegram %s: caught up %d pages this tick; continuing next tick",
                         stream.endpoint, limit)
        if not pages:
            yield Batch(stream=stream)
            return
        for posts, rejected_count, newest in reversed(pages):
            if since is not None and _id_key(newest) <= _id_key(since):
                continue
            yield Batch(stream=stream, posts=tuple(posts), rejected=rejected_count,
                        cursor=Cursor(SOURCE, stream.name, newest))

    async def _fetch(self, stream: StreamKey, before: str | None) -> JsonResponse:
        url = f"{self._base}/s/{stream.endpoint}"
        label = f"telegram {stream.endpoint}"
        try:
            response = await self.http.request_text(
                "GET", url, params={"before": before} if before else None, stream=label)
        except HttpStatusError as exc:
            if exc.status == 404:
                raise SourceError(f"{label}: HTTP 404: no such channel; check sources[]."
                                  "channels", retryable=False, status=404) from None
            raise
        if "/s/" not in urlsplit(response.url).path:
            raise SourceError(f"{label}: no public preview (redirected to {response.url}); "
                              "only public channels with a preview can be read, private "
                              "groups and channels are out of reach by design",
                              retryable=False)
        return response
