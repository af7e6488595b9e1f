"""Polled streams leased by host, on procrastinate (docs/cluster-engine.md).

One procrastinate job per platform host and round (task ``poll_host``, queue
``polls``) polls every polled stream of that host in the process whose worker
picked it. The job's ``lock`` is the host: procrastinate never starts a job
while another job with the same lock is running, so at most one process polls a
host at any moment, cluster-wide. Its ``queueing_lock`` is the host too: at most
one job per host waits in the queue, however many rounds pass.

* **Rounds.** The process holding the ``scheduler`` role (an advisory lock, so
  exactly one) defers a job for each host that ``cluster_hosts.next_due`` says is
  due. The job *claims* its round in ``cluster_hosts`` (only while due), which
  sets the next round: a host is polled at its source's interval however many
  processes run and however the scheduler role moves.
* **Budget.** The host's rate-limit state (blocked until / next request slot)
  is read from ``cluster_hosts`` into the process's
  :class:`~monitor.sources.ratelimit.HostBudget` when the job starts and written
  back when it ends, so a 429 seen by one process holds back the next.
* **Crashes.** A round holds its host in ``cluster_hosts`` for a lease
  (``busy_until``), renewed every lease/3 while it runs; each worker heartbeats
  in ``procrastinate_workers`` every lease/3 too. The scheduler hands a job whose
  worker has been silent for a lease back to the queue (procrastinate's
  ``retry_job``; checked every lease/4), or fails it when the host already has a
  job waiting, which frees the host's lock either way; the job that comes next
  claims the host as soon as the dead holder's lease on it runs out. So a killed
  process's hosts are polled elsewhere about a lease after its last renewal
  (within two leases, whatever the timing). A process that cannot renew its hold
  on a host (starved, cut off) stops that round by itself before the lease runs
  out, so a host handed on is never polled by two processes at once.
* **Capacity.** Each process runs ``cluster.concurrency`` host jobs at once: the
  per-process cap (a stand-in for one machine's network budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

import procrastinate
from procrastinate import exceptions as pexc
from procrastinate.jobs import Status
from procrastinate.worker import Worker
from sqlalchemy import Engine

from monitor.cluster.hosts import host_key
from monitor.cluster.settings import ClusterSettings
from monitor.locks import RoleLock
from monitor.models import StreamKey
from monitor.sources.http import HttpClient
from monitor.sources.protocols import PolledSource
from monitor.store.cluster import (
    HostState,
    claim_host,
    due_hosts,
    ensure_hosts,
    release_host,
    renew_hosts,
)

__all__ = ["HostJobs", "conninfo"]

log = logging.getLogger("monitor.cluster")

QUEUE = "polls"
TASK = "poll_host"

PollOne = Callable[[PolledSource, StreamKey], Awaitable[None]]


def conninfo(engine: Engine) -> str:
    """A libpq URI for *engine*'s database (search_path options and all)."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class HostJobs:
    """The polled streams of one process, grouped by host, and its procrastinate worker."""

    def __init__(self, engine: Engine, settings: ClusterSettings, member: str,
                 http: HttpClient, poll_one: PollOne, *, grace: float = 5.0) -> None:
        self.engine = engine
        self.grace = grace
        self.settings = settings
        self.member = member
        self.http = http
        self.poll_one = poll_one
        self.streams: dict[str, dict[str, tuple[PolledSource, StreamKey]]] = {}
        self.recent: dict[str, float] = {}  # host → monotonic time this process polled it
        self.scheduler = RoleLock(engine, "scheduler")
        self.worker: Worker | None = None
        self._deferred: dict[str, float] = {}  # host → when this scheduler last deferred it
        self._known: set[str] = set()  # hosts with a cluster_hosts row
        self.stopping = asyncio.Event()  # set by stop(): no new rounds
        self.scheduler_task: asyncio.Task[None] | None = None
        self.hold_task: asyncio.Task[None] | None = None
        self.worker_task: asyncio.Task[None] | None = None
        # host → the task polling its round here (renewed by _hold, cancelled on a loss)
        self._rounds: dict[str, asyncio.Task[None]] = {}
        self._held_until: dict[str, float] = {}  # host → monotonic time its hold surely lasts
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(
            # the jobs run on the service's own engine; this pool only carries the
            # engine's queries (fetch and finish per job, defer, heartbeat): a
            # connection per running job and two spare, so none waits for one (a task
            # cancelled while it waits for a pool connection can lose the
            # cancellation, psycopg/psycopg#1345: one way a stop could hang)
            conninfo=conninfo(engine), min_size=1, max_size=min(10, 2 + settings.concurrency),
            kwargs={"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 1,
                    "keepalives_count": 3}))
        self.task = self.app.task(name=TASK, queue=QUEUE)(self._job)
        procrastinate_log = logging.getLogger("procrastinate")
        if procrastinate_log.level == logging.NOTSET:
            procrastinate_log.setLevel(logging.WARNING)  # a line per job is noise

    # ------------------------------------------------------------------ the streams

    def add(self, src: PolledSource, stream: StreamKey) -> bool:
        """Poll *stream* here when its host's job comes (False: configured twice)."""
        streams = self.streams.setdefault(host_key(stream), {})
        key = f"{stream.source}:{stream.name}"
        if key in streams:
            return False
        streams[key] = (src, stream)
        return True

    def replace(self, src: PolledSource, stream: StreamKey) -> bool:
        """Poll *stream* with a new collector; False when it was not polled."""
        streams = self.streams.get(host_key(stream), {})
        key = f"{stream.source}:{stream.name}"
        if key not in streams:
            return False
        streams[key] = (src, stream)
        return True

    def remove(self, stream: StreamKey) -> bool:
        streams = self.streams.get(host_key(stream), {})
        return streams.pop(f"{stream.source}:{stream.name}", None) is not None

    def held(self) -> list[str]:
        """The hosts this process polled lately: within the last lease or two rounds
        (status rows: hosts move between processes every round)."""
        now = time.monotonic()
        lease = self.settings.lease_seconds
        return sorted(h for h, at in self.recent.items()
                      if now - at <= max(lease, 2 * self._every(h)))

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Open the engine and run the worker and the scheduler until stopped.

        :meth:`stop` ends all three on their own (the worker after the rounds in hand,
        which a stop cuts short), so the job engine's pool is closed before the
        service's grace runs out: a worker left to ``asyncio.run``'s final
        cancellation could keep the process from exiting (see :meth:`stop`).
        """
        async with self.app.open_async():
            lease = self.settings.lease_seconds
            self.worker = Worker(
                self.app, queues=[QUEUE], name=self.member,
                concurrency=self.settings.concurrency, install_signal_handlers=False,
                # a worker silent for a lease has its jobs handed on (_recover_stalled):
                # a heartbeat every lease/3 (three missed, as for the member row); its row
                # is only deleted (when a worker starts) after far longer, since a live
                # worker whose row is gone could not take jobs any more
                update_heartbeat_interval=max(0.1, lease / 3),
                stalled_worker_timeout=max(30.0, 10 * lease),
                # a job handed back (retry_job) sends no notification: look every lease/4
                fetch_job_polling_interval=max(0.1, min(lease / 4, 5.0)),
                # well inside the service's grace: the worker always ends before it does
                delete_jobs="successful", shutdown_graceful_timeout=self.grace / 3)
            async with asyncio.TaskGroup() as group:
                self.worker_task = group.create_task(self._work(self.worker),
                                                     name="cluster-worker")
                self.scheduler_task = group.create_task(self._schedule(),
                                                        name="cluster-scheduler")
                self.hold_task = group.create_task(self._hold(), name="cluster-hold")

    async def _work(self, worker: Worker) -> None:
        # Worker.run() forgets a stop() made before it started (it clears its stop
        # event first thing): a stop that came first is seen here, in the same step
        if not self.stopping.is_set():
            await worker.run()  # type: ignore[no-untyped-call]

    @property
    def worker_id(self) -> int | None:
        return None if self.worker is None else self.worker.worker_id

    async def _schedule(self) -> None:
        """Defer the due hosts' jobs and recover dead workers' jobs, while the role is ours."""
        try:
            await self._schedule_loop()
        finally:
            # the role's connection closes: another process schedules from its next try
            self.scheduler.release()

    async def _schedule_loop(self) -> None:
        last_janitor = 0.0
        while not self.stopping.is_set():
            tick = self._tick()
            try:
                if await asyncio.to_thread(self.scheduler.held):
                    await self._defer_due()
                    if time.monotonic() - last_janitor >= self.settings.lease_seconds / 4:
                        last_janitor = time.monotonic()
                        await self._recover_stalled()
                else:
                    self._deferred.clear()  # a new term starts from the table
                    # standing by: try the role again every lease/3, not every tick
                    # (each try is a connection of its own)
                    tick = self.settings.lease_seconds / 3
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster scheduler: %s; trying again in %.1fs",
                            _describe(exc), tick)
            # a stop ends the wait: no query is cut short by a cancellation at shutdown
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), tick)

    def _stalled_after(self) -> float:
        """Seconds without a heartbeat after which a worker's host jobs are handed on:
        a lease (three heartbeats missed). A job handed on while its starved worker
        still polls does not poll alongside: the host stays held in ``cluster_hosts``
        until that worker's hold runs out, and a worker that cannot renew its hold
        ends the round itself first (:meth:`_hold`)."""
        return self.settings.lease_seconds

    async def _hold(self) -> None:
        """Renew this process's hold on the hosts of its rounds every lease/3.

        A round whose host was taken over (the hold ran out before a renewal got
        through), or whose hold this process could not renew in time, is cancelled:
        the lease on that host may be someone else's now.
        """
        lease = self.settings.lease_seconds
        while not self.stopping.is_set():
            hosts = [h for h, t in self._rounds.items() if not t.done()]
            if hosts:
                sent = time.monotonic()
                try:
                    kept = await asyncio.to_thread(renew_hosts, self.engine, self.member,
                                                   hosts, lease)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("host holds not renewed: %s", _describe(exc))
                else:
                    for host in kept:
                        # the server's lease began after `sent`: this end errs on the safe side
                        self._held_until[host] = sent + lease
                    for host in set(hosts) - kept:
                        self._lose(host, "taken over")
                now = time.monotonic()
                for host in hosts:
                    # two renewals missed: give up before the hold runs out
                    if now > self._held_until.get(host, 0.0) - lease / 2:
                        self._lose(host, "its hold could not be renewed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), lease / 3)

    def _lose(self, host: str, why: str) -> None:
        task = self._rounds.get(host)
        if task is not None and not task.done():
            log.warning("%s: round stopped (%s); another process polls it now", host, why)
            task.cancel()

    def _every(self, host: str) -> float:
        streams = self.streams.get(host)
        if not streams:
            return 60.0
        return max(0.05, min(src.interval().total_seconds() for src, _ in streams.values()))

    def _tick(self) -> float:
        everies = [self._every(h) for h in self.streams if self.streams[h]]
        return min(1.0, max(0.05, min(everies, default=1.0) / 4))

    async def _defer_due(self) -> None:
        hosts = [h for h, s in self.streams.items() if s]
        new = [h for h in hosts if h not in self._known]
        if new:
            await asyncio.to_thread(ensure_hosts, self.engine, new)
            self._known.update(new)
        due = await asyncio.to_thread(due_hosts, self.engine)
        now = time.monotonic()
        todo = [h for h in hosts if h in due
                and now - self._deferred.get(h, -1e18) >= self._every(h)]
        if not todo:
            return
        # one statement for the whole round (hundreds of hosts: one round trip and one
        # connection of the engine's small pool, not one each)
        jobs = [self.task.configure(lock=h, queueing_lock=h).make_new_job(host=h)
                for h in todo]
        try:
            await self.app.job_manager.batch_defer_jobs_async(jobs=jobs)
        except pexc.AlreadyEnqueued:
            # one of them got a waiting job since due_hosts looked: each on its own
            for host in todo:
                with contextlib.suppress(pexc.AlreadyEnqueued):
                    await self.task.configure(lock=host, queueing_lock=host).defer_async(
                        host=host)
        for host in todo:
            self._deferred[host] = now

    async def _recover_stalled(self) -> None:
        manager = self.app.job_manager
        stalled = list(await manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=self._stalled_after()))
        for job in stalled:
            try:
                await manager.retry_job(job)
            except pexc.ConnectorException:
                # the host has a job waiting already (its queueing lock): this one
                # is done with, which frees the host's lock for the waiting one
                await manager.finish_job(job, status=Status.FAILED, delete_job=False)
        if stalled:
            log.info("recovered %d stalled host job%s of dead worker(s): %s", len(stalled),
                     "" if len(stalled) == 1 else "s",
                     ", ".join(str(j.lock) for j in stalled[:5]))

    # ------------------------------------------------------------------ the job

    async def _job(self, host: str) -> None:
        """One round of *host*: every polled stream of it, in this process."""
        streams = list(self.streams.get(host, {}).values())
        if not streams or self.stopping.is_set():
            return
        jitter = max(src.jitter().total_seconds() for src, _ in streams)
        every = self._every(host) + (random.uniform(-jitter, jitter) if jitter else 0.0)
        lease = self.settings.lease_seconds
        for _ in range(3):
            claimed = time.monotonic()
            state = await asyncio.to_thread(claim_host, self.engine, host, self.member,
                                            max(0.05, every), min(0.5, self._every(host) / 10),
                                            lease)
            if not isinstance(state, float) or state > lease or self.stopping.is_set():
                break
            # due, but a dead (or stopping) holder's lease on it has yet to run out:
            # take it over then, not a whole interval later
            await asyncio.sleep(state + 0.02)
        if not isinstance(state, HostState):
            return  # polled this round already (a job deferred twice around a handover)
        self._held_until[host] = claimed + lease
        self.recent[host] = time.monotonic()
        budget = self.http.budgets.of(host)
        if state.blocked_for:
            budget.block(state.blocked_for)
        if state.next_slot_in:
            # the budget keeps this private; the slot the last process left must hold here
            slot = time.monotonic() + state.next_slot_in
            budget._next_start = max(budget._next_start, slot)
        polls: asyncio.Future[list[None]] = asyncio.gather(
            *(self.poll_one(src, stream) for src, stream in streams))
        round_task = asyncio.ensure_future(_await(polls))
        self._rounds[host] = round_task
        try:
            await round_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the job itself is cancelled (_lose and stop cancel the round only)
        finally:
            self._rounds.pop(host, None)
            self._held_until.pop(host, None)
            self.recent[host] = time.monotonic()
            now = time.monotonic()
            blocked = budget._blocked_until - now
            slot_left = budget.next_free - now
            await asyncio.to_thread(release_host, self.engine, host, self.member,
                                    blocked if blocked > 0 else None,
                                    slot_left if slot_left > 0 else None)

    def stop(self) -> None:
        """No new rounds; the rounds in hand are cut short (what was stored is
        committed, the rest comes again from the saved cursors), so the worker ends
        at once: it unregisters and the job engine's pool closes while the service
        still waits. (Before, a busy worker outlived the service's stop: the service
        gave up on it after its grace, which equalled the worker's own graceful
        timeout, and left it to ``asyncio.run``'s unbounded final cancellation,
        the likeliest cause of the hang seen once after "stopped".) The scheduler
        ends after the query in hand."""
        self.stopping.set()
        for task in self._rounds.values():
            task.cancel()
        if self.worker is not None:
            self.worker.stop()  # type: ignore[no-untyped-call]


async def _await(polls: asyncio.Future[list[None]]) -> None:
    await polls


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
