"""Source types: config.yaml ``sources[].type`` → settings model and collectors.

:data:`SOURCES` holds one :class:`SourceKind` per type: its name (the
``type:`` in config), its settings model (a :class:`SourceSettings` subclass,
which the config's ``sources:`` union is built from) and the builder that turns
one configured source into collectors. The built-in types are the tuple below;
an installed plugin adds one through the ``hashtag_monitor.sources`` entry-point
group (see docs/extending.md). The service never switches on the source type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from monitor.errors import ConfigError
from monitor.registry import ENTRY_POINT_PREFIX, Registry, UnknownKind, require_tag
from monitor.sources.bluesky import BlueskySearchCollector
from monitor.sources.hackernews import HackerNewsCollector, HackerNewsSource
from monitor.sources.http import HttpClient
from monitor.sources.jetstream import JetstreamCollector
from monitor.sources.lemmy import LemmyCollector, LemmySource
from monitor.sources.mastodon import MastodonCollector
from monitor.sources.mastodon_live import MastodonLiveCollector
from monitor.sources.misskey import MisskeyCollector, MisskeySource
from monitor.sources.nostr import NostrSource, nostr_collectors
from monitor.sources.protocols import PolledSource, StreamingSource
from monitor.sources.reddit import RedditCollector, RedditSource
from monitor.sources.rss import RssCollector, RssSource
from monitor.sources.settings import (
    BlueskySearchSource,
    JetstreamSource,
    MastodonSource,
    SourceContext,
    SourceSettings,
)
from monitor.sources.telegram import TelegramCollector, TelegramSource
from monitor.sources.x import XCollector, XSource

__all__ = ["SOURCES", "Collector", "SourceKind", "build_sources"]

Collector = PolledSource | StreamingSource
S = TypeVar("S", bound=SourceSettings)


@dataclass(frozen=True, slots=True)
class SourceKind(Generic[S]):
    """One source type: ``type:`` name, settings model, and how to build its collectors."""

    name: str
    settings: type[S]
    # one configured source → its collectors (usually one; Mastodon live mode adds a second)
    build: Callable[[S, SourceContext, HttpClient], Sequence[Collector]]


def _mastodon(cfg: MastodonSource, config: SourceContext, http: HttpClient) -> list[Collector]:
    polled = MastodonCollector(cfg, config, http)
    # live mode rides beside polling, which keeps the cursor and fills any gap
    # (sharing its id → uri map, which turns a live delete's local id into the post key)
    return ([polled, MastodonLiveCollector(cfg, config, http, polled=polled)]
            if cfg.streaming else [polled])


def _bluesky_search(
    cfg: BlueskySearchSource, config: SourceContext, http: HttpClient
) -> list[Collector]:
    return [BlueskySearchCollector(cfg, config, http)]


def _jetstream(cfg: JetstreamSource, config: SourceContext, http: HttpClient) -> list[Collector]:
    # a websocket, not HTTP: it only takes its connect slots from the shared per-host budget
    return [JetstreamCollector(cfg, config, http.budgets)]


def _nostr(cfg: NostrSource, config: SourceContext, http: HttpClient) -> list[Collector]:
    # one websocket per relay, each with its own cursor; they share the ids already seen
    return list(nostr_collectors(cfg, config, http.budgets))


def _telegram(cfg: TelegramSource, config: SourceContext, http: HttpClient) -> list[Collector]:
    return [TelegramCollector(cfg, config, http)]


def _check(kind: SourceKind[Any]) -> None:
    if not (isinstance(kind.settings, type) and issubclass(kind.settings, SourceSettings)):
        raise TypeError(f"source type {kind.name!r}: settings must subclass SourceSettings")
    require_tag(kind.settings, "type", kind.name)


SOURCES: Registry[SourceKind[Any]] = Registry(
    "source type",
    ENTRY_POINT_PREFIX + "sources",
    SourceKind,
    (
        SourceKind("mastodon", MastodonSource, _mastodon),
        SourceKind("bluesky_search", BlueskySearchSource, _bluesky_search),
        SourceKind("jetstream", JetstreamSource, _jetstream),
        SourceKind("reddit", RedditSource,
                   lambda cfg, config, http: [RedditCollector(cfg, config, http)]),
        SourceKind("x", XSource, lambda cfg, config, http: [XCollector(cfg, config, http)]),
        SourceKind("misskey", MisskeySource,
                   lambda cfg, config, http: [MisskeyCollector(cfg, config, http)]),
        SourceKind("lemmy", LemmySource,
                   lambda cfg, config, http: [LemmyCollector(cfg, config, http)]),
        SourceKind("hackernews", HackerNewsSource,
                   lambda cfg, config, http: [HackerNewsCollector(cfg, config, http)]),
        SourceKind("rss", RssSource,
                   lambda cfg, config, http: [RssCollector(cfg, config, http)]),
        SourceKind("nostr", NostrSource, _nostr),
        SourceKind("telegram", TelegramSource, _telegram),
    ),
    check=_check,
)


def build_sources(config: SourceContext, http: HttpClient) -> list[Collector]:
    """The collectors of every configured source, in config order.

    A Mastodon source with ``streaming: true`` gives two: the polled collector
    and its live (SSE) companion.

    Raises ConfigError naming ``sources[i]`` when a source's type is not registered
    (possible only if it was unregistered after the config was loaded).
    """
    out: list[Collector] = []
    for index, cfg in enumerate(config.sources):
        try:
            kind = SOURCES.get(cfg.type)
        except UnknownKind as exc:
            raise ConfigError("config", f"sources[{index}].type", str(exc)) from None
        out.extend(kind.build(cfg, config, http))
    return out
