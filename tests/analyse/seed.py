"""Seeding helpers shared by the read-side tests (analyse and web)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine

from monitor.models import ScoredPost, Sentiment
from monitor.store.schema import tag_buckets


def scored(key: str, at: datetime, tags: tuple[str, ...], compound: float | None, *,
           text: str | None = None, author: str | None = None,
           platform: str = "test") -> ScoredPost:
    """A stored-ready post; pos/neu/neg are derived so they sum to 1."""
    sentiment = None
    if compound is not None:
        pos = max(compound, 0.0) / 2
        neg = max(-compound, 0.0) / 2
        sentiment = Sentiment(compound, pos, 1.0 - pos - neg, neg)
    return ScoredPost(
        platform=platform, key=key, created_at=at, url=f"https://example.org/{key}",
        author=author, text=text, lang="en", tags=tags, is_repost=False, sensitive=False,
        sentiment=sentiment,
    )


def bucket_rows(engine: Engine, tag: str, starts: Sequence[datetime],
                counts: Sequence[int]) -> None:
    """Write volume straight into tag_buckets (for series-only tests of long ranges)."""
    rows = [
        {"tag": tag, "bucket_start": s, "posts": int(c), "scored": 0, "compound_sum": 0.0,
         "compound_sq_sum": 0.0, "positive": 0, "neutral": 0, "negative": 0}
        for s, c in zip(starts, counts, strict=True) if c
    ]
    with engine.begin() as conn:
        conn.execute(tag_buckets.insert(), rows)
