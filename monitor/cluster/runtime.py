"""One process's part in the cluster: its host jobs, its member row, its leaderships.

:class:`monitor.service.Service` makes one :class:`Cluster` per run on
PostgreSQL (never on SQLite) and hands it to :class:`monitor.streams.StreamJobs`,
which then puts polled streams into host jobs instead of local timers and runs
each streaming source under :func:`monitor.cluster.leader.lead`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy import Engine

from monitor.cluster.jobs import HostJobs, PollOne
from monitor.cluster.leader import lead
from monitor.cluster.members import Membership
from monitor.cluster.settings import ClusterSettings
from monitor.sources.http import HttpClient

__all__ = ["Cluster", "clustered"]

log = logging.getLogger("monitor.cluster")


def clustered(engine: Engine) -> bool:
    """Whether a service on *engine* runs as a cluster member (PostgreSQL: always)."""
    return engine.dialect.name == "postgresql"


class Cluster:
    def __init__(self, engine: Engine, settings: ClusterSettings, http: HttpClient,
                 poll_one: PollOne, *, grace: float) -> None:
        self.engine = engine
        self.settings = settings
        self.grace = grace
        self.membership = Membership(engine, settings, hosts=lambda: self.jobs.held(),
                                     worker_id=lambda: self.jobs.worker_id)
        self.jobs = HostJobs(engine, settings, self.membership.member, http, poll_one,
                             grace=grace)
        self._roles: set[str] = set()
        self._member_task: asyncio.Task[None] | None = None

    def lead(self, source: str, start: Callable[[], asyncio.Task[Any]]
             ) -> Coroutine[Any, Any, None]:
        """Consume a streaming source only while this process leads it."""
        role = f"stream:{source}"
        n = 2
        while role in self._roles:  # two sources of one kind: two leaderships
            role, n = f"stream:{source}:{n}", n + 1
        self._roles.add(role)
        return lead(self.engine, role, self.settings.lease_seconds / 2, self.grace, start)

    async def run(self) -> None:
        """Announce this process, then renew its row and run its worker until cancelled."""
        self.membership.announce(sum(1 for s in self.jobs.streams.values() if s))
        await asyncio.to_thread(self.membership.renew)
        async with asyncio.TaskGroup() as group:
            self._member_task = group.create_task(self.membership.run(self.jobs.stopping),
                                                  name="cluster-member")
            group.create_task(self.jobs.run(), name="cluster-jobs")

    async def stop(self, within: float) -> None:
        """End the scheduler and the renewals after the query each has in hand (the
        scheduler role is given up) and the worker after the rounds in hand, cut
        short; wait *within* s for them (the service then cancels what is left, and
        the worker still ends within its own graceful timeout, a third of the grace)."""
        self.jobs.stop()
        tasks = [t for t in (self.jobs.scheduler_task, self.jobs.hold_task,
                             self.jobs.worker_task, self._member_task) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=within)

    async def leave(self) -> None:
        await asyncio.to_thread(self.membership.leave)
