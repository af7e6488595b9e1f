"""Mastodon (and Mastodon-API servers): hashtag timelines on any number of instances.

Streams are instances × tags; the cursor of a stream is the newest status id
seen on that instance (ids are opaque strings that differ per instance; the
same status federated to several instances shares its ``uri``, which is the
post key, so the store keeps it once).

* First run (no cursor): backfill newest-first with ``max_id`` (following the
  ``Link: rel="next"`` header) up to ``backfill_pages`` pages, then hand the
  pages over oldest first, each with its own newest id as cursor.
* Later runs: ``min_id=<cursor>`` returns the page immediately newer than the
  cursor; repeat until an empty page. After downtime this catches up page by
  page with no gap (``since_id`` would jump to the newest page and leave one).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

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
from monitor.sources.settings import MastodonSource, SourceContext

__all__ = ["MastodonCollector", "StatusRejected", "id_newer", "label_of", "parse_link_header",
           "parse_status"]

log = logging.getLogger("monitor.sources.mastodon")

PLATFORM = "mastodon"
SOURCE = "mastodon"
# A poll that has caught up this many pages stops and continues next tick, so
# one stream cannot hold the host budget forever after a long outage.
MAX_CATCHUP_PAGES = 500
# Statuses remembered per instance for turning a live ``delete`` (a local id) into
# the post's key: about 100 bytes each, so at most ~5 MB per instance.
RECENT_IDS = 50_000

_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?([^",;]+)"?')
# a Mastodon status uri: https://<origin host>/users/<name>/statuses/<id on the origin>
_STATUS_URI = re.compile(r"^https?://([^/?#]+)/users/[^/?#]+/statuses/([^/?#]+)$")


def id_newer(a: str, b: str) -> bool:
    """True when status id *a* is newer than *b* on the same instance.

    Mastodon ids are numeric strings of growing length (snowflakes); compare
    by length, then lexically, so no id is ever turned into an int.
    """
    return (len(a), a) > (len(b), b)


def _newest(ids: list[str]) -> str:
    return max(ids, key=lambda i: (len(i), i))


def parse_link_header(value: str | None) -> dict[str, str]:
    """``Link`` header → {rel: url}."""
    if not value:
        return {}
    return {rel: url for url, rel in _LINK.findall(value)}


class StatusRejected(ValueError):
    """A malformed status; names the field and the problem, never the text."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise StatusRejected(field, f"expected an ISO-8601 time, got {type(value).__name__}")
    try:
        return utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise StatusRejected(field, "expected an ISO-8601 time") from None


def _opt_str(status: Mapping[str, Any], field: str) -> str | None:
    value = status.get(field)
    if value is None or isinstance(value, str):
        return value
    raise StatusRejected(field, f"expected a string or null, got {type(value).__name__}")


