"""``cluster_members``: who is in the cluster, what each holds, when it last renewed.

Each process writes its row at start and renews it every lease/3 with the roles
it holds (advisory locks: ``scheduler``, ``stream:<source>``, ``evaluator``,
``dispatcher`` …) and the hosts it polled lately (a lease, or two rounds). A clean stop
deletes the row; a killed process's row stops renewing and is deleted by the
others after ten leases (until then ``monitor status`` shows it as silent).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from monitor.cluster.settings import ClusterSettings
from monitor.durations import format_duration
from monitor.locks import RoleLock
from monitor.store.cluster import drop_member, renew_member

__all__ = ["Membership"]

log = logging.getLogger("monitor.cluster")

# a member silent this many leases is gone for good: its row is deleted
_FORGET_AFTER = 10
_SERVICES = itertools.count()


class Membership:
    """This process's ``cluster_members`` row."""

    def __init__(self, engine: Engine, settings: ClusterSettings, *,
                 hosts: Callable[[], list[str]], worker_id: Callable[[], int | None]) -> None:
        self.engine = engine
        self.settings = settings
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = datetime.now(UTC)
        # hostname:pid:start-ms; a second service in one process (tests) gets .n
        n = next(_SERVICES)
        self.member = f"{self.hostname}:{self.pid}:{int(time.time() * 1000)}" + (
            f".{n}" if n else "")
        self._hosts = hosts
        self._worker_id = worker_id

    def announce(self, hosts: int) -> None:
        """The one line naming this process (at start)."""
        log.info("cluster member %s pid %d joined (lease %s, concurrency %d, %d host%s)",
                 self.hostname, self.pid, format_duration(self.settings.lease),
                 self.settings.concurrency, hosts, "" if hosts == 1 else "s")

    def renew(self) -> None:
        renew_member(self.engine, self.member, self.hostname, self.pid, self.started_at,
                     RoleLock.held_roles(self.engine), self._hosts(), self._worker_id())
        drop_member(self.engine, silent_for=_FORGET_AFTER * self.settings.lease_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Renew every lease/3 until *stop*; a failed renewal is retried quietly."""
        every = self.settings.lease_seconds / 3
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.renew)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: the service says so already
                log.debug("cluster member row not renewed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def leave(self) -> None:
        """Delete this process's row (a clean stop)."""
        try:
            drop_member(self.engine, self.member)
        except Exception as exc:
            log.debug("cluster member row not deleted: %s", exc)
