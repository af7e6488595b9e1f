"""X (Twitter) API v2 recent search, with the user's own bearer token.

``GET {api_url}/2/tweets/search/recent?query=#tag -is:retweet`` for each
followed tag, ``Authorization: Bearer <bearer_token>``. Streams are tags on
the API host; the cursor of a stream is the newest tweet id seen (ids are
snowflake strings, compared by length then text, never turned into ints).
Tweets become posts through :func:`monitor.sources.tweets.tweet_post`, the
same mapping the ``twitter-v2`` import preset uses, and are stored under the
platform ``twitter``.

* First run (no cursor): up to ``backfill_pages`` pages, newest first
  (``next_token``), handed over oldest page first, each with its newest id as
  cursor. ``backfill_pages: 0`` only learns the newest id.
* Later runs: ``since_id=<cursor>``, following ``next_token`` (the pages of
  one answer run newest to oldest) up to ``max_pages``; the pages are handed
  over oldest first, so a crash in between re-fetches rather than skips.
  More than ``max_pages`` pages newer than the cursor (a long outage on a busy
  tag) leaves a gap, logged once per poll: recent search cannot page forward.
* A ``since_id`` the API refuses (older than its 7-day window: HTTP 400) is
  dropped and the stream starts over as on a first run, with one log line.

Rate limits: every answer carries ``x-rate-limit-limit/remaining/reset``
(reset in epoch seconds); the shared budget reads them with the
:data:`~monitor.sources.ratelimit.X` scheme, spaces requests when the window
runs low and waits out a 429 for every stream of the host.

Not confirmed against the live API (no paid account was used):

* the exact 400 wording for an out-of-range ``since_id`` (any 400 on a poll
  with a cursor is treated as such, once, before giving up);
* whether ``note_tweet`` is returned by recent search on every plan;
* the window sizes of each plan (they are read from the headers, never
  assumed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from monitor.durations import Duration
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.errors import HttpStatusError
from monitor.sources.http import HttpClient, JsonResponse
from monitor.sources.ratelimit import X
from monitor.sources.settings import SourceContext, SourceSettings
from monitor.sources.tweets import PLATFORM, TweetRejected, tweet_post, users_by_id

__all__ = ["XCollector", "XSource"]

log = logging.getLogger("monitor.sources.x")

SOURCE = "x"
TOKEN_HELP = ("create a project and app at https://developer.x.com (a plan that includes "
              "recent search) and copy its Bearer Token")
TWEET_FIELDS = ("created_at,lang,entities,author_id,possibly_sensitive,referenced_tweets,"
                "note_tweet")


class XSource(SourceSettings):
    """X API v2 recent search; needs the user's bearer token (and a paid plan)."""

    type: Literal["x"]
    bearer_token: str = Field(default="", validate_default=True)
    api_url: str = "https://api.x.com"
    tags: list[str] | None = None
    interval: Duration = timedelta(minutes=15)
    jitter: Duration = timedelta(seconds=30)
    # every tweet read counts against the plan's monthly cap: keep history small
    backfill_pages: int = Field(default=1, ge=0, le=1_000)
    max_pages: int = Field(default=10, ge=1, le=1_000)
    max_results: int = Field(default=100, ge=10, le=100)
    exclude_retweets: bool = True

    @field_validator("bearer_token")
    @classmethod
    def _token_set(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"expected the bearer token of your X app ({TOKEN_HELP}); "
                             "e.g. bearer_token: ${X_BEARER_TOKEN}")
        return value.strip()


def _id_key(value: str) -> tuple[int, str]:
    return (len(value), value)


def _newest(ids: list[str]) -> str:
    return max(ids, key=_id_key)


