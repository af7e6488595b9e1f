"""Exponential backoff with jitter: the one retry schedule of every stage.

Collectors (HTTP requests, websocket reconnects) and the notification outbox
both wait with :class:`Backoff`, so a long outage looks the same in every log:
waits that really grow, spread so that many streams do not retry in step.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

__all__ = ["Backoff"]


class Backoff:
    """Exponential backoff with "equal" jitter, reset after a success.

    ``next_delay()`` returns seconds in ``[c/2, c]`` with ``c = min(cap, base * 2**attempt)``.
    The random half keeps many streams that failed together from retrying in
    step; the fixed half makes the waits really grow, so a host that is down
    for long is not hammered (and the log not flooded) by near-zero delays.
    """

    def __init__(self, base: float, cap: float, *, rng: random.Random | None = None) -> None:
        if base <= 0 or cap <= 0:
            raise ValueError(f"backoff base and cap must be positive, got {base!r}, {cap!r}")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    @classmethod
    def between(cls, base: timedelta, cap: timedelta, *, rng: random.Random | None = None
                ) -> Backoff:
        """From config durations (a zero duration becomes one millisecond)."""
        return cls(base.total_seconds() or 0.001, cap.total_seconds() or 0.001, rng=rng)

    def ceiling(self, attempt: int | None = None) -> float:
        """The upper bound of the next delay (or of delay number *attempt*, from 0)."""
        step = self.attempt if attempt is None else max(attempt, 0)
        return float(min(self.cap, self.base * (2 ** min(step, 62))))

    def next_delay(self) -> float:
        """The next wait in seconds; each call doubles the ceiling up to ``cap``."""
        ceiling = self.ceiling()
        delay = self._rng.uniform(ceiling / 2, ceiling)
        self.attempt += 1
        return delay

    def delay_after(self, failures: int) -> float:
        """The wait after the *failures*-th failure in a row, leaving ``attempt`` alone.

        For callers that keep the count themselves: the notification outbox
        stores it in ``deliveries.attempts``, so it survives a restart.
        """
        ceiling = self.ceiling(failures - 1)
        return self._rng.uniform(ceiling / 2, ceiling)

    async def sleep(self) -> float:
        """Sleep for ``next_delay()`` seconds and return it."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempt = 0
