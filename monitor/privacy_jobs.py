"""The service's privacy jobs: retention by age, re-checking polled platforms for
deleted posts, and remembering deletions of posts not (yet) stored.

* **Retention** (``privacy.retention``): every ``retention.every`` the batches of
  :func:`monitor.store.retention.retention_batches` run one at a time in a
  worker thread, each under the service's write lock (:meth:`Service.exclusive`),
  so collection interleaves with them and no batch waits on a lock.
* **Re-check** (``privacy.recheck: 7d``): for each polled source that can answer
  (:class:`~monitor.sources.protocols.Rechecking`: Mastodon, Bluesky search), a
  job walks the platform's stored posts younger than the window in id order,
  ``RECHECK_CHUNK`` keys per request round, at most ``RECHECK_PER_RUN`` per run,
  and stores what vanished as an ordinary batch of deletions through the one
  write path. Its stream is ``recheck`` / ``<source>#*``: its health, cursor
  (the last post id asked about; "0" starts the walk over) and failures show
  in ``monitor status`` like any stream. Requests go through the shared
  HttpClient (per-host budget, retries).
* **Deletions of posts not stored** (:class:`RecentDeletions`): a firehose
  (Jetstream, Nostr) reports every deletion on the network, so the service
  records a ``deletions`` row only for posts it holds or is storing. The other
  keys are remembered here, bounded, for the life of the process: a post that
  shows up after its deletion (a replay, a relay's late copy) is dropped before
  it is stored or counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from monitor.config import Config
from monitor.enrich.post_keys import is_post_pseudonym, original_key
from monitor.errors import MonitorError
from monitor.models import Batch, Cursor, StreamKey
from monitor.sources.protocols import PolledSource, Rechecking
from monitor.store.kept import recheck_candidates
from monitor.store.retention import RetentionAges, retention_batches
from monitor.store.write import load_cursor, record_failure

__all__ = ["RECHECK_CHUNK", "RECHECK_PER_RUN", "RecentDeletions", "recheck_jobs",
           "recheck_stream", "retention_ages", "retention_job"]

log = logging.getLogger("monitor.privacy")

T = TypeVar("T")
Exclusive = Callable[[Callable[[], T]], Awaitable[T]]
Store = Callable[[Batch], Awaitable[Any]]

RECHECK_CHUNK = 100  # keys per vanished() call and per stored batch
RECHECK_PER_RUN = 5000  # posts asked about per run at most; the walk resumes next run
RECHECK_SOURCE = "recheck"


class RecentDeletions:
    """A bounded set of (platform, key): two generations of ``capacity`` each."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._current: set[tuple[str, str]] = set()
        self._previous: set[tuple[str, str]] = set()

    def __contains__(self, item: tuple[str, str]) -> bool:
        return item in self._current or item in self._previous

    def __bool__(self) -> bool:
        return bool(self._current or self._previous)

    def add(self, item: tuple[str, str]) -> None:
        if len(self._current) >= self.capacity:
            self._previous, self._current = self._current, set()
        self._current.add(item)

    def update(self, keys: Iterable[str], platforms: Iterable[str]) -> None:
        """Remember each of *keys* under each of *platforms*."""
        platforms = list(platforms)
        for key in keys:
            for platform in platforms:
                self.add((platform, key))


def retention_ages(config: Config) -> RetentionAges:
    r = config.privacy.retention
    # a link names its author (Mastodon, Bluesky): under hash or drop it is stored
    # only for the re-check (monitor.enrich.post_keys) and cleared past its window
    urls = config.privacy.recheck if config.privacy.authors != "keep" else None
    return RetentionAges(text=r.text, authors=r.authors, posts=r.posts, urls=urls)


def retention_job(config: Config, engine: Any, exclusive: Callable[..., Awaitable[Any]],
                  clock: Callable[[], datetime]) -> Callable[[], Awaitable[None]]:
    """The periodic retention pass (see the module docstring)."""
    ages = retention_ages(config)

    async def run() -> None:
        batches = retention_batches(engine, ages, clock())
        totals: dict[str, int] = {}
        while True:
            item = await exclusive(lambda: next(batches, None))
            if item is None:
                break
            kind, changed = item
            totals[kind] = totals.get(kind, 0) + changed
        if any(totals.values()):
            log.info("retention: %s", ", ".join(
                f"{n} {_WHAT[k]}" for k, n in totals.items() if n))

    return run


def _describe(exc: BaseException) -> str:
    """One line: our messages as they are, others with their type (no traceback)."""
    if isinstance(exc, MonitorError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_WHAT = {"posts": "old post rows deleted", "text": "texts cleared",
         "authors": "author pseudonyms cleared", "urls": "links cleared"}


def recheck_stream(src: Rechecking) -> StreamKey:
    """The stream a source's re-check reports as: ``recheck`` / ``<source>#*``."""
    return StreamKey(RECHECK_SOURCE, src.source, "*")


def recheck_jobs(config: Config, sources: Iterable[object], engine: Any, store: Store,
                 clock: Callable[[], datetime]
                 ) -> list[tuple[str, timedelta, Rechecking, Callable[[], Awaitable[None]]]]:
    """(name, interval, source, job) per polled platform that can be re-checked;
    none when ``privacy.recheck`` is off. One source per platform."""
    window = config.privacy.recheck
    if window is None:
        return []
    jobs: list[tuple[str, timedelta, Rechecking, Callable[[], Awaitable[None]]]] = []
    platforms: set[str] = set()
    for src in sources:
        if not isinstance(src, PolledSource) or not isinstance(src, Rechecking):
            continue
        if src.platform in platforms:
            continue
        platforms.add(src.platform)
        jobs.append((f"recheck {src.source}", config.privacy.recheck_every, src,
                     _recheck(src, window, engine, store, clock)))
    return jobs


def _recheck(src: Rechecking, window: timedelta, engine: Any, store: Store,
             clock: Callable[[], datetime]) -> Callable[[], Awaitable[None]]:
    stream = recheck_stream(src)

    def cursor(after: int) -> Cursor:
        return Cursor(RECHECK_SOURCE, stream.name, str(after))

    async def run() -> None:
        since = clock() - window
        saved = await asyncio.to_thread(load_cursor, engine, RECHECK_SOURCE, stream.name)
        after = int(saved.value) if saved is not None and saved.value.isdigit() else 0
        asked = gone_total = 0
        try:
            while asked < RECHECK_PER_RUN:
                rows = await asyncio.to_thread(recheck_candidates, engine, src.platform, since,
                                               after, RECHECK_CHUNK)
                # a pseudonymous key (authors: hash) is asked about by the key its
                # link gives; what vanished is passed back as stored (kept as is)
                ask = {(original_key(src.platform, url) if is_post_pseudonym(key) else key): key
                       for _, key, url in rows}
                ask.pop(None, None)
                gone = ({ask[k] for k in await src.vanished([k for k in ask if k]) if k in ask}
                        if ask else set())
                asked += len(rows)
                gone_total += len(gone)
                done = len(rows) < RECHECK_CHUNK
                after = 0 if done else rows[-1][0]  # at the end: start over next run
                await store(Batch(stream=stream, deleted=tuple(sorted(gone)),
                                  cursor=cursor(after)))
                if done:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = _describe(exc)
            log.warning("recheck %s failed: %s; resuming at the next run", src.source, message)
            await asyncio.to_thread(record_failure, engine, stream, message, clock())
            return
        log.info("recheck %s: asked about %d post%s, %d gone", src.source, asked,
                 "" if asked == 1 else "s", gone_total)

    return run
