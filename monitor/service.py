"""The service: sources → enrich → store on a schedule, until told to stop.

Wiring only; every stage is its own module:

* each polled stream (a Mastodon instance × tag, a Bluesky search tag) is one
  APScheduler job with the source's interval and jitter, ``max_instances=1``
  (a slow poll is never overlapped by the next) and ``coalesce=True`` (after a
  pause, missed runs collapse into one);
* each streaming source (Jetstream) is a supervised task, restarted with
  backoff from its saved cursor when it fails;
* every :class:`~monitor.models.Batch` goes through
  :meth:`Enricher.enrich_many` and :func:`write_batch` in a worker thread:
  posts, tags, buckets, deletions, the cursor and the stream's health in one
  transaction, one batch at a time (concurrent upserts of the same bucket rows
  could deadlock on PostgreSQL);
* a failure is one log line and a row in ``stream_health``; it never stops
  the other streams;
* on stop (SIGINT/SIGTERM in ``monitor run``) the batch being written is
  finished and committed, the rest is cancelled (its cursor was not saved, so
  the next start fetches it again), and :meth:`Service.run` returns within
  ``shutdown_grace`` seconds.

On PostgreSQL every ``monitor run`` is a member of its database's cluster
(issue 14, :mod:`monitor.cluster`): polled streams are leased by host through
procrastinate jobs instead of local timers, streaming sources run only in their
leader, and the re-check job in one process at a time. SQLite: as described above.

Later stages hook in with :meth:`Service.add_periodic`,
:meth:`Service.add_background` and :meth:`Service.add_after_store`; jobs that
must not overlap a batch write (retention) run through :meth:`Service.exclusive`.

Long because it is the one place that owns every job's lifecycle — polls,
streams, periodic and re-check jobs, the serialised write path and a bounded
shutdown — and splitting those apart would spread the stop/cancel rules.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.backoff import Backoff
from monitor.cluster.runtime import Cluster, clustered
from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.errors import MonitorError
from monitor.locks import RoleLock
from monitor.metrics import observe_write
from monitor.models import Batch, ScoredPost, StreamKey
from monitor.outage import DatabaseOutage, LongPollFilter
from monitor.privacy_jobs import RecentDeletions, recheck_jobs, recheck_stream
from monitor.sources.errors import format_wait
from monitor.sources.http import HttpClient
from monitor.sources.protocols import PolledSource, StreamingSource
from monitor.store.db import redact_url
from monitor.store.edits import apply_edits
from monitor.store.posts import existing_posts
from monitor.store.write import WriteResult, load_cursor, record_failure, write_batch
from monitor.streams import StreamJobs

__all__ = ["Service", "StoredBatch"]

log = logging.getLogger("monitor.service")

T = TypeVar("T")

# How long a supervised task must have run before its backoff starts over.
_HEALTHY_RUN = 60.0


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What an after-store hook is told: the stream, the scored posts and what was new."""

    stream: StreamKey
    posts: tuple[ScoredPost, ...]
    result: WriteResult
    deleted: tuple[tuple[str, str], ...]


