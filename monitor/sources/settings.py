"""Configuration of the network sources (config.yaml ``sources:`` and ``http:``).

Each source type's settings model subclasses :class:`SourceSettings` and names
itself in ``type: Literal["…"]``; the config's ``sources:`` union is every model
registered in :data:`monitor.sources.registry.SOURCES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from monitor.durations import Duration

__all__ = [
    "BlueskySearchSource",
    "HttpSettings",
    "JetstreamSource",
    "MastodonSource",
    "SourceConfig",
    "SourceContext",
    "SourceSettings",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Strict):
    """Shared HTTP client settings: identity, timeouts, per-host budget."""

    contact: str = "unset (set http.contact to an email or URL)"
    timeout: Duration = timedelta(seconds=20)
    max_retries: int = Field(default=4, ge=0, le=20)
    backoff_base: Duration = timedelta(seconds=1)
    backoff_max: Duration = timedelta(minutes=5)
    per_host_concurrency: int = Field(default=2, ge=1, le=64)
    per_host_min_interval: Duration = timedelta(milliseconds=250)


class SourceSettings(_Strict):
    """Base of every source type's settings; ``type`` is the config's discriminator."""

    type: str


# what config.py's ``sources:`` list holds, seen by a type checker
SourceConfig = SourceSettings


class SourceContext(Protocol):
    """What a collector reads of the whole configuration (:class:`monitor.config.Config` is one).

    Collectors see this, not ``Config``: the config's source union is built from
    the registry that imports the collectors, so they must not import the config.
    """

    @property
    def hashtags(self) -> list[str]: ...

    @property
    def http(self) -> HttpSettings: ...

    @property
    def sources(self) -> Sequence[SourceSettings]: ...

    def followed(self, override: list[str] | None = None) -> list[str]:
        """Tags for a source: its own list if given, else the top-level hashtags."""
        ...


class MastodonSource(SourceSettings):
    """Tag timelines on one or more Mastodon-API instances."""

    type: Literal["mastodon"]
    instances: list[str] = Field(min_length=1)
    tags: list[str] | None = None  # default: the top-level hashtags
    interval: Duration = timedelta(minutes=2)
    jitter: Duration = timedelta(seconds=10)
    backfill_pages: int = Field(default=5, ge=0, le=10_000)
    page_limit: int = Field(default=40, ge=1, le=40)
    access_token: str | None = None
    streaming: bool = False


class BlueskySearchSource(SourceSettings):
    """app.bsky.feed.searchPosts by tag, newest first."""

    type: Literal["bluesky_search"]
    appview: str = "https://public.api.bsky.app"
    pds: str = "https://bsky.social"
    identifier: str | None = None
    app_password: str | None = None
    tags: list[str] | None = None
    interval: Duration = timedelta(minutes=2)
    jitter: Duration = timedelta(seconds=10)
    backfill_pages: int = Field(default=5, ge=0, le=10_000)
    page_limit: int = Field(default=100, ge=1, le=100)


class JetstreamSource(SourceSettings):
    """The Bluesky Jetstream firehose, filtered locally for the followed tags."""

    type: Literal["jetstream"]
    hosts: list[str] = Field(
        default_factory=lambda: [
            "wss://jetstream1.us-east.bsky.network/subscribe",
            "wss://jetstream2.us-east.bsky.network/subscribe",
            "wss://jetstream1.us-west.bsky.network/subscribe",
            "wss://jetstream2.us-west.bsky.network/subscribe",
        ],
        min_length=1,
    )
    tags: list[str] | None = None
    rewind: Duration = timedelta(seconds=5)
    batch_size: int = Field(default=200, ge=1)
    batch_interval: Duration = timedelta(seconds=2)