class XCollector:
    """Polls recent search for every followed tag (see the module docstring)."""

    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: XSource, config: SourceContext, http: HttpClient) -> None:
        self.cfg = cfg
        self.http = http
        self.tags = config.followed(cfg.tags)
        self.base = cfg.api_url.rstrip("/")
        if "://" not in self.base:
            self.base = "https://" + self.base
        self.host = urlsplit(self.base).netloc
        http.budgets.declare(self.base, X)

    # -- PolledSource -------------------------------------------------------------

    def streams(self) -> list[StreamKey]:
        return [StreamKey(SOURCE, self.host, tag) for tag in self.tags]

    def interval(self) -> timedelta:
        return self.cfg.interval

    def jitter(self) -> timedelta:
        return self.cfg.jitter

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        since = cursor.value if cursor is not None and cursor.value else None
        if since is None:
            async for batch in self._first_run(stream):
                yield batch
            return
        try:
            pages, more = await self._pages(stream, since, self.cfg.max_pages)
        except HttpStatusError as exc:
            if exc.status != 400:
                raise
            log.warning("x: %s: the API refused since_id=%s (HTTP 400, older than its 7-day "
                        "window?); starting this stream over", _label(stream), since)
            async for batch in self._first_run(stream):
                yield batch
            return
        if more:
            log.warning("x: %s: more than %d pages newer than the cursor; stored the newest "
                        "%d, the older tweets in between are skipped (raise max_pages)",
                        _label(stream), self.cfg.max_pages, self.cfg.max_pages)
        if not pages:
            yield Batch(stream=stream)  # nothing new: still a successful poll
            return
        for batch in self._batches(stream, pages, since):
            yield batch

    # -- internals ----------------------------------------------------------------

    async def _first_run(self, stream: StreamKey) -> AsyncIterator[Batch]:
        depth = self.cfg.backfill_pages
        if depth == 0:
            response = await self._fetch(stream, {"max_results": 10})
            data, _, _ = self._page(stream, response)
            ids = [t["id"] for t in data if isinstance(t, dict) and isinstance(t.get("id"), str)]
            yield Batch(stream=stream, cursor=self._cursor(stream, _newest(ids)) if ids else None)
            return
        pages, _ = await self._pages(stream, None, depth)
        if not pages:
            log.info("x: %s: no tweets in the last 7 days yet", _label(stream))
            yield Batch(stream=stream)
            return
        log.info("x: %s: first run, backfilled %d page(s)", _label(stream), len(pages))
        for batch in self._batches(stream, pages, None):
            yield batch

    async def _pages(self, stream: StreamKey, since: str | None, limit: int
                     ) -> tuple[list[tuple[list[Post], int, list[str]]], bool]:
        """Pages newest first, up to *limit*: [(posts, rejected, ids)], and whether more remain."""
        pages: list[tuple[list[Post], int, list[str]]] = []
        token: str | None = None
        while len(pages) < limit:
            params: dict[str, Any] = {}
            if since is not None:
                params["since_id"] = since
            if token is not None:
                params["next_token"] = token
            response = await self._fetch(stream, params)
            data, users, meta = self._page(stream, response)
            if not data:
                break
            pages.append(self._parse(stream, data, users, response.size))
            nxt = meta.get("next_token")
            token = nxt if isinstance(nxt, str) and nxt else None
            if token is None:
                return pages, False
        return pages, token is not None

    def _batches(self, stream: StreamKey, pages: list[tuple[list[Post], int, list[str]]],
                 since: str | None) -> list[Batch]:
        out = []
        newest = since
        for posts, rejected, ids in reversed(pages):
            if ids:
                top = _newest(ids)
                if newest is None or _id_key(top) > _id_key(newest):
                    newest = top
            out.append(Batch(stream=stream, posts=tuple(posts), rejected=rejected,
                             cursor=self._cursor(stream, newest) if newest else None))
        return out

    async def _fetch(self, stream: StreamKey, params: Mapping[str, Any]) -> JsonResponse:
        query = f"#{stream.tag}" + (" -is:retweet" if self.cfg.exclude_retweets else "")
        full = {"query": query, "max_results": self.cfg.max_results,
                "tweet.fields": TWEET_FIELDS, "expansions": "author_id",
                "user.fields": "username", **params}
        try:
            return await self.http.request_json(
                "GET", f"{self.base}/2/tweets/search/recent", params=full,
                headers={"Authorization": f"Bearer {self.cfg.bearer_token}"},
                stream=f"#{stream.tag}")
        except HttpStatusError as exc:
            if exc.status == 401:
                raise SourceError(f"x: {_label(stream)}: HTTP 401: the bearer token was "
                                  f"refused; {TOKEN_HELP}", retryable=False,
                                  status=401) from None
            if exc.status == 403:
                raise SourceError(f"x: {_label(stream)}: HTTP 403: this app's plan does not "
                                  "include recent search (or the app is not in a project); "
                                  "see https://developer.x.com/en/portal/products",
                                  retryable=False, status=403) from None
            raise

    def _page(self, stream: StreamKey, response: JsonResponse
              ) -> tuple[list[Any], dict[str, Mapping[str, Any]], Mapping[str, Any]]:
        body = response.data
        # an empty answer is {"meta": {"result_count": 0}}: meta is always there
        data = body.get("data", []) if isinstance(body, dict) else None
        meta = body.get("meta") if isinstance(body, dict) else None
        if not isinstance(data, list) or not isinstance(meta, dict):
            raise SourceError(f"x: {_label(stream)}: expected an object with data and meta, "
                              f"got {type(body).__name__}", retryable=True)
        return data, users_by_id(body.get("includes")), meta

    def _parse(self, stream: StreamKey, data: list[Any], users: dict[str, Mapping[str, Any]],
               size: int) -> tuple[list[Post], int, list[str]]:
        each = size // max(1, len(data))
        posts: list[Post] = []
        ids: list[str] = []
        rejected = 0
        for tweet in data:
            tid = tweet.get("id") if isinstance(tweet, dict) else None
            if isinstance(tid, str) and tid.isdigit():
                ids.append(tid)
            try:
                posts.append(tweet_post(tweet, users, raw_size=each))
            except TweetRejected as exc:
                rejected += 1
                log.warning("x: skipped tweet %s on %s: field %s %s",
                            tid if isinstance(tid, str) and tid else "(no id)",
                            _label(stream), exc.field, exc.problem)
        return posts, rejected, ids

    @staticmethod
    def _cursor(stream: StreamKey, newest: str) -> Cursor:
        return Cursor(source=SOURCE, stream=stream.name, value=newest)


def _label(stream: StreamKey) -> str:
    return f"{stream.endpoint} #{stream.tag}"