def parse_status(status: Any, instance: str, raw_size: int = 0) -> Post:
    """A Status entity → Post. Raises ValueError (with ``.field``) for a malformed one."""
    if not isinstance(status, dict):
        raise StatusRejected("(status)", f"expected an object, got {type(status).__name__}")
    uri = status.get("uri")
    if not isinstance(uri, str) or not uri:
        raise StatusRejected("uri", "missing or not a string")
    try:
        # year 0001 or 9999 would fake the stream's last post and lag (issue 11)
        created_at = plausible_created(_parse_time(status.get("created_at"), "created_at"))
    except ImplausibleDate as exc:
        raise StatusRejected("created_at", str(exc)) from None
    content = status.get("content")
    if not isinstance(content, str):
        raise StatusRejected("content", "missing or not a string")
    account = status.get("account")
    acct = account.get("acct") if isinstance(account, dict) else None
    if not isinstance(acct, str) or not acct:
        raise StatusRejected("account.acct", "missing or not a string")
    if "@" not in acct:  # local accounts carry no domain; make the handle global
        acct = f"{acct}@{instance}"
    raw_tags = status.get("tags", [])
    if not isinstance(raw_tags, list):
        raise StatusRejected("tags", f"expected a list, got {type(raw_tags).__name__}")
    tags: list[str] = []
    for index, tag in enumerate(raw_tags):
        name = tag.get("name") if isinstance(tag, dict) else None
        if not isinstance(name, str):
            raise StatusRejected(f"tags[{index}].name", "missing or not a string")
        tags.append(name)
    sensitive = status.get("sensitive", False)
    if not isinstance(sensitive, bool):
        raise StatusRejected("sensitive", f"expected true/false, got {type(sensitive).__name__}")
    spoiler = _opt_str(status, "spoiler_text") or ""
    reblog = status.get("reblog")
    if reblog is not None and not isinstance(reblog, dict):
        raise StatusRejected("reblog", f"expected an object or null, got {type(reblog).__name__}")
    return Post(
        platform=PLATFORM,
        key=uri,
        created_at=created_at,
        url=_opt_str(status, "url"),
        author=acct,
        html=content,
        lang=_opt_str(status, "language"),
        tags=tuple(tags),
        is_repost=reblog is not None,
        sensitive=sensitive or bool(spoiler.strip()),
        raw_size=raw_size,
    )


def _base_url(instance: str) -> str:
    text = instance.strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    return text


