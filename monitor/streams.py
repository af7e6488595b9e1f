"""Which streams the service runs, and changing them while it runs.

One poll job per polled stream (a Mastodon instance × tag, a Bluesky search
tag …), one supervised task per streaming source (Jetstream, Mastodon live).
:class:`StreamJobs` schedules them at start and, once per poll interval, reads
the followed tags changed at run time (``monitor tags add|remove``, kept in the
``followed_tags`` table: :mod:`monitor.store.followed`). When they changed it
rebuilds the collectors that follow the top-level ``hashtags`` (a source with
its own ``tags:`` keeps them) and:

* a new stream gets a poll job that runs at once; it has no cursor yet, so its
  first poll is the source's usual backfill;
* a stream no longer followed loses its job; a poll in progress finishes and
  commits (the scheduler does not cancel a running job), so nothing fetched is
  lost, and its cursor stays, so following the tag again resumes where it was;
* a kept stream keeps its schedule, polled by the new collector;
* a streaming source whose tags changed is restarted from its saved cursor
  (the batch being written is finished first; what it held unwritten is
  fetched again from that cursor).

On PostgreSQL (several processes may share the database, :mod:`monitor.cluster`)
a poll "job" is an entry in the host jobs: the stream is polled when its host's
procrastinate job runs in this process, and a streaming source's task runs only
while this process leads it. The run-time changes above apply the same way.

Why the database and not a SIGHUP reload: the tags change from any shell that
reaches the database (also on another host, with several service processes on
one PostgreSQL), the change survives a restart without editing config.yaml,
and ``monitor tags list`` shows what the service follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from monitor.cluster.runtime import Cluster
from monitor.config import Config
from monitor.models import StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.protocols import PolledSource, StreamingSource
from monitor.sources.registry import build_sources
from monitor.store.followed import effective_tags, read_changes

__all__ = ["ServiceJobs", "StreamJobs", "followed_now"]


class ServiceJobs(Protocol):
    """What :class:`StreamJobs` uses of :class:`monitor.service.Service` (which imports
    this module, so it is named here by shape, not imported)."""

    config: Config
    engine: Engine
    shutdown_grace: float
    _platforms: dict[str, set[str]]

    async def _poll_job(self, src: PolledSource, stream: StreamKey) -> None: ...

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[None]],
                         streams: Sequence[StreamKey]) -> None: ...

    def _streamer(self, src: StreamingSource) -> Callable[[], Awaitable[None]]: ...

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]: ...

    def _schedule_periodic(self, scheduler: AsyncIOScheduler, name: str, interval: timedelta,
                           fn: Callable[[], Awaitable[None]]) -> None: ...

log = logging.getLogger("monitor.service")

Collector = PolledSource | StreamingSource

# how often the run-time tag changes are read: the shortest poll interval,
# within these bounds (a change applies before the next poll of most streams)
_CHECK_MIN = timedelta(seconds=0.5)
_CHECK_MAX = timedelta(seconds=30)


def followed_now(config: Config, engine: Engine) -> list[str]:
    """The tags followed now: the config's ``hashtags`` with the run-time changes applied."""
    return effective_tags(config.hashtags, read_changes(engine))


def _signature(src: Collector) -> tuple[object, ...]:
    # what a rebuilt collector must match to be kept as it is
    return (type(src), tuple(src.streams()), tuple(getattr(src, "tags", None) or ()))


