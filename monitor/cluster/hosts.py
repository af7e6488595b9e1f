"""Which platform host a polled stream belongs to: the unit that is leased."""

from __future__ import annotations

from urllib.parse import urlsplit

from monitor.models import StreamKey

__all__ = ["host_key"]


def host_key(stream: StreamKey) -> str:
    """The host a stream's requests go to (its per-host budget's key).

    A stream's endpoint is its host (``mastodon.social``), a host and a path
    (Reddit's ``www.reddit.com/r/x``, a feed's ``host/feed.xml``) or a URL.
    """
    endpoint = stream.endpoint
    if "://" in endpoint:
        return urlsplit(endpoint).netloc or endpoint
    return endpoint.split("/", 1)[0] or endpoint