AfterStore = Callable[[StoredBatch], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def describe_error(exc: BaseException) -> str:
    """One line for logs and health: our messages as they are, others with their type."""
    if isinstance(exc, MonitorError):
        return str(exc)
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        detail = str(orig if orig is not None else exc).strip().splitlines()
        return f"database error: {detail[0] if detail else type(exc).__name__}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Service:
    """Runs the configured sources into the database until ``stop`` is set.

    ``clock`` gives "now" (aware UTC) for what is written (collected_at, health
    times); tests may pass a fixed clock. ``shutdown_grace`` bounds how long a
    stop waits for work in hand.
    """

    def __init__(
        self,
        config: Config,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = _utcnow,
        shutdown_grace: float = 5.0,
    ) -> None:
        self.config = config
        self.engine = engine
        self.clock = clock
        self.shutdown_grace = shutdown_grace
        self._enricher = Enricher.from_config(config, engine=engine)
        self._write_lock = asyncio.Lock()
        self.outage = DatabaseOutage()  # one log line per database outage (monitor.outage)
        self._periodic: list[tuple[str, timedelta, Callable[[], Awaitable[None]]]] = []
        self._background: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._after_store: list[tuple[str, AfterStore]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scheduler: AsyncIOScheduler | None = None
        self._stopping = False
        self._platforms: dict[str, set[str]] = {}  # stream source → platforms of its posts
        self._recently_deleted = RecentDeletions()  # deletions of posts not stored
        self.batches_stored = 0
        self.cluster: Cluster | None = None  # PostgreSQL, while running (monitor.cluster)

    # ------------------------------------------------------------------ extension points

    def add_periodic(self, name: str, interval: timedelta,
                     fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn()`` every *interval* (never two at once; missed runs coalesce).

        A failure is logged in one line and the next run happens as planned.
        """
        if interval.total_seconds() <= 0:
            raise ValueError(f"periodic job {name!r}: interval must be positive, got {interval}")
        self._periodic.append((name, interval, fn))
        if self._scheduler is not None:
            self._schedule_periodic(self._scheduler, name, interval, fn)

    def add_background(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Keep ``factory()`` running: when it fails or returns, log and restart with backoff."""
        self._background.append((name, factory))
        if self._scheduler is not None:
            self._spawn(self._supervise(name, factory, ()), f"background:{name}")

    async def exclusive(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in a worker thread between batch writes (under the write lock)."""
        async with self._write_lock:
            return await asyncio.to_thread(fn)

    def add_after_store(self, name: str, fn: AfterStore) -> None:
        """Call ``await fn(stored)`` after each committed batch (failures are logged only)."""
        self._after_store.append((name, fn))

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Collect until *stop* is set (forever without one), then shut down cleanly."""
        stop = stop or asyncio.Event()
        self._stopping = False
        async with HttpClient(self.config.http) as http:
            scheduler = AsyncIOScheduler(timezone=UTC)
            self._scheduler = scheduler
            # a poll running past its interval: one line per job, not a warning per tick
            long_polls = LongPollFilter(log)
            logging.getLogger("apscheduler.scheduler").addFilter(long_polls)
            # the poll jobs and streaming tasks, changed at run time by `monitor tags`
            if clustered(self.engine):
                self.cluster = Cluster(self.engine, self.config.cluster, http, self._poll_job,
                                       grace=self.shutdown_grace)
            jobs = StreamJobs(self, scheduler, http, self.cluster)
            sources = await jobs.start()
            polled, streaming = jobs.polled, jobs.streaming
            recheck = RoleLock(self.engine, "recheck")  # one process asks the platforms
            for name, interval, asked, fn in recheck_jobs(self.config, sources, self.engine,
                                                           self.store, self.clock):
                self._platforms.setdefault(recheck_stream(asked).source, set()).add(asked.platform)
                self._schedule_periodic(scheduler, name, interval, _with_role(recheck, fn))
            cluster_task = None if self.cluster is None else self._spawn(self.cluster.run(),
                                                                         "cluster")
            for name, interval, fn in self._periodic:
                self._schedule_periodic(scheduler, name, interval, fn)
            for name, factory in self._background:
                self._spawn(self._supervise(name, factory, ()), f"background:{name}")
            scheduler.start()
            if not sources:
                log.warning("no sources configured: nothing will be collected (add `sources:` "
                            "to the config; see config.yaml)")
            log.info("service started: %d polled stream%s, %d streaming source%s, "
                     "%d periodic job%s, database %s", polled, _s(polled), streaming,
                     _s(streaming), len(self._periodic), _s(len(self._periodic)),
                     redact_url(self.engine.url.render_as_string(hide_password=False)))
            try:
                await stop.wait()
            finally:
                await self._shutdown(scheduler, cluster_task)
                logging.getLogger("apscheduler.scheduler").removeFilter(long_polls)

    async def _shutdown(self, scheduler: AsyncIOScheduler,
                        cluster_task: asyncio.Task[None] | None = None) -> None:
        self._stopping = True
        started = time.monotonic()
        log.info("stopping: finishing the batch in hand")
        if scheduler.running:
            # a job cancelled before it started is an "error" to APScheduler: not at a stop
            logging.getLogger("apscheduler.executors.default").addFilter(_cancelled_at_stop)
            scheduler.shutdown(wait=False)
        self._scheduler = None
        if self.cluster is not None and cluster_task is not None:
            # no new rounds; the scheduler and the renewals end between two queries
            await self.cluster.stop(within=min(1.0, self.shutdown_grace / 4))
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace)
            if pending:
                log.warning("stopping: %d task%s did not finish within %.0fs; abandoning them",
                            len(pending), _s(len(pending)), self.shutdown_grace)
        # a write already in a worker thread commits or rolls back on its own;
        # wait for it so the caller may dispose of the engine
        try:
            await asyncio.wait_for(self._write_lock.acquire(), timeout=self.shutdown_grace)
            self._write_lock.release()
        except TimeoutError:
            log.warning("stopping: the database write in progress did not finish in time")
        if self.cluster is not None:
            await self.cluster.leave()
            self.cluster = None
        log.info("stopped after %.1fs (%d batch%s stored this run)",
                 time.monotonic() - started, self.batches_stored,
                 "" if self.batches_stored == 1 else "es")

    def _spawn(self, coro: Awaitable[T], name: str) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _track_current(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    def _schedule_periodic(self, scheduler: AsyncIOScheduler, name: str, interval: timedelta,
                           fn: Callable[[], Awaitable[None]]) -> None:
        seconds = interval.total_seconds()
        scheduler.add_job(
            self._periodic_job, IntervalTrigger(seconds=seconds, timezone=UTC),
            args=(name, fn), id=f"periodic:{name}", name=name, replace_existing=True,
            max_instances=1, coalesce=True, misfire_grace_time=max(1, int(seconds)),
        )

    # ------------------------------------------------------------------ jobs

    async def _poll_job(self, src: PolledSource, stream: StreamKey) -> None:
        """One tick of one polled stream: fetch what is new, store it batch by batch."""
        if self._stopping or self.outage.waiting():
            return  # (the database is down: wait for its next retry, quietly)
        self._track_current()
        started = time.monotonic()
        stored = 0
        try:
            cursor = await asyncio.to_thread(load_cursor, self.engine, stream.source,
                                             stream.name)
            async for batch in src.poll(stream, cursor):
                await self.store(batch)
                stored += 1
            if stored == 0:
                # nothing new is still a success: the health row says the stream is alive
                await self.store(Batch(stream=stream))
        except asyncio.CancelledError:
            if self._stopping:
                return  # a stop, not a failure (and not worth a scheduler traceback)
            raise
        except Exception as exc:
            await self._report_failure(
                (stream,), exc, f"next poll in {format_wait(src.interval().total_seconds())}")
        else:
            log.debug("poll %s %s: %d batch%s in %.2fs", stream.source, stream.name, stored,
                      "" if stored == 1 else "es", time.monotonic() - started)

    async def _periodic_job(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        if self._stopping or self.outage.waiting():
            return
        self._track_current()
        try:
            await fn()
        except asyncio.CancelledError:
            if self._stopping:
                return
            raise
        except Exception as exc:
            if self.outage.failed(exc):
                return  # one line for the whole outage, logged by self.outage
            log.error("periodic job %s failed: %s; it runs again at its next interval",
                      name, describe_error(exc))
            log.debug("periodic job %s traceback", name, exc_info=True)
        else:
            self.outage.ok()

    def _streamer(self, src: StreamingSource) -> Callable[[], Awaitable[None]]:
        async def start() -> None:
            streams = src.streams()
            cursor = None
            if streams:
                first = streams[0]
                cursor = await asyncio.to_thread(load_cursor, self.engine, first.source,
                                                 first.name)
            await src.run(cursor, self.sink)
        return start

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[None]],
                         streams: Sequence[StreamKey]) -> None:
        """Keep *factory()* running; failures go to the log and the streams' health."""
        backoff = Backoff.between(self.config.http.backoff_base, self.config.http.backoff_max)
        while not self._stopping:
            started = time.monotonic()
            try:
                await factory()
                if self._stopping:
                    return
                reason: BaseException | None = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = exc
            if time.monotonic() - started > _HEALTHY_RUN:
                backoff.reset()
            delay = max(0.1, backoff.next_delay())
            what = f"restarting in {format_wait(delay)}"
            if reason is None:
                log.warning("%s ended unexpectedly; %s", name, what)
            else:
                await self._report_failure(streams, reason, what, label=name)
            await asyncio.sleep(delay)

    async def _report_failure(self, streams: Iterable[StreamKey], exc: BaseException,
                              next_step: str, *, label: str | None = None) -> None:
        if self.outage.failed(exc):
            return  # one line for the whole outage; stream_health cannot be written anyway
        message = describe_error(exc)
        streams = list(streams)
        who = label or ", ".join(f"{s.source} {s.name}" for s in streams)
        log.warning("%s failed: %s; %s", who, message, next_step)
        if not isinstance(exc, MonitorError | SQLAlchemyError | OSError):
            log.debug("%s traceback", who, exc_info=exc)
        for stream in streams:
            try:
                await asyncio.to_thread(record_failure, self.engine, stream, message,
                                        self.clock())
            except Exception as db_exc:
                log.error("cannot record the failure of %s %s in stream_health: %s",
                          stream.source, stream.name, describe_error(db_exc))

    # ------------------------------------------------------------------ the write path

    async def sink(self, batch: Batch) -> None:
        """The sink handed to streaming sources: :meth:`store` without the result."""
        await self.store(batch)

    async def store(self, batch: Batch) -> WriteResult:
        """Enrich and store one batch (one transaction), then run the after-store hooks.

        Batches are written one at a time. If the caller is cancelled while the
        write is in a worker thread, the write is still awaited: the batch in
        hand is finished and committed before the cancellation goes on.
        """
        async with self._write_lock:
            work = asyncio.ensure_future(asyncio.to_thread(self._write, batch))
            try:
                scored, deleted, result = await asyncio.shield(work)
            except asyncio.CancelledError:
                if not work.done():
                    with _suppress_cancel():
                        await asyncio.shield(work)
                raise
        self.batches_stored += 1
        self.outage.ok()
        if result.inserted or deleted or batch.rejected:
            log.info("%s %s: %d new post%s, %d duplicate%s%s%s", batch.stream.source,
                     batch.stream.name, result.inserted, _s(result.inserted), result.duplicates,
                     _s(result.duplicates),
                     f", {len(deleted)} deletion{_s(len(deleted))}" if deleted else "",
                     f", {batch.rejected} rejected" if batch.rejected else "")
        if self._after_store:
            stored = StoredBatch(batch.stream, tuple(scored), result, tuple(deleted))
            for name, hook in self._after_store:
                try:
                    await hook(stored)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("after-store hook %s failed: %s", name, describe_error(exc))
        return result

    def _write(self, batch: Batch) -> tuple[list[ScoredPost], list[tuple[str, str]], WriteResult]:
        # pseudonymous keys for its deletions too, and the forgotten authors (issue 12)
        batch = self._enricher.gate(batch, self._platforms.get(batch.stream.source, ()))
        # never raises on content: a post that breaks the analysis is kept degraded
        # (Enricher.enrich), so one bad post cannot block its stream
        scored = self._enricher.enrich_many(batch.posts)
        if batch.posts:
            self._platforms.setdefault(batch.stream.source, set()).update(
                p.platform for p in batch.posts)
        if batch.edited:  # replaced with buckets corrected; edits of unknown posts stored as new
            edits = apply_edits(self.engine, self._enricher.enrich_many(batch.edited),
                                now=self.clock())
            scored = [*scored, *edits.missing]
        deleted = self._deletions(batch) if batch.deleted else []
        if self._recently_deleted:  # deleted before it showed up: never stored
            scored = [p for p in scored if (p.platform, p.key) not in self._recently_deleted]
        with observe_write():
            result = write_batch(
                self.engine, scored, cursor=batch.cursor, stream=batch.stream, deleted=deleted,
                rejected=batch.rejected, now=self.clock(),
                recount=self.config.privacy.deletions == "recount",
            )
        return scored, deleted, result

    def _deletions(self, batch: Batch) -> list[tuple[str, str]]:
        """Reported deletions of posts we hold (or are storing now), as (platform, key).

        A firehose reports every delete on the network; only ours are worth a row."""
        wanted = set(batch.deleted)
        found = {(p.platform, p.key) for p in batch.posts if p.key in wanted}
        platforms = self._platforms.get(batch.stream.source, set())
        found |= existing_posts(self.engine, platforms, wanted)
        # the rest (a firehose reports the whole network's): remembered, not stored
        self._recently_deleted.update(wanted.difference(k for _, k in found), platforms)
        return sorted(found)


class _suppress_cancel:
    """Swallow a second cancellation while finishing a write already in a thread."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> bool:
        return exc_type is asyncio.CancelledError


def _cancelled_at_stop(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def _with_role(role: RoleLock, fn: Callable[[], Awaitable[None]]
               ) -> Callable[[], Awaitable[None]]:
    """*fn* run only in the process that holds *role* (always on SQLite)."""
    async def guarded() -> None:
        if await asyncio.to_thread(role.held):
            await fn()
    return guarded


def _s(count: int) -> str:
    return "" if count == 1 else "s"

