"""Reddit, with an app-only OAuth token (the user's own app credentials).

Token: ``POST {auth_url}/api/v1/access_token`` with HTTP Basic
``client_id:client_secret`` and ``grant_type=client_credentials``; the
bearer token (valid ``expires_in`` seconds, a day) is renewed a minute before
it runs out, and once at once when the API answers 401. Listings come from
``{api_url}`` (``oauth.reddit.com``):

* with no ``subreddits``: ``/search?q=<tag>&sort=new&type=link``, one stream
  per followed tag;
* with ``subreddits``: ``/r/SUB/new``, one stream per subreddit (tag ``*``).

Reddit has no hashtags. A post is kept when a followed tag appears as a word
(``metoo`` or ``#MeToo``, any case, not inside a longer word) in its title or
body, and those tags are its tags: Reddit's search is looser than a tag (it
also finds ``metoomovement``), and a subreddit's new posts are mostly about
other things. Posts are keyed by ``name`` (``t3_…``); text is the title, a
blank line and the markdown body; ``over_18`` or ``spoiler`` marks a post
sensitive, ``crosspost_parent`` a repost; Reddit gives no language.

Paging: listings are newest first. The first run walks back ``after=<last
name>`` up to ``backfill_pages`` pages and hands them over oldest first. Later
polls ask ``before=<newest name seen>`` (the page immediately newer than it)
until a page comes back short. The cursor is ``name@created_utc``: when the
anchor post is deleted or removed, Reddit lists nothing before it, for ever;
so an empty answer is checked with one ``limit=1`` request, and if something
newer than the anchor's time exists, the collector catches up by walking
``after`` from the newest post back to that time instead.

Rate limits: ``X-Ratelimit-Used/Remaining/Reset``, where the reset is the
**seconds left** in the window (not an epoch); the shared budget reads them
with the :data:`~monitor.sources.ratelimit.REDDIT` scheme, spaces requests
when the window runs low and waits out a 429 for every stream.

Not confirmed against the live API (no credentials were used):

* that ``before=`` paging works on ``/search`` as on ``/r/SUB/new`` (the
  ``limit=1`` check and the time-based catch-up make a refusal harmless);
* what ``data.before`` holds on a ``before=`` request (it is not relied on: a
  full page means "ask again");
* decimal header values such as ``598.0`` (read either way).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, field_validator

from monitor.durations import Duration
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, ImplausibleDate, Post, StreamKey, plausible_created
from monitor.sources.errors import HttpStatusError
from monitor.sources.http import HttpClient, JsonResponse
from monitor.sources.ratelimit import REDDIT
from monitor.sources.settings import SourceContext, SourceSettings

__all__ = ["PostRejected", "RedditCollector", "RedditSource", "parse_listing_post", "tag_words"]

log = logging.getLogger("monitor.sources.reddit")

PLATFORM = SOURCE = "reddit"
APP_HELP = ("create an app of type 'script' at https://www.reddit.com/prefs/apps "
            "(app-only OAuth; the id is under its name)")
_TOKEN_MARGIN = 60.0  # seconds: renew a token this long before Reddit says it expires
_SUB = re.compile(r"^[A-Za-z0-9_]{2,21}$")


class RedditSource(SourceSettings):
    """Reddit search or subreddits, with the user's app-only OAuth credentials."""

    type: Literal["reddit"]
    client_id: str = Field(default="", validate_default=True)
    client_secret: str = Field(default="", validate_default=True)
    auth_url: str = "https://www.reddit.com"
    api_url: str = "https://oauth.reddit.com"
    subreddits: list[str] = Field(default_factory=list)
    tags: list[str] | None = None
    interval: Duration = timedelta(minutes=2)
    jitter: Duration = timedelta(seconds=10)
    backfill_pages: int = Field(default=2, ge=0, le=1_000)
    max_pages: int = Field(default=20, ge=1, le=1_000)
    page_limit: int = Field(default=100, ge=1, le=100)

    @field_validator("client_id", "client_secret")
    @classmethod
    def _credential_set(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"expected your Reddit app's credentials ({APP_HELP}); e.g. "
                             "client_id: ${REDDIT_CLIENT_ID}, client_secret: "
                             "${REDDIT_CLIENT_SECRET}")
        return value.strip()

    @field_validator("subreddits")
    @classmethod
    def _names(cls, values: list[str]) -> list[str]:
        out = []
        for value in values:
            name = value.strip().removeprefix("/").removeprefix("r/")
            if not _SUB.match(name):
                raise ValueError(f"expected subreddit names like 'TwoXChromosomes', got {value!r}")
            out.append(name)
        return out


