"""Plain records that cross stages: sources → enrich → store → detect → notify.

All datetimes are timezone-aware UTC. Records are frozen so a stage cannot
change what another stage already saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["Batch", "Cursor", "Post", "ScoredPost", "Sentiment", "StreamKey", "utc"]


def utc(dt: datetime) -> datetime:
    """Return *dt* as an aware UTC datetime (naive values are taken as UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One followed stream: a platform endpoint and a tag (or '*' for a firehose)."""

    source: str  # e.g. "mastodon", "bluesky-search", "jetstream", "file"
    endpoint: str  # host or file name
    tag: str  # normalised tag without '#', or "*" for a firehose

    @property
    def name(self) -> str:
        """Stable identifier used as the cursor and health key."""
        return f"{self.endpoint}#{self.tag}"


@dataclass(frozen=True, slots=True)
class Cursor:
    """An opaque position in a stream, saved in the same transaction as its batch."""

    source: str
    stream: str
    value: str


@dataclass(frozen=True, slots=True)
class Post:
    """A post as a platform gave it, before enrichment.

    ``key`` is the platform's canonical id (Mastodon status ``uri``, Bluesky
    ``at://`` uri); ``(platform, key)`` is unique. Exactly one of ``text`` or
    ``html`` is normally set; ``tags`` are the platform's own hashtag metadata
    (any case, with or without '#').
    """

    platform: str
    key: str
    created_at: datetime
    url: str | None = None
    author: str | None = None
    text: str | None = None
    html: str | None = None
    lang: str | None = None
    tags: tuple[str, ...] = ()
    is_repost: bool = False
    sensitive: bool = False
    raw_size: int = 0


@dataclass(frozen=True, slots=True)
class Sentiment:
    """VADER scores: compound in [-1, 1]; pos/neu/neg proportions in [0, 1]."""

    compound: float
    pos: float
    neu: float
    neg: float


@dataclass(frozen=True, slots=True)
class ScoredPost:
    """A post after enrichment: plain text, normalised tags, language, sentiment.

    ``author`` is already transformed by the privacy settings (kept, hashed or
    None) and ``text`` is None when the settings say not to store it.
    """

    platform: str
    key: str
    created_at: datetime
    url: str | None
    author: str | None
    text: str | None
    lang: str | None
    tags: tuple[str, ...]
    is_repost: bool
    sensitive: bool
    sentiment: Sentiment | None


@dataclass(frozen=True, slots=True)
class Batch:
    """Posts fetched together and the cursor to save once they are stored.

    ``deleted`` lists canonical keys the platform reported as deleted.
    """

    stream: StreamKey
    posts: tuple[Post, ...] = ()
    cursor: Cursor | None = None
    deleted: tuple[str, ...] = field(default=())
    rejected: int = 0  # malformed items skipped by the source, counted in health
