"""Plain records that cross stages: sources → enrich → store → detect → notify.

All datetimes are timezone-aware UTC. Records are frozen so a stage cannot
change what another stage already saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["EARLIEST_POST", "FUTURE_SLACK", "Batch", "Cursor", "ImplausibleDate", "Post",
           "ScoredPost", "Sentiment", "StreamKey", "plausible_created", "utc"]

# No post of any platform here is older (Usenet archives and early blogs included),
# and the rollups count steps from the Unix epoch.
EARLIEST_POST = datetime(1990, 1, 1, tzinfo=UTC)
# A post stamped up to this far ahead is a client clock running fast, and kept (the
# Bluesky collectors clamp it to the time the network saw it); further is garbage.
FUTURE_SLACK = timedelta(days=1)


def utc(dt: datetime) -> datetime:
    """Return *dt* as an aware UTC datetime (naive values are taken as UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


class ImplausibleDate(ValueError):
    """A post's time no platform can have produced (year 0001, year 9999...)."""


def plausible_created(created: datetime, now: datetime | None = None) -> datetime:
    """A post's creation time, checked: every collector passes its times through this.

    Returns *created* as aware UTC when it lies between :data:`EARLIEST_POST` and
    :data:`FUTURE_SLACK` after *now*; otherwise raises :class:`ImplausibleDate` (a
    ``ValueError``), which the collector counts as a rejected post. Stored as given,
    a year-9999 post made its stream's "last post" the future, its lag negative and
    the flatline alert blind.
    """
    created = utc(created)
    now = utc(now) if now is not None else datetime.now(UTC)
    if created < EARLIEST_POST or created > now + FUTURE_SLACK:
        raise ImplausibleDate(f"expected a time between {EARLIEST_POST:%Y-%m-%d} and a day "
                              f"from now, got {created:%Y-%m-%dT%H:%M:%SZ}")
    return created


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
    text_truncated: bool = False  # the text was cut to TEXT_MAX_CHARS (enrich.pipeline)


@dataclass(frozen=True, slots=True)
class Batch:
    """Posts fetched together and the cursor to save once they are stored.

    ``deleted`` lists canonical keys the platform reported as deleted.
    ``edited`` carries new versions of posts the platform reported edited.
    """

    stream: StreamKey
    posts: tuple[Post, ...] = ()
    cursor: Cursor | None = None
    deleted: tuple[str, ...] = field(default=())
    rejected: int = 0  # malformed items skipped by the source, counted in health
    # new versions of posts the platform reported edited (Mastodon status.update):
    # stored posts are replaced and their buckets corrected (monitor.store.edits)
    edited: tuple[Post, ...] = field(default=())
