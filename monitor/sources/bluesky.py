"""Bluesky search: ``app.bsky.feed.searchPosts`` by tag, newest first.

Search has no ``since_id``: each poll pages back with ``sort=latest`` and the
opaque ``cursor`` until it reaches the newest post already seen (by at:// uri,
or an ``indexedAt`` older than it), then hands the new pages over oldest
first. The saved cursor is JSON ``{"newest_uri", "newest_indexed_at"}``.

Since 2025 unauthenticated search is often refused (403 ``AuthMissing``). With
``identifier`` and ``app_password`` configured the collector logs in with
``com.atproto.server.createSession`` at the PDS, sends searches there (the PDS
proxies ``app.bsky.*``), and renews the token with ``refreshSession`` when the
server says ``ExpiredToken``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from monitor.errors import SourceError
from monitor.models import (
    Batch,
    Cursor,
    ImplausibleDate,
    Post,
    StreamKey,
    plausible_created,
    utc,
)
from monitor.sources.errors import HttpStatusError
from monitor.sources.http import HttpClient, JsonResponse
from monitor.sources.settings import BlueskySearchSource, SourceContext

__all__ = ["BlueskySearchCollector", "parse_post_view", "post_url"]

log = logging.getLogger("monitor.sources.bluesky")

PLATFORM = "bluesky"
SOURCE = "bluesky-search"
SEARCH = "/xrpc/app.bsky.feed.searchPosts"
GET_POSTS = "/xrpc/app.bsky.feed.getPosts"
GET_POSTS_MAX = 25  # uris per getPosts request (the lexicon's maximum)
CREATE_SESSION = "/xrpc/com.atproto.server.createSession"
REFRESH_SESSION = "/xrpc/com.atproto.server.refreshSession"
_TAG_FEATURE = "app.bsky.richtext.facet#tag"
# A created-at this far after the index time is a wrong client clock; use the index time.
_CLOCK_SLACK = timedelta(minutes=5)
# Moderation labels (from labelers) that mark a post as sensitive; self-labels always do.
_SENSITIVE_LABELS = {"porn", "sexual", "nudity", "graphic-media", "gore", "!warn"}
# Pages are held until the poll reaches the newest post already stored (search is newest
# first); past this many a poll stops, stores what it has and logs the gap.
MAX_CATCHUP_PAGES = 1000


class _Reject(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise _Reject(field, "missing or not a string")
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise _Reject(field, "expected an ISO-8601 time") from None


def post_url(uri: str) -> str | None:
    """``at://did/app.bsky.feed.post/rkey`` → ``https://bsky.app/profile/did/post/rkey``."""
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3 or parts[1] != "app.bsky.feed.post":
        return None
    return f"https://bsky.app/profile/{parts[0]}/post/{parts[2]}"


def _tags(record: Mapping[str, Any]) -> list[str]:
    tags: list[str] = []
    facets = record.get("facets") or []
    if not isinstance(facets, list):
        raise _Reject("record.facets", "expected a list")
    for facet in facets:
        features = facet.get("features") if isinstance(facet, dict) else None
        if not isinstance(features, list):
            continue  # a facet without features carries no tag; not worth rejecting the post
        for feature in features:
            if (isinstance(feature, dict) and feature.get("$type") == _TAG_FEATURE
                    and isinstance(feature.get("tag"), str)):
                tags.append(feature["tag"])
    extra = record.get("tags") or []
    if not isinstance(extra, list):
        raise _Reject("record.tags", "expected a list of strings")
    tags.extend(t for t in extra if isinstance(t, str))
    return tags