class StreamJobs:
    """The poll jobs and streaming tasks of one :meth:`Service.run`."""

    def __init__(self, service: ServiceJobs, scheduler: AsyncIOScheduler, http: HttpClient,
                 cluster: Cluster | None = None) -> None:
        self.service = service
        self.scheduler = scheduler
        self.http = http
        # PostgreSQL: polls go into host jobs shared by every process, streaming
        # sources run only in their leader (monitor.cluster); None: local timers
        self.cluster = cluster
        self.base = service.config  # the config as loaded: run-time changes apply to it
        self.tags = list(service.config.hashtags)
        self.sources: list[Collector] = []
        self._tasks: dict[int, asyncio.Task[Any]] = {}  # source index → its streaming task
        self.polled = 0
        self.streaming = 0

    async def start(self) -> list[Collector]:
        """Build the collectors for the tags followed now, and schedule every stream."""
        tags = await asyncio.to_thread(followed_now, self.base, self.service.engine)
        if tags and tags != self.tags:
            log.info("following %s (changed with `monitor tags`)", ", ".join(tags))
            self._use(tags)
        self.sources = build_sources(self.service.config, self.http)
        now = datetime.now(UTC)
        for index, src in enumerate(self.sources):
            if isinstance(src, StreamingSource):
                self._start_streaming(index, src)
                self.streaming += 1
                continue
            for n, stream in enumerate(src.streams()):
                # spread the first polls so a hundred streams do not start at once
                if self._add_poll(src, stream, now + timedelta(seconds=min(n * 0.1, 10.0))):
                    self.polled += 1
        intervals = [s.interval() for s in self.sources if not isinstance(s, StreamingSource)]
        every = min([_CHECK_MAX, *intervals])
        self.service._schedule_periodic(self.scheduler, "followed-tags",
                                        max(every, _CHECK_MIN), self.refresh)
        return self.sources

    def _use(self, tags: list[str]) -> None:
        self.tags = tags
        # model_copy skips validation: the tags were normalised when they were stored
        self.service.config = self.base.model_copy(update={"hashtags": tags})

    def _add_poll(self, src: PolledSource, stream: StreamKey, first: datetime) -> bool:
        job_id = f"poll:{stream.source}:{stream.name}"
        if self.scheduler.get_job(job_id) is not None or (
                self.cluster is not None and not self.cluster.jobs.add(src, stream)):
            log.warning("%s %s is configured twice; polling it once", stream.source, stream.name)
            return False
        self.service._platforms.setdefault(stream.source, set()).add(src.platform)
        if self.cluster is not None:
            return True  # polled when its host's job comes (monitor.cluster.jobs)
        interval = src.interval()
        jitter = src.jitter()
        self.scheduler.add_job(
            self.service._poll_job, IntervalTrigger(
                seconds=max(interval.total_seconds(), 0.05),
                jitter=jitter.total_seconds() or None, timezone=UTC),
            args=(src, stream), id=job_id, name=f"poll {stream.source} {stream.name}",
            max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(interval.total_seconds())),
            next_run_time=first,
        )
        return True

    def _start_streaming(self, index: int, src: StreamingSource) -> None:
        streams = src.streams()
        for stream in streams:
            self.service._platforms.setdefault(stream.source, set()).add(src.platform)

        def start() -> asyncio.Task[Any]:
            return self.service._spawn(
                self.service._supervise(f"{src.source} stream", self.service._streamer(src),
                                        streams), f"stream:{src.source}")

        if self.cluster is None:
            self._tasks[index] = start()
        else:  # only while this process leads the source (monitor.cluster.leader)
            self._tasks[index] = self.service._spawn(self.cluster.lead(src.source, start),
                                                     f"lead:{src.source}")

    # ------------------------------------------------------------------ run-time changes

    async def refresh(self) -> None:
        """Apply the tags changed with ``monitor tags`` since the last look (a periodic job)."""
        tags = await asyncio.to_thread(followed_now, self.base, self.service.engine)
        if tags == self.tags:
            return
        if not tags:
            log.warning("the run-time tag changes leave no tag to follow; keeping %s",
                        ", ".join(self.tags))
            return
        before = set(self.tags)
        self._use(tags)
        added = [t for t in tags if t not in before]
        removed = sorted(before.difference(tags))
        log.info("followed tags changed: %s%s%s", "+" + ", +".join(added) if added else "",
                 "; " if added and removed else "",
                 "-" + ", -".join(removed) if removed else "")
        await self.apply(build_sources(self.service.config, self.http))

    async def apply(self, sources: Sequence[Collector]) -> None:
        """Replace the collectors whose streams or tags differ in *sources* (same config order)."""
        now = datetime.now(UTC)
        for index, (old, new) in enumerate(zip(self.sources, sources, strict=True)):
            if _signature(old) == _signature(new):
                continue  # its own `tags:` list: untouched
            if isinstance(new, StreamingSource):
                await self._restart_streaming(index, new)
                continue
            assert isinstance(old, PolledSource)
            kept = {s.name for s in new.streams()}
            for stream in old.streams():
                if stream.name not in kept:
                    job = self.scheduler.get_job(f"poll:{stream.source}:{stream.name}")
                    if job is not None:
                        job.remove()
                        self.polled -= 1
                    elif self.cluster is not None and self.cluster.jobs.remove(stream):
                        self.polled -= 1
            for stream in new.streams():
                job = self.scheduler.get_job(f"poll:{stream.source}:{stream.name}")
                if self.cluster is not None and self.cluster.jobs.replace(new, stream):
                    continue  # its host's next job polls it with the new collector
                if job is not None:
                    job.modify(args=(new, stream))  # same schedule, the new collector
                elif self._add_poll(new, stream, now):
                    self.polled += 1
        self.sources = list(sources)

    async def _restart_streaming(self, index: int, src: StreamingSource) -> None:
        task = self._tasks.pop(index, None)
        if task is not None and not task.done():
            task.cancel()
            # a write in hand is finished and committed before the task ends (Service.store)
            await asyncio.wait([task], timeout=self.service.shutdown_grace)
        self._start_streaming(index, src)