class PostRejected(ValueError):
    """A malformed listing item; names the field and the problem, never the text."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def tag_words(tags: list[str]) -> re.Pattern[str]:
    """A pattern finding any of *tags* as a word, with or without '#', any case."""
    alternatives = "|".join(sorted((re.escape(t) for t in tags), key=len, reverse=True))
    return re.compile(rf"(?<![\w#])#?({alternatives})(?!\w)", re.IGNORECASE)


def _str(data: Mapping[str, Any], field: str, *, required: bool = True) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise PostRejected(field, f"expected a string, got {type(value).__name__}")
    return value


def _flag(data: Mapping[str, Any], field: str) -> bool:
    value = data.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise PostRejected(field, f"expected true/false, got {type(value).__name__}")
    return value


def parse_listing_post(child: Any, words: re.Pattern[str], raw_size: int = 0
                       ) -> Post | None:
    """A listing child → Post, or None when it carries no followed tag word.

    Raises :class:`PostRejected` naming the field for a malformed item.
    """
    data = child.get("data") if isinstance(child, dict) else None
    if not isinstance(data, dict):
        raise PostRejected("data", "expected an object")
    name = data.get("name")
    if not isinstance(name, str) or not name.startswith("t3_"):
        raise PostRejected("name", "missing or not a t3_ fullname")
    created = data.get("created_utc")
    if isinstance(created, bool) or not isinstance(created, int | float) or created != created:
        raise PostRejected("created_utc", f"expected epoch seconds, got {type(created).__name__}")
    try:
        created_at = plausible_created(datetime.fromtimestamp(float(created), tz=UTC))
    except ImplausibleDate as exc:
        raise PostRejected("created_utc", str(exc)) from None
    except (OverflowError, OSError, ValueError):
        raise PostRejected("created_utc", "out of range") from None
    title = _str(data, "title") or ""
    body = _str(data, "selftext", required=False) or ""
    text = f"{title}\n\n{body}" if body else title
    found: list[str] = []
    for match in words.finditer(text):
        tag = match.group(1).lower()
        if tag not in found:
            found.append(tag)
    if not found:
        return None
    author = _str(data, "author", required=False)
    permalink = _str(data, "permalink", required=False)
    return Post(
        platform=PLATFORM,
        key=name,
        created_at=created_at,
        url=f"https://www.reddit.com{permalink}" if permalink else None,
        author=None if author in (None, "[deleted]") else author,
        text=text,
        lang=None,
        tags=tuple(found),
        is_repost=bool(data.get("crosspost_parent")),
        sensitive=_flag(data, "over_18") or _flag(data, "spoiler"),
        raw_size=raw_size,
    )


def _anchor(value: str) -> tuple[str, float | None]:
    """A cursor ``name@created_utc`` → (name, time); a bare name has no time."""
    name, _, when = value.partition("@")
    try:
        return name, float(when) if when else None
    except ValueError:
        return name, None


class _Page:
    """One listing page: the kept posts, rejects, and every child's (name, created)."""

    __slots__ = ("after", "posts", "rejected", "seen")

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.rejected = 0
        self.seen: list[tuple[str, float]] = []  # newest first, as listed
        self.after: str | None = None