class MastodonCollector:
    """Polls ``/api/v1/timelines/tag/:tag`` on every configured instance for every tag."""

    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: MastodonSource, config: SourceContext, http: HttpClient) -> None:
        self.cfg = cfg
        self.http = http
        self.tags = config.followed(cfg.tags)
        self._bases: dict[str, str] = {}
        for instance in cfg.instances:
            base = _base_url(instance)
            self._bases[urlsplit(base).netloc] = base
        self._told: set[tuple[str, str]] = set()  # (stream, reason) already logged at INFO
        # instance → {local status id: uri} of recently seen statuses (see remember)
        self.recent: dict[str, OrderedDict[str, str]] = {}

    # -- PolledSource -------------------------------------------------------------

    def streams(self) -> list[StreamKey]:
        return [StreamKey(SOURCE, host, tag) for host in self._bases for tag in self.tags]

    def interval(self) -> timedelta:
        return self.cfg.interval

    def jitter(self) -> timedelta:
        return self.cfg.jitter

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        """New statuses of one (instance, tag); see the module docstring for the paging."""
        if cursor is None or not cursor.value:
            async for batch in self._backfill(stream):
                yield batch
            return
        since = cursor.value
        pages = 0
        while pages < MAX_CATCHUP_PAGES:
            response = await self._fetch(stream, {"min_id": since})
            if response is None:
                break
            statuses = self._statuses(stream, response)
            if not statuses:
                if pages == 0:
                    yield Batch(stream=stream)  # nothing new: still a successful poll
                break
            posts, rejected, ids = self._parse_page(stream, statuses, response)
            newest = _newest(ids) if ids else since
            if not id_newer(newest, since):
                log.warning("%s: the instance ignored min_id=%s (returned older statuses); "
                            "stopping this poll", self._label(stream), since)
                break
            since = newest
            pages += 1
            yield Batch(stream=stream, posts=tuple(posts), cursor=self._cursor(stream, since),
                        rejected=rejected)
        else:
            log.info("%s: caught up %d pages this tick; continuing next tick",
                     self._label(stream), pages)

    def remember(self, instance: str, sid: str, uri: str) -> None:
        """Note that status *sid* of *instance* is *uri*, for its ``delete`` event.

        The live stream announces a deletion by the instance-local id only,
        while posts are keyed by ``uri``; this map (filled by polls and live
        updates alike, bounded per instance, least recently seen dropped first)
        is how the id is turned back into the key. See mastodon_live for its limits.
        """
        seen = self.recent.setdefault(instance, OrderedDict())
        seen[sid] = uri
        seen.move_to_end(sid)
        while len(seen) > RECENT_IDS:
            seen.popitem(last=False)

    def uri_of(self, instance: str, sid: str) -> str | None:
        """The uri of status *sid* of *instance*, if it was seen recently."""
        seen = self.recent.get(instance)
        return seen.get(sid) if seen is not None else None

    def base_url(self, endpoint: str) -> str:
        """The API base URL of a configured instance (a stream's ``endpoint``)."""
        return self._bases[endpoint]

    # -- Rechecking -----------------------------------------------------------------

    async def vanished(self, keys: Sequence[str]) -> set[str]:
        """The status uris among *keys* whose origin server answers 404/410.

        A key is the status ``uri``, which names the server the status was
        posted on and, in Mastodon's shape ``…/users/<name>/statuses/<id>``, its
        id there. That origin is the authority on a deletion (an instance that
        merely received a copy may keep it when the Delete never arrived), so
        it is asked ``GET /api/v1/statuses/<id>``: a configured instance through
        its configured URL (and token), any other origin over https without
        one. Other uri shapes (Misskey, Pleroma …) and every answer but a clear
        404/410 count as "still there"; after a failure the rest of that
        origin's keys wait for the next run.
        """
        gone: set[str] = set()
        failed: set[str] = set()
        for key in keys:
            match = _STATUS_URI.match(key)
            if match is None:
                continue
            host, status_id = match.group(1), match.group(2)
            if host in failed:
                continue
            base = self._bases.get(host)
            headers = ({"Authorization": f"Bearer {self.cfg.access_token}"}
                       if base is not None and self.cfg.access_token else {})
            url = f"{base or 'https://' + host}/api/v1/statuses/{quote(status_id, safe='')}"
            try:
                response = await self.http.request_json("GET", url, headers=headers,
                                                        stream="recheck", max_retries=1)
            except HttpStatusError as exc:
                if exc.status in (404, 410):
                    gone.add(key)
                else:  # 401/403 (a private or login-only server): cannot tell
                    failed.add(host)
                continue
            except SourceError as exc:
                log.info("mastodon recheck: %s did not answer (%s); asking again next run",
                         host, exc)
                failed.add(host)
                continue
            data = response.data
            if isinstance(data, dict) and isinstance(data.get("uri"), str) \
                    and data["uri"] != key:
                log.debug("mastodon recheck: %s id %s is another status", host, status_id)
        return gone

    # -- internals ----------------------------------------------------------------

    async def _backfill(self, stream: StreamKey) -> AsyncIterator[Batch]:
        """First run: walk back ``backfill_pages`` pages, then yield them oldest first."""
        depth = self.cfg.backfill_pages
        pages: list[tuple[list[Post], int, list[str]]] = []
        params: dict[str, Any] = {}
        url: str | None = None
        if depth == 0:
            # no history wanted: only learn where "now" is
            response = await self._fetch(stream, {"limit": 1})
            statuses = self._statuses(stream, response) if response else []
            ids = [s["id"] for s in statuses
                   if isinstance(s, dict) and isinstance(s.get("id"), str)]
            yield Batch(stream=stream, cursor=self._cursor(stream, _newest(ids)) if ids else None)
            return
        while len(pages) < depth:
            response = await self._fetch(stream, params, url=url)
            if response is None:
                break
            statuses = self._statuses(stream, response)
            if not statuses:
                break
            posts, rejected, ids = self._parse_page(stream, statuses, response)
            if not ids:
                break
            pages.append((posts, rejected, ids))
            oldest = min(ids, key=lambda i: (len(i), i))
            next_url = parse_link_header(response.headers.get("link")).get("next")
            base = self._bases[stream.endpoint]
            if next_url and urlsplit(next_url).netloc == urlsplit(base).netloc:
                url, params = next_url, {}
            else:
                url, params = None, {"max_id": oldest}
        if not pages:
            key = (stream.name, "empty")
            if key not in self._told:
                self._told.add(key)
                log.info("%s: no posts yet (an empty tag timeline; if this instance keeps "
                         "hashtag feeds private, set access_token)", self._label(stream))
            yield Batch(stream=stream)
            return
        log.info("%s: first run, backfilled %d page(s)", self._label(stream), len(pages))
        for posts, rejected, ids in reversed(pages):
            yield Batch(stream=stream, posts=tuple(posts),
                        cursor=self._cursor(stream, _newest(ids)), rejected=rejected)

    async def _fetch(
        self, stream: StreamKey, params: Mapping[str, Any], *, url: str | None = None
    ) -> JsonResponse | None:
        """One timeline page; None when the tag does not exist there (yet)."""
        base = self._bases.get(stream.endpoint)
        if base is None:
            raise SourceError(f"{stream.endpoint}: not a configured Mastodon instance",
                              retryable=False)
        headers = {}
        if self.cfg.access_token:
            headers["Authorization"] = f"Bearer {self.cfg.access_token}"
        query: dict[str, Any] = {}
        if url is None:
            url = f"{base}/api/v1/timelines/tag/{quote(stream.tag, safe='')}"
            query = {"limit": self.cfg.page_limit, **params}
        try:
            return await self.http.request_json("GET", url, params=query or None,
                                                headers=headers, stream=f"#{stream.tag}")
        except HttpStatusError as exc:
            label = self._label(stream)
            if exc.status == 404:
                key = (stream.name, "404")
                if key not in self._told:
                    self._told.add(key)
                    log.info("%s: HTTP 404 (%s): the instance does not know this tag yet; "
                             "checking again next tick", label, exc.error or "Record not found")
                return None
            if exc.status in (401, 403):
                hint = ("the access_token was refused; check it has read:statuses"
                        if self.cfg.access_token else
                        "this instance requires a login for hashtag timelines; "
                        "set access_token on this mastodon source")
                raise SourceError(f"{label}: HTTP {exc.status} ({exc.error or 'unauthorised'})"
                                  f": {hint}", retryable=False, status=exc.status) from None
            raise

    def _statuses(self, stream: StreamKey, response: JsonResponse) -> list[Any]:
        data = response.data
        if not isinstance(data, list):
            label = self._label(stream)
            raise SourceError(f"{label}: expected a JSON array of statuses, got "
                              f"{type(data).__name__}", retryable=True)
        return data

    def _parse_page(
        self, stream: StreamKey, statuses: list[Any], response: JsonResponse
    ) -> tuple[list[Post], int, list[str]]:
        """(posts, rejected count, every status id on the page, for the cursor)."""
        size = response.size // max(1, len(statuses))
        posts: list[Post] = []
        ids: list[str] = []
        rejected = 0
        for status in statuses:
            sid = status.get("id") if isinstance(status, dict) else None
            if isinstance(sid, str) and sid:
                ids.append(sid)
            try:
                if not isinstance(sid, str) or not sid:
                    raise StatusRejected("id", "missing or not a string")
                post = parse_status(status, stream.endpoint, size)
                posts.append(post)
                self.remember(stream.endpoint, sid, post.key)
            except StatusRejected as exc:
                rejected += 1
                # the instance-local id names the status without naming its author
                ref = sid if isinstance(sid, str) and sid else (
                    status.get("uri") if isinstance(status, dict) else None)
                log.warning("mastodon: skipped status %s on %s: field %s %s",
                            ref or "(no id)", self._label(stream), exc.field, exc.problem)
        return posts, rejected, ids

    def _cursor(self, stream: StreamKey, newest: str) -> Cursor:
        return Cursor(source=SOURCE, stream=stream.name, value=newest)

    @staticmethod
    def _label(stream: StreamKey) -> str:
        return label_of(stream)


def label_of(stream: StreamKey) -> str:
    """How log lines name a Mastodon stream: ``instance #tag``."""
    return f"{stream.endpoint} #{stream.tag}"
