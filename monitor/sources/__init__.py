"""Collectors: platforms in, :class:`~monitor.models.Batch` records out.

Where each job lives:

* :mod:`~monitor.sources.protocols`: what a collector is (polled or streaming);
* :mod:`~monitor.sources.http`: the shared client and JSON decoding;
* :mod:`~monitor.sources.transport`: retries, backoff and rate limits of every
  HTTP request, streams included;
* :mod:`~monitor.sources.ratelimit`: the per-host budget and the platforms'
  rate-limit headers (also used by websocket connects);
* :mod:`~monitor.sources.errors`: how failures and waits are worded;
* one module per platform (:mod:`~monitor.sources.mastodon`,
  :mod:`~monitor.sources.mastodon_live`, :mod:`~monitor.sources.bluesky`,
  :mod:`~monitor.sources.jetstream`), :mod:`~monitor.sources.files` for imports,
  and :mod:`~monitor.sources.registry` mapping ``sources:`` to collectors.

The platform modules are not imported here: they need the configuration,
which itself imports :mod:`~monitor.sources.settings`.
"""

from monitor.sources.errors import HttpStatusError
from monitor.sources.http import HttpClient, JsonResponse
from monitor.sources.protocols import PolledSource, Sink, StreamingSource
from monitor.sources.ratelimit import HostBudgets

__all__ = [
    "HostBudgets",
    "HttpClient",
    "HttpStatusError",
    "JsonResponse",
    "PolledSource",
    "Sink",
    "StreamingSource",
]
