"""Misskey and its forks (Sharkey, Firefish, Iceshrimp, ...): ``notes/search-by-tag``.

Streams are instances × tags; the cursor of a stream is the newest note id
seen on that instance (``aid``/``aidx`` ids sort by time as strings).

* ``POST /api/notes/search-by-tag`` with JSON ``{"tag", "limit", "untilId" |
  "sinceId"}`` (and ``"i": token`` when an access token is configured; most
  instances need none).
* First run (no cursor): ``untilId`` pages newest-first, up to
  ``backfill_pages``, handed over oldest page first.
* Later: ``sinceId=<cursor>`` returns the ``limit`` notes right after the
  cursor, oldest first (Misskey's ``makePaginationQuery`` sorts ascending when
  only ``sinceId`` is given); repeat until an empty page, so a catch-up after
  downtime has no gap. The page order is not relied on: the cursor is the
  largest id on the page.
* Renotes are not counted twice: a *pure* renote (no text, no content
  warning, no files, no poll, with ``renote``) is the renoted note itself, and
  every note is keyed by its ActivityPub id (``uri`` for a remote note,
  ``https://<instance>/notes/<id>`` for a local one), so the renoted note, its
  renotes and its federated copies on other instances are one post. A quote
  (a renote with text) is a post of its own.

Could not confirm (no running instance to ask, checked against the
misskey-js/megalodon Note types and the endpoint source only):
* whether ``search-by-tag`` ever returns pure renotes (they carry no tags);
  they are unwrapped anyway;
* the rate-limit answer: 429 with ``{"error": {"code": "RATE_LIMIT_EXCEEDED"}}``;
  whether ``Retry-After`` / ``X-RateLimit-*`` headers come with it differs by
  version (the shared transport uses them when present, else backs off);
* whether forks keep ``sinceId`` ascending (the collector does not depend on it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from monitor.durations import Duration
from monitor.errors import SourceError
from monitor.models import Batch, Cursor, Post, StreamKey
from monitor.sources.errors import HttpStatusError
from monitor.sources.fields import Rejected, base_url, iso_time, opt_str, req_str
from monitor.sources.http import HttpClient, JsonResponse
from monitor.sources.settings import SourceContext, SourceSettings

__all__ = ["MisskeyCollector", "MisskeySource", "note_key", "parse_note"]

log = logging.getLogger("monitor.sources.misskey")

PLATFORM = SOURCE = "misskey"
MAX_CATCHUP_PAGES = 500


class MisskeySource(SourceSettings):
    """``notes/search-by-tag`` on one or more Misskey-API instances."""

    type: Literal["misskey"]
    instances: list[str] = Field(min_length=1)
    tags: list[str] | None = None
    interval: Duration = timedelta(minutes=2)
    jitter: Duration = timedelta(seconds=10)
    backfill_pages: int = Field(default=5, ge=0, le=10_000)
    page_limit: int = Field(default=100, ge=1, le=100)
    access_token: str | None = None


def _is_pure_renote(note: Mapping[str, Any]) -> bool:
    return (note.get("text") is None and note.get("cw") is None and not note.get("fileIds")
            and not note.get("files") and note.get("poll") is None
            and isinstance(note.get("renote"), dict))


def note_key(note: Mapping[str, Any], base: str) -> str:
    """The note's ActivityPub id: ``uri`` when remote, else this instance's note URL."""
    uri = note.get("uri")
    if isinstance(uri, str) and uri:
        return uri
    return f"{base}/notes/{req_str(note, 'id')}"


def parse_note(note: Any, base: str, raw_size: int = 0) -> Post:
    """A Note → Post (a pure renote → the renoted note). Raises :class:`Rejected`."""
    if not isinstance(note, dict):
        raise Rejected("(note)", f"expected an object, got {type(note).__name__}")
    prefix = ""
    if _is_pure_renote(note):
        note, prefix = note["renote"], "renote."
    uri = note.get("uri")
    if not (isinstance(uri, str) and uri) and not (isinstance(note.get("id"), str)
                                                   and note["id"]):
        raise Rejected(prefix + "id", "missing or not a string")
    key = note_key(note, base)
    created = iso_time(note.get("createdAt"), prefix + "createdAt")
    user = note.get("user")
    if not isinstance(user, dict):
        raise Rejected(prefix + "user", "missing or not an object")
    username = req_str(user, "username", label=prefix + "user.username")
    host = opt_str(user, "host", label=prefix + "user.host") or urlsplit(base).netloc
    text = opt_str(note, "text", label=prefix + "text")
    cw = opt_str(note, "cw", label=prefix + "cw")
    raw_tags = note.get("tags") or []
    if not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
        raise Rejected(prefix + "tags", "expected a list of strings")
    url = opt_str(note, "url", label=prefix + "url") or key
    return Post(platform=PLATFORM, key=key, created_at=created, url=url,
                author=f"{username}@{host}", text=text or "", tags=tuple(raw_tags),
                is_repost=False, sensitive=cw is not None, raw_size=raw_size)


class MisskeyCollector:
    """Polls ``notes/search-by-tag`` on every configured instance for every tag."""

    source = SOURCE
    platform = PLATFORM

    def __init__(self, cfg: MisskeySource, config: SourceContext, http: HttpClient) -> None:
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
        if cursor is None or not cursor.value:
            async for batch in self._backfill(stream):
                yield batch
            return
        since, pages = cursor.value, 0
        while pages < MAX_CATCHUP_PAGES:
            notes, response = await self._fetch(stream, {"sinceId": since})
            if not notes:
                if pages == 0:
                    yield Batch(stream=stream)
                return
            posts, rejected, ids = self._parse_page(stream, notes, response)
            newest = max(ids, default=since)
            if newest <= since:
                log.warning("%s: the instance ignored sinceId=%s (returned older notes); "
                            "stopping this poll", label_of(stream), since)
                return
            since, pages = newest, pages + 1
            yield Batch(stream=stream, posts=tuple(posts), cursor=self._cursor(stream, since),
                        rejected=rejected)
        log.info("%s: caught up %d pages this tick; continuing next tick", label_of(stream),
                 pages)

    async def _backfill(self, stream: StreamKey) -> AsyncIterator[Batch]:
        pages: list[tuple[list[Post], int, list[str]]] = []
        until: str | None = None
        limit = self.cfg.page_limit if self.cfg.backfill_pages else 1
        while len(pages) < max(1, self.cfg.backfill_pages):
            notes, response = await self._fetch(stream, {"untilId": until} if until else {},
                                                limit=limit)
            if not notes:
                break
            page = self._parse_page(stream, notes, response)
            if not page[2]:
                break
            pages.append(page)
            until = min(page[2])
        if not pages:
            yield Batch(stream=stream)
            return
        if self.cfg.backfill_pages == 0:  # no history wanted: only learn where "now" is
            yield Batch(stream=stream, cursor=self._cursor(stream, max(pages[0][2])))
            return
        log.info("%s: first run, backfilled %d page(s)", label_of(stream), len(pages))
        for posts, rejected, ids in reversed(pages):
            yield Batch(stream=stream, posts=tuple(posts), cursor=self._cursor(stream, max(ids)),
                        rejected=rejected)

    async def _fetch(self, stream: StreamKey, extra: Mapping[str, Any], *,
                     limit: int | None = None) -> tuple[list[Any], JsonResponse]:
        base = self._bases.get(stream.endpoint)
        if base is None:
            raise SourceError(f"{stream.endpoint}: not a configured Misskey instance",
                              retryable=False)
        body: dict[str, Any] = {"tag": stream.tag, "limit": limit or self.cfg.page_limit,
                                **extra}
        if self.cfg.access_token:
            body["i"] = self.cfg.access_token
        try:
            response = await self.http.request_json(
                "POST", f"{base}/api/notes/search-by-tag", json_body=body,
                stream=f"#{stream.tag}")
        except HttpStatusError as exc:
            if exc.status in (401, 403):
                hint = ("the access_token was refused" if self.cfg.access_token else
                        "this instance requires a login; set access_token on this misskey "
                        "source")
                raise SourceError(f"{label_of(stream)}: HTTP {exc.status}: {hint}",
                                  retryable=False, status=exc.status) from None
            raise
        if not isinstance(response.data, list):
            raise SourceError(f"{label_of(stream)}: expected a JSON array of notes, got "
                              f"{type(response.data).__name__}", retryable=True)
        return response.data, response

    def _parse_page(self, stream: StreamKey, notes: list[Any], response: JsonResponse
                    ) -> tuple[list[Post], int, list[str]]:
        base = self._bases[stream.endpoint]
        size = response.size // max(1, len(notes))
        posts: list[Post] = []
        ids: list[str] = []
        rejected = 0
        for note in notes:
            nid = note.get("id") if isinstance(note, dict) else None
            try:
                if not isinstance(nid, str) or not nid:
                    raise Rejected("id", "missing or not a string")
                ids.append(nid)
                posts.append(parse_note(note, base, size))
            except Rejected as exc:
                rejected += 1
                log.warning("misskey: skipped note %s on %s: field %s %s", nid or "(no id)",
                            label_of(stream), exc.field, exc.problem)
        return posts, rejected, ids

    @staticmethod
    def _cursor(stream: StreamKey, newest: str) -> Cursor:
        return Cursor(source=SOURCE, stream=stream.name, value=newest)


def label_of(stream: StreamKey) -> str:
    return f"{stream.endpoint} #{stream.tag}"

