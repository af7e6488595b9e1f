"""Seeding helpers shared by the read-side tests (analyse and web)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
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


def lagged_pair(lag: int, hours: int = 24 * 30, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Two hourly count series with a strong shared daily rhythm, a trend in B, and bursts
    in A that B echoes *lag* hours later."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    season = 1 + 0.8 * np.sin(2 * np.pi * t / 24)
    events = np.zeros(hours)
    idx = rng.choice(np.arange(60, hours - 60), max(4, hours // 36), replace=False)
    events[idx] = rng.uniform(20, 60, idx.size)
    burst = np.convolve(events, np.exp(-np.arange(6) / 2.0))[:hours]
    a = rng.poisson(10 * season + burst)
    echo = np.roll(burst, lag)
    b = rng.poisson(6 * season * (1 + t / hours) + 0.6 * echo)
    return a, b
