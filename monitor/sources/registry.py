"""config.yaml ``sources:`` → collector objects.

Adding a platform means adding a module and one entry in ``_BUILDERS``; the
service never switches on the source type itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from monitor.config import Config
from monitor.errors import ConfigError
from monitor.sources.base import HttpClient, PolledSource, StreamingSource
from monitor.sources.settings import BlueskySearchSource, JetstreamSource, MastodonSource

__all__ = ["build_sources"]

Collector = PolledSource | StreamingSource


def _mastodon(cfg: object, config: Config, http: HttpClient) -> list[Collector]:
    from monitor.sources.mastodon import MastodonCollector, MastodonLiveCollector

    assert isinstance(cfg, MastodonSource)
    polled: list[Collector] = [MastodonCollector(cfg, config, http)]
    # live mode rides beside polling, which keeps the cursor and fills any gap
    return [*polled, MastodonLiveCollector(cfg, config, http)] if cfg.streaming else polled


def _bluesky_search(cfg: object, config: Config, http: HttpClient) -> list[Collector]:
    from monitor.sources.bluesky import BlueskySearchCollector

    assert isinstance(cfg, BlueskySearchSource)
    return [BlueskySearchCollector(cfg, config, http)]


def _jetstream(cfg: object, config: Config, http: HttpClient) -> list[Collector]:
    # imported lazily: the Jetstream consumer lives in its own module and pulls in websockets
    module = importlib.import_module("monitor.sources.jetstream")
    collector: Collector = module.JetstreamCollector(cfg, config)
    return [collector]


_BUILDERS: dict[type, Callable[[object, Config, HttpClient], list[Collector]]] = {
    MastodonSource: _mastodon,
    BlueskySearchSource: _bluesky_search,
    JetstreamSource: _jetstream,
}


def build_sources(config: Config, http: HttpClient) -> list[PolledSource | StreamingSource]:
    """The collectors of every configured source, in config order.

    A Mastodon source with ``streaming: true`` gives two: the polled collector
    and its live (SSE) companion.

    Raises ConfigError naming ``sources[i]`` when a source cannot be built.
    """
    out: list[PolledSource | StreamingSource] = []
    for index, cfg in enumerate(config.sources):
        builder = _BUILDERS.get(type(cfg))
        if builder is None:
            raise ConfigError("config", f"sources[{index}]",
                              f"no collector for source type {type(cfg).__name__!r}")
        out.extend(builder(cfg, config, http))
    return out