class RedditCollector:
    """Polls Reddit search (per tag) or subreddits' new posts; see the module docstring."""

    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: RedditSource, config: SourceContext, http: HttpClient) -> None:
        self.cfg = cfg
        self.http = http
        self.tags = config.followed(cfg.tags)
        self.words = tag_words(self.tags)
        self.api = _base(cfg.api_url)
        self.auth = _base(cfg.auth_url)
        self.host = urlsplit(self.api).netloc
        http.budgets.declare(self.api, REDDIT)
        self._token: str | None = None
        self._expires = 0.0  # monotonic
        self._token_lock = asyncio.Lock()

    # -- PolledSource -------------------------------------------------------------

    def streams(self) -> list[StreamKey]:
        if self.cfg.subreddits:
            return [StreamKey(SOURCE, f"{self.host}/r/{sub}", "*") for sub in self.cfg.subreddits]
        return [StreamKey(SOURCE, self.host, tag) for tag in self.tags]

    def interval(self) -> timedelta:
        return self.cfg.interval

    def jitter(self) -> timedelta:
        return self.cfg.jitter

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        if cursor is None or not cursor.value:
            async for batch in self._walk_back(stream, self.cfg.backfill_pages, None):
                yield batch
            return
        anchor, anchor_time = _anchor(cursor.value)
        pages = 0
        while pages < self.cfg.max_pages:
            page = await self._page(stream, {"before": anchor})
            if not page.seen:
                break
            pages += 1
            anchor, anchor_time = page.seen[0]
            yield self._batch(stream, page, page.seen[0])
            if len(page.seen) < self.cfg.page_limit:
                return
        else:
            log.info("reddit: %s: caught up %d pages this tick; continuing next tick",
                     _label(stream), pages)
            return
        if pages:
            return
        # nothing before the anchor: either nothing new, or the anchor left the listing
        newest = await self._page(stream, {}, limit=1)
        # created_utc is whole seconds: a post of the anchor's own second counts as newer
        if not newest.seen or anchor_time is None or newest.seen[0][0] == anchor \
                or newest.seen[0][1] < anchor_time:
            yield Batch(stream=stream)
            return
        log.info("reddit: %s: the cursor's post %s is no longer listed (deleted or removed); "
                 "catching up by time instead", _label(stream), anchor)
        async for batch in self._walk_back(stream, self.cfg.max_pages, anchor_time):
            yield batch

    # -- internals ----------------------------------------------------------------

    async def _walk_back(self, stream: StreamKey, depth: int, until: float | None
                         ) -> AsyncIterator[Batch]:
        """From the newest post back with ``after``: *depth* pages, or to time *until*;
        handed over oldest page first."""
        if depth == 0:
            page = await self._page(stream, {}, limit=1)
            yield Batch(stream=stream, cursor=self._cursor(stream, page.seen[0])
                        if page.seen else None)
            return
        pages: list[_Page] = []
        params: dict[str, Any] = {}
        while len(pages) < depth:
            page = await self._page(stream, params)
            if until is not None:
                # the anchor's own second is fetched again (repeats are dropped by key)
                page.posts = [p for p in page.posts if p.created_at.timestamp() >= until]
                reached = any(when < until for _, when in page.seen)
            else:
                reached = False
            if not page.seen:
                break
            pages.append(page)
            if reached or page.after is None:
                break
            params = {"after": page.after}
        if not pages:
            yield Batch(stream=stream)
            return
        for page in reversed(pages):
            yield self._batch(stream, page, page.seen[0])

    def _batch(self, stream: StreamKey, page: _Page, newest: tuple[str, float]) -> Batch:
        return Batch(stream=stream, posts=tuple(page.posts), rejected=page.rejected,
                     cursor=self._cursor(stream, newest))

    async def _page(self, stream: StreamKey, params: Mapping[str, Any], *,
                    limit: int | None = None) -> _Page:
        if stream.tag == "*":
            sub = stream.endpoint.rsplit("/r/", 1)[1]
            url = f"{self.api}/r/{quote(sub, safe='')}/new"
            query: dict[str, Any] = {}
        else:
            url = f"{self.api}/search"
            query = {"q": stream.tag, "sort": "new", "type": "link"}
        query.update(limit=limit or self.cfg.page_limit, raw_json=1, **params)
        response = await self._get(stream, url, query)
        return self._parse(stream, response)

    async def _get(self, stream: StreamKey, url: str, query: Mapping[str, Any]) -> JsonResponse:
        for attempt in (1, 2):
            token = await self._bearer(stream)
            try:
                return await self.http.request_json(
                    "GET", url, params=query, headers={"Authorization": f"bearer {token}"},
                    stream=_label(stream))
            except HttpStatusError as exc:
                if exc.status == 401 and attempt == 1:
                    self._token = None  # expired or revoked early: one fresh token
                    continue
                if exc.status in (403, 404) and stream.tag == "*":
                    reason = exc.error or ("private or quarantined" if exc.status == 403
                                           else "banned or missing")
                    raise SourceError(f"reddit: {_label(stream)}: HTTP {exc.status} "
                                      f"({reason}): remove it from subreddits",
                                      retryable=False, status=exc.status) from None
                raise
        raise AssertionError("unreachable")

    async def _bearer(self, stream: StreamKey) -> str:
        async with self._token_lock:
            if self._token is not None and time.monotonic() < self._expires:
                return self._token
            basic = base64.b64encode(
                f"{self.cfg.client_id}:{self.cfg.client_secret}".encode()).decode("ascii")
            try:
                response = await self.http.request_json(
                    "POST", f"{self.auth}/api/v1/access_token",
                    headers={"Authorization": f"Basic {basic}"},
                    form={"grant_type": "client_credentials"}, stream="access token")
            except HttpStatusError as exc:
                if exc.status in (400, 401, 403):
                    raise SourceError(f"reddit: HTTP {exc.status}: the client_id/client_secret "
                                      f"were refused; {APP_HELP}", retryable=False,
                                      status=exc.status) from None
                raise
            data = response.data
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                error = data.get("error") if isinstance(data, dict) else None
                named = error if isinstance(error, str) else "no error named"
                raise SourceError(f"reddit: no access token in the answer ({named}); check "
                                  f"client_id/client_secret; {APP_HELP}", retryable=False)
            lifetime = data.get("expires_in", 3600)
            if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
                lifetime = 3600
            self._token = token
            self._expires = time.monotonic() + max(0.0, float(lifetime) - _TOKEN_MARGIN)
            log.info("reddit: got an app-only token (valid %ds)", int(lifetime))
            return token

    def _parse(self, stream: StreamKey, response: JsonResponse) -> _Page:
        body = response.data
        data = body.get("data") if isinstance(body, dict) else None
        children = data.get("children") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(children, list):
            raise SourceError(f"reddit: {_label(stream)}: expected a Listing with "
                              f"data.children, got {type(body).__name__}", retryable=True)
        page = _Page()
        after = data.get("after")
        page.after = after if isinstance(after, str) and after else None
        each = response.size // max(1, len(children))
        for child in children:
            if isinstance(child, dict) and child.get("kind") not in (None, "t3"):
                continue  # not a post (a redirect to subreddit search lists t5 items)
            item = child.get("data") if isinstance(child, dict) else None
            name = item.get("name") if isinstance(item, dict) else None
            created = item.get("created_utc") if isinstance(item, dict) else None
            if isinstance(name, str) and isinstance(created, int | float) \
                    and not isinstance(created, bool):
                page.seen.append((name, float(created)))
            try:
                post = parse_listing_post(child, self.words, each)
            except PostRejected as exc:
                page.rejected += 1
                log.warning("reddit: skipped post %s on %s: field %s %s",
                            name if isinstance(name, str) and name else "(no name)",
                            _label(stream), exc.field, exc.problem)
                continue
            if post is not None:
                page.posts.append(post)
        return page

    @staticmethod
    def _cursor(stream: StreamKey, newest: tuple[str, float]) -> Cursor:
        return Cursor(source=SOURCE, stream=stream.name, value=f"{newest[0]}@{newest[1]}")


def _base(url: str) -> str:
    text = url.strip().rstrip("/")
    return text if "://" in text else "https://" + text


def _label(stream: StreamKey) -> str:
    if stream.tag == "*":
        return "r/" + stream.endpoint.rsplit("/r/", 1)[1]
    return f"search #{stream.tag}"
