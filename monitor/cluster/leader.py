"""Leadership of a streaming source (Jetstream): exactly one process consumes it.

The leader holds the advisory lock ``stream:<source>`` on a dedicated keepalive
connection (:class:`monitor.locks.RoleLock`). Every process re-tries the lock every
lease/2; the leader checks its connection just as often and stops consuming as
soon as it cannot (so two never consume at once for longer than that check).
When the leader dies, the server drops its lock (at once for a killed process,
whose socket the kernel closes; within the keepalive time for a vanished
machine) and the next re-try elsewhere takes it. The new leader starts the
consumer, which resumes from the stored cursor (saved with each batch): nothing
is missed, and the events between the cursor and the old leader's last write
come again and are dropped by the posts' unique key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from monitor.locks import RoleLock

__all__ = ["lead"]

log = logging.getLogger("monitor.cluster")


async def lead(engine: Engine, role: str, every: float, grace: float,
               start: Callable[[], asyncio.Task[Any]]) -> None:
    """Run ``start()``'s task while this process holds *role*; check every *every* s."""
    lock = RoleLock(engine, role)
    task: asyncio.Task[Any] | None = None
    try:
        while True:
            held = await asyncio.to_thread(lock.held)
            if held and task is None:
                log.info("%s: took the lead; resuming from the stored cursor", role)
                task = start()
            elif not held and task is not None:
                log.warning("%s: lost the lead (its database connection failed); "
                            "stopping the consumer", role)
                await _stop(task, grace)
                task = None
            if task is not None and task.done():
                task = None  # (the supervisor only ends on a stop)
            await asyncio.sleep(every)
    finally:
        if task is not None:
            await _stop(task, grace)
        await asyncio.to_thread(lock.release)


async def _stop(task: asyncio.Task[Any], grace: float) -> None:
    task.cancel()
    # the batch in hand is finished and committed before the task ends (Service.store)
    await asyncio.wait([task], timeout=grace)
