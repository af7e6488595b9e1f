"""Whether this machine looks offline, said once instead of by every retry.

Offline, every stream fails to resolve its host: ``make run`` printed 157
warnings in 36 s, one per retry of each of two dozen streams. Now the HTTP
transport logs its retries at DEBUG (the poll's final failure is the stream's
one line per poll, from the service), and the first time :data:`HOSTS_TO_SAY`
different hosts fail to resolve or reach with no answer from anywhere in
between, :class:`OfflineWatch` logs one warning that the machine looks offline.
Until something answers again, the streaming sources' reconnect lines go to
DEBUG too; the first answer logs one line saying the network is back.

One watch belongs to one :class:`~monitor.sources.ratelimit.HostBudgets`, that
is to one running service (or test), not to the process.
"""

from __future__ import annotations

import logging
import time

__all__ = ["HOSTS_TO_SAY", "OfflineWatch", "offline_like"]

log = logging.getLogger(__name__)

# distinct hosts failing alike, with no answer in between, before we call it offline
HOSTS_TO_SAY = 3
_OFFLINE_WORDS = ("name resolution failed", "network unreachable")


def offline_like(what: str) -> bool:
    """Whether a failure description (sources.errors) is what an offline machine gets."""
    return any(word in what for word in _OFFLINE_WORDS)


class OfflineWatch:
    """Counts hosts that fail as an offline machine would; see the module doc."""

    def __init__(self, hosts_to_say: int = HOSTS_TO_SAY) -> None:
        self.hosts_to_say = hosts_to_say
        self._failing: set[str] = set()
        self._since: float | None = None
        self.offline = False

    def failed(self, host: str, what: str) -> bool:
        """Note a failure of *host*; True when the machine looks offline (log quietly)."""
        if not offline_like(what):
            return self.offline
        if not self._failing:
            self._since = time.monotonic()
        self._failing.add(host)
        if not self.offline and len(self._failing) >= self.hosts_to_say:
            self.offline = True
            shown = sorted(self._failing)
            log.warning("this machine looks offline: %s for %d hosts (%s%s); every stream "
                        "keeps retrying with backoff and logs one line per poll",
                        what.removeprefix("cannot connect (").rstrip(")"), len(shown),
                        ", ".join(shown[:4]), ", …" if len(shown) > 4 else "")
            return False  # this failure's own line still goes out, after the summary
        return self.offline

    def answered(self, host: str) -> None:
        """Note that *host* answered (any HTTP status, a websocket handshake)."""
        if self.offline:
            gone = time.monotonic() - (self._since or time.monotonic())
            log.info("the network is back: %s answered after %.0fs offline", host, gone)
        self.offline = False
        self._failing.clear()
        self._since = None
