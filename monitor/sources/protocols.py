"""What the service may ask of a collector: the two Source protocols.

A collector is given a stream (platform, endpoint, tag) and its saved cursor
and yields :class:`~monitor.models.Batch` records; it never touches the
database. Every network request of a collector goes through the shared
:class:`~monitor.sources.http.HttpClient` (or, for a websocket, takes its
connect slot from the client's :class:`~monitor.sources.ratelimit.HostBudgets`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Protocol, runtime_checkable

from monitor.models import Batch, Cursor, StreamKey

__all__ = ["PolledSource", "Rechecking", "Sink", "StreamingSource"]

Sink = Callable[[Batch], Awaitable[None]]


@runtime_checkable
class PolledSource(Protocol):
    """A collector the scheduler calls every ``interval()`` (± ``jitter()``) per stream."""

    source: str
    platform: str  # the platform its posts are stored under (``posts.platform``)

    def streams(self) -> list[StreamKey]:
        """Every (endpoint, tag) stream this collector follows."""
        ...

    def interval(self) -> timedelta:
        """How often each stream is polled."""
        ...

    def jitter(self) -> timedelta:
        """How far a poll may move off its interval, so streams do not fire in step."""
        ...

    def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        """Fetch what is new since *cursor* (None: first run, backfill).

        Batches come oldest page first where the API allows; each carries the
        cursor to save once it is stored, so a crash between batches loses
        nothing and a re-fetch is dropped by the unique keys.
        Raises :class:`~monitor.errors.SourceError` when the stream cannot be
        fetched this tick.
        """
        ...


@runtime_checkable
class StreamingSource(Protocol):
    """A long-lived consumer (websocket, SSE) supervised by the service."""

    source: str
    platform: str  # the platform its posts are stored under (``posts.platform``)

    def streams(self) -> list[StreamKey]:
        """The streams whose health this consumer reports."""
        ...

    async def run(self, cursor: Cursor | None, sink: Sink) -> None:
        """Consume until cancelled; reconnect with backoff; ``await sink(batch)`` for each batch."""
        ...


@runtime_checkable
class Rechecking(Protocol):
    """Optional, for polled platforms that send no delete events: the re-check
    job (``privacy.recheck``) asks which stored posts are gone."""

    source: str
    platform: str

    async def vanished(self, keys: Sequence[str]) -> set[str]:
        """The keys among *keys* (this platform's post keys) that the platform says
        no longer exist. A key it cannot answer for (an error, an unknown key
        shape) is NOT included: only a clear "gone" deletes a post. Raises
        :class:`~monitor.errors.SourceError` when the platform cannot be asked at all.
        """
        ...