def _sensitive(view: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    self_labels = record.get("labels")
    if isinstance(self_labels, dict):
        values = self_labels.get("values")
        if isinstance(values, list) and any(isinstance(v, dict) and v.get("val")
                                            for v in values):
            return True
    labels = view.get("labels")
    if isinstance(labels, list):
        # a label value that is not a string (a list: unhashable) is no known label
        return any(isinstance(lab, dict) and isinstance(lab.get("val"), str)
                   and lab["val"] in _SENSITIVE_LABELS for lab in labels)
    return False


def parse_post_view(view: Any, raw_size: int = 0) -> tuple[Post, datetime]:
    """A postView → (Post, indexedAt). Raises ValueError (``.field``) when malformed."""
    if not isinstance(view, dict):
        raise _Reject("(post)", f"expected an object, got {type(view).__name__}")
    uri = view.get("uri")
    if not isinstance(uri, str) or not uri.startswith("at://"):
        raise _Reject("uri", "missing or not an at:// uri")
    indexed_at = _time(view.get("indexedAt"), "indexedAt")
    try:
        # it becomes the cursor and the clamp below: year 9999 here overflowed (issue 11)
        indexed_at = plausible_created(indexed_at)
    except ImplausibleDate as exc:
        raise _Reject("indexedAt", str(exc)) from None
    author = view.get("author")
    did = author.get("did") if isinstance(author, dict) else None
    if not isinstance(did, str) or not did:
        raise _Reject("author.did", "missing or not a string")
    record = view.get("record")
    if not isinstance(record, dict):
        raise _Reject("record", "missing or not an object")
    text = record.get("text")
    if not isinstance(text, str):
        raise _Reject("record.text", "missing or not a string")
    created_at = _time(record.get("createdAt"), "record.createdAt")
    if created_at > indexed_at + _CLOCK_SLACK:
        created_at = indexed_at
    try:
        # year 0001 (or an index time in year 9999) would fake the stream's lag (issue 11)
        created_at = plausible_created(created_at)
    except ImplausibleDate as exc:
        raise _Reject("record.createdAt", str(exc)) from None
    langs = record.get("langs")
    if langs is not None and not isinstance(langs, list):
        raise _Reject("record.langs", "expected a list")
    lang = langs[0] if langs and isinstance(langs[0], str) else None
    post = Post(
        platform=PLATFORM,
        key=uri,
        created_at=created_at,
        url=post_url(uri),
        author=did,  # the DID is stable; handles change
        text=text,
        lang=lang,
        tags=tuple(_tags(record)),
        is_repost=False,  # search returns posts only; reposts are separate records
        sensitive=_sensitive(view, record),
        raw_size=raw_size,
    )
    return post, indexed_at


@dataclass(frozen=True, slots=True)
class _Seen:
    uri: str
    indexed_at: datetime

    def dump(self) -> str:
        return json.dumps({"newest_uri": self.uri,
                           "newest_indexed_at": self.indexed_at.isoformat()})

    @classmethod
    def load(cls, value: str) -> _Seen:
        data = json.loads(value)
        return cls(uri=str(data["newest_uri"]),
                   indexed_at=utc(datetime.fromisoformat(str(data["newest_indexed_at"]))))


@dataclass(slots=True)
class _Session:
    access: str
    refresh: str


class BlueskySearchCollector:
    """Polls searchPosts for every followed tag."""

    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: BlueskySearchSource, config: SourceContext, http: HttpClient) -> None:
        self.cfg = cfg
        self.http = http
        self.tags = config.followed(cfg.tags)
        self.appview = cfg.appview.rstrip("/")
        self.pds = cfg.pds.rstrip("/")
        self.endpoint = urlsplit(self.appview).netloc or self.appview
        self._session: _Session | None = None
        self._has_login = bool(cfg.identifier and cfg.app_password)
        self._told: set[tuple[str, str]] = set()  # one-time notices already logged

    # -- PolledSource -------------------------------------------------------------

    def streams(self) -> list[StreamKey]:
        return [StreamKey(SOURCE, self.endpoint, tag) for tag in self.tags]

    def interval(self) -> timedelta:
        return self.cfg.interval

    def jitter(self) -> timedelta:
        return self.cfg.jitter

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        """New posts of one tag since the saved newest post; oldest page first."""
        label = f"{self.endpoint} #{stream.tag}"
        seen: _Seen | None = None
        if cursor is not None and cursor.value:
            try:
                seen = _Seen.load(cursor.value)
            except (ValueError, KeyError, TypeError):
                log.warning("%s: saved cursor is not readable; starting over with a backfill",
                            label)
        max_pages = self.cfg.backfill_pages if seen is None else MAX_CATCHUP_PAGES
        pages: list[tuple[list[Post], int, _Seen | None]] = []
        api_cursor: str | None = None
        reached = False
        while not reached and len(pages) < max(1, max_pages):
            try:
                response = await self._search(stream, api_cursor, label)
            except SourceError as exc:
                if api_cursor is None or exc.status != 403 or self._has_login:
                    raise
                # public search answers the first page but refuses paging without a login
                if (stream.name, "deep") not in self._told:
                    self._told.add((stream.name, "deep"))
                    log.warning("%s: Bluesky refuses further pages without a login; storing "
                                "the %d page(s) it gave (set identifier and app_password to "
                                "page further)", label, len(pages))
                break
            data = response.data
            views = data.get("posts") if isinstance(data, dict) else None
            if not isinstance(views, list):
                raise SourceError(f"{label}: expected a searchPosts answer with a posts list, "
                                  f"got {type(data).__name__}", retryable=True)
            size = response.size // max(1, len(views))
            posts: list[Post] = []
            newest: _Seen | None = None
            rejected = 0
            for view in views:
                try:
                    post, indexed_at = parse_post_view(view, size)
                except _Reject as exc:
                    rejected += 1
                    ref = view.get("uri") if isinstance(view, dict) else None
                    log.warning("bluesky: skipped post %s on %s: field %s %s",
                                ref if isinstance(ref, str) else "(no uri)", label,
                                exc.field, exc.problem)
                    continue
                if seen is not None and (post.key == seen.uri
                                         or indexed_at < seen.indexed_at):
                    reached = True
                    break
                posts.append(post)
                if newest is None or indexed_at > newest.indexed_at:
                    newest = _Seen(post.key, indexed_at)
            pages.append((posts, rejected, newest))
            next_cursor = data.get("cursor")
            if not views or not isinstance(next_cursor, str) or not next_cursor:
                break
            api_cursor = next_cursor
        if seen is not None and not reached and len(pages) >= MAX_CATCHUP_PAGES:
            log.warning("%s: more than %d pages of new posts since the last poll; storing "
                        "those and leaving a gap before them", label, MAX_CATCHUP_PAGES)
        if seen is None and max_pages == 0:
            # no history wanted: remember where "now" is and store nothing
            newest_all = next((n for _, _, n in pages if n is not None), None)
            yield Batch(stream=stream, cursor=self._cursor(stream, newest_all))
            return
        if not any(p or r for p, r, _ in pages):
            yield Batch(stream=stream)  # nothing new: still a successful poll
            return
        for posts, rejected, newest in reversed(pages):
            if not posts and not rejected:
                continue
            yield Batch(stream=stream, posts=tuple(posts),
                        cursor=self._cursor(stream, newest), rejected=rejected)

    # -- Rechecking -----------------------------------------------------------------

    async def vanished(self, keys: Sequence[str]) -> set[str]:
        """The at:// uris among *keys* that ``app.bsky.feed.getPosts`` no longer returns.

        Asked of the public AppView, ``GET_POSTS_MAX`` uris per request. The
        AppView leaves out a post that was deleted, and also one whose account
        is deactivated or taken down: either way it is no longer public, and is
        treated as gone. Raises :class:`SourceError` when the AppView cannot be
        asked (the re-check stream's health shows it).
        """
        gone: set[str] = set()
        wanted = [k for k in keys if k.startswith("at://")]
        for start in range(0, len(wanted), GET_POSTS_MAX):
            chunk = wanted[start:start + GET_POSTS_MAX]
            response = await self.http.request_json(
                "GET", self.appview + GET_POSTS, params=[("uris", uri) for uri in chunk],
                stream="recheck")
            data = response.data
            views = data.get("posts") if isinstance(data, dict) else None
            if not isinstance(views, list):
                raise SourceError(f"{self.endpoint} recheck: expected a getPosts answer with "
                                  f"a posts list, got {type(data).__name__}", retryable=True)
            present = {v.get("uri") for v in views if isinstance(v, dict)}
            gone.update(uri for uri in chunk if uri not in present)
        return gone

    # -- internals ----------------------------------------------------------------

    def _cursor(self, stream: StreamKey, newest: _Seen | None) -> Cursor | None:
        if newest is None:
            return None
        return Cursor(source=SOURCE, stream=stream.name, value=newest.dump())

    async def _search(self, stream: StreamKey, api_cursor: str | None, label: str
                      ) -> JsonResponse:
        params: list[tuple[str, Any]] = [
            ("q", f"#{stream.tag}"), ("tag", stream.tag), ("sort", "latest"),
            ("limit", self.cfg.page_limit),
        ]
        if api_cursor:
            params.append(("cursor", api_cursor))
        if self._has_login and self._session is None:
            await self._login(label)
        for _ in range(3):
            base = self.pds if self._session else self.appview
            headers = {"Authorization": f"Bearer {self._session.access}"} if self._session else {}
            try:
                return await self.http.request_json("GET", base + SEARCH, params=params,
                                                    headers=headers, stream=f"#{stream.tag}")
            except HttpStatusError as exc:
                if exc.status in (400, 401) and exc.error in ("ExpiredToken", "InvalidToken") \
                        and self._session is not None:
                    log.info("%s: session token expired; refreshing it", label)
                    await self._refresh(label)
                    continue
                if exc.status in (401, 403):
                    if self._has_login and self._session is None:
                        await self._login(label)
                        continue
                    if not self._has_login:
                        hint = ("Bluesky refuses search without a login "
                                f"(HTTP {exc.status} {exc.error or 'Forbidden'}); set identifier "
                                "and app_password (an app password) on the bluesky_search "
                                "source, or follow the tags with the jetstream source")
                        raise SourceError(f"{label}: {hint}", retryable=False,
                                          status=exc.status) from None
                raise
        raise SourceError(f"{label}: the server kept refusing the session token",
                          retryable=False)

    async def _login(self, label: str) -> None:
        if not self._has_login:
            raise SourceError(f"{label}: login needed but no identifier/app_password configured",
                              retryable=False)
        try:
            response = await self.http.request_json(
                "POST", self.pds + CREATE_SESSION, stream="createSession",
                json_body={"identifier": self.cfg.identifier, "password": self.cfg.app_password},
            )
        except HttpStatusError as exc:
            raise SourceError(f"{label}: Bluesky login failed (HTTP {exc.status} "
                              f"{exc.error or ''}); check identifier and app_password",
                              retryable=False, status=exc.status) from None
        self._session = self._session_from(response, label)
        log.info("%s: logged in to %s", label, urlsplit(self.pds).netloc)

    async def _refresh(self, label: str) -> None:
        assert self._session is not None
        try:
            response = await self.http.request_json(
                "POST", self.pds + REFRESH_SESSION, stream="refreshSession",
                headers={"Authorization": f"Bearer {self._session.refresh}"},
            )
        except HttpStatusError:
            # the refresh token expired too: a fresh login is the only way back
            self._session = None
            await self._login(label)
            return
        self._session = self._session_from(response, label)

    @staticmethod
    def _session_from(response: JsonResponse, label: str) -> _Session:
        data = response.data
        access = data.get("accessJwt") if isinstance(data, dict) else None
        refresh = data.get("refreshJwt") if isinstance(data, dict) else None
        if not isinstance(access, str) or not isinstance(refresh, str):
            raise SourceError(f"{label}: session answer has no accessJwt/refreshJwt",
                              retryable=True)
        return _Session(access=access, refresh=refresh)
