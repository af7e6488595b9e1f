"""config.yaml sources → collectors, for every configured platform."""

from __future__ import annotations

from monitor.config import parse_config
from monitor.sources import HttpClient, PolledSource, StreamingSource
from monitor.sources.bluesky import BlueskySearchCollector
from monitor.sources.mastodon import MastodonCollector
from monitor.sources.registry import build_sources


async def test_every_configured_source_becomes_a_collector(http: HttpClient) -> None:
    config = parse_config({
        "hashtags": ["MeToo", "NotAllMen"],
        "sources": [
            {"type": "mastodon", "instances": ["mastodon.social", "https://mas.to/"]},
            {"type": "bluesky_search", "tags": ["ididit"]},
            {"type": "jetstream"},
        ],
    }, env={})
    built = build_sources(config, http)
    assert [type(s).__name__ for s in built] == [
        "MastodonCollector", "BlueskySearchCollector", "JetstreamCollector"]
    masto, bsky, jet = built
    assert isinstance(masto, MastodonCollector) and isinstance(masto, PolledSource)
    assert [s.name for s in masto.streams()] == [
        "mastodon.social#metoo", "mastodon.social#notallmen", "mas.to#metoo", "mas.to#notallmen"]
    assert isinstance(bsky, BlueskySearchCollector)
    assert [s.name for s in bsky.streams()] == ["public.api.bsky.app#ididit"]
    assert isinstance(jet, StreamingSource)


async def test_no_sources_configured_builds_nothing(http: HttpClient) -> None:
    assert build_sources(parse_config({}, env={}), http) == []


async def test_mastodon_live_mode_adds_a_streaming_companion(http: HttpClient) -> None:
    config = parse_config({"sources": [{"type": "mastodon", "instances": ["mastodon.social"],
                                        "streaming": True}]}, env={})
    polled, live = build_sources(config, http)
    assert isinstance(polled, PolledSource) and not isinstance(polled, StreamingSource)
    assert isinstance(live, StreamingSource) and not isinstance(live, PolledSource)
    assert live.streams() == polled.streams()
