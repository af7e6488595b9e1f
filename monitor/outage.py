"""Quiet logs in an outage: the database, and polls that run long.

A database outage used to flood the log (about 2,300 lines in 70 s, with a
60-line traceback from the notifier every 5 s): every poll, every periodic job
and every dispatcher pass reported the same refused connection. Now the first
failure logs one line, ``database unreachable since …, retrying every N s``;
while it lasts, the jobs that touch the database skip their ticks until the
next retry time (a backoff from 1 s up to 30 s), and failures are debug lines;
the first success logs ``database back after N s``.

The service holds one tracker (``Service.outage``), shared by its polls, its
periodic jobs and the notification dispatcher (``Dispatcher(outage=...)``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from monitor.backoff import Backoff

__all__ = ["DatabaseOutage", "LongPollFilter", "is_unreachable"]

log = logging.getLogger("monitor.database")


# what the drivers say when the server (or the file) cannot be reached at all; a
# missing table or a lock is an OperationalError too, and is reported as it is
_UNREACHABLE = ("connection refused", "could not connect", "connection failed",
                "server closed the connection", "terminating connection", "timeout expired",
                "connection timed out", "no connection to the server", "connection is closed",
                "the database system is", "name or service not known",
                "could not translate host name", "unable to open database file",
                "disk i/o error", "consuming input failed", "connection to server")


def is_unreachable(exc: BaseException) -> bool:
    """True for errors that mean "the database cannot be reached", not a bad statement."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        text = str(getattr(exc, "orig", None) or exc).lower()
        return any(sign in text for sign in _UNREACHABLE)
    return False


class DatabaseOutage:
    """One line when the database goes away, one when it is back; backoff in between."""

    def __init__(self, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._backoff = backoff or Backoff(1.0, 30.0)
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # clock() of the first failure
        self._since_wall: datetime | None = None
        self._retry_at = 0.0
        self.failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> bool:
        """Note a failure; True when it was an outage (logged here, once), else False."""
        if not is_unreachable(exc):
            return False
        with self._lock:
            self.failures += 1
            now = self._clock()
            delay = self._backoff.next_delay()
            self._retry_at = now + delay
            if self._since is None:
                self._since, self._since_wall = now, datetime.now(UTC)
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                log.error("database unreachable since %s (%s), retrying every %.0f s "
                          "(backing off to %.0f s)",
                          f"{self._since_wall:%Y-%m-%dT%H:%M:%SZ}",
                          reason[0][:200] if reason else type(exc).__name__,
                          max(delay, 1.0), self._backoff.cap)
            else:
                log.debug("database still unreachable (%d failures)", self.failures)
        return True

    def ok(self) -> None:
        """Note a success: ends an outage (one line) if there was one."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            took = self._clock() - self._since
            self._since = self._since_wall = None
            self._backoff.reset()
            self.failures = 0
        log.warning("database back after %.0f s", took)

    def waiting(self) -> bool:
        """True while down and before the next retry: the caller skips this tick."""
        return self._since is not None and self._clock() < self._retry_at



class LongPollFilter(logging.Filter):
    """Turns APScheduler's "skipped: maximum number of running instances reached"
    warning, logged on every tick while a poll runs long, into one info line per job.

    A slow platform makes a poll outlast its interval; the next ticks are skipped
    (``max_instances=1``) as the README says, which is expected, not a warning.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._log = logger
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances reached" not in str(record.msg):
            return True
        job = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        if job not in self._seen:
            self._seen.add(job)
            self._log.info("%s runs longer than its interval; its next ticks are skipped "
                           "until it ends (said once per job)", job)
        return False
