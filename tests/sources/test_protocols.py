"""Every collector answers all the service asks of it: its platform, and for polls the jitter."""

from __future__ import annotations

from datetime import timedelta

from monitor.config import Config
from monitor.sources import HttpClient, PolledSource, StreamingSource
from monitor.sources.bluesky import BlueskySearchCollector
from monitor.sources.jetstream import JetstreamCollector
from monitor.sources.mastodon import MastodonCollector
from monitor.sources.mastodon_live import MastodonLiveCollector
from monitor.sources.settings import BlueskySearchSource, JetstreamSource, MastodonSource


async def test_polled_collectors_name_their_platform_and_jitter(http: HttpClient) -> None:
    masto = MastodonSource(type="mastodon", instances=["mastodon.social"],
                           jitter=timedelta(seconds=7))
    bsky = BlueskySearchSource(type="bluesky_search", jitter=timedelta(seconds=3))
    polled = [MastodonCollector(masto, Config(), http),
              BlueskySearchCollector(bsky, Config(), http)]
    assert all(isinstance(c, PolledSource) and not isinstance(c, StreamingSource)
               for c in polled)
    # the scheduler spreads polls by the configured jitter, and stores posts by platform
    assert [(c.platform, c.jitter()) for c in polled] == [
        ("mastodon", timedelta(seconds=7)), ("bluesky", timedelta(seconds=3))]


async def test_streaming_collectors_name_their_platform(http: HttpClient) -> None:
    masto = MastodonSource(type="mastodon", instances=["mastodon.social"], streaming=True)
    streaming = [MastodonLiveCollector(masto, Config(), http),
                 JetstreamCollector(JetstreamSource(type="jetstream"), Config(), http.budgets)]
    assert all(isinstance(c, StreamingSource) and not isinstance(c, PolledSource)
               for c in streaming)
    # Jetstream posts are Bluesky posts: one at:// uri whichever way it came in
    assert [c.platform for c in streaming] == ["mastodon", "bluesky"]
