"""Synthetic per-tag series with known answers, and helpers that seed them into the store."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.store.schema import post_tags, posts, stream_health, tag_buckets

BUCKET = timedelta(minutes=5)
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday


def usual(at: datetime, base: float = 40.0) -> float:
    """Expected posts per 5-minute bucket: quiet nights, busy evenings, calmer weekends."""
    hour = at.hour + at.minute / 60
    daily = 0.25 + 0.75 * (0.5 - 0.5 * math.cos(2 * math.pi * (hour - 8) / 24)) ** 2
    weekly = 0.7 if at.weekday() >= 5 else 1.0
    return base * daily * weekly


def seasonal_counts(
    days: float, *, seed: int = 7, base: float = 40.0, start: datetime = START
) -> list[tuple[datetime, float]]:
    """Poisson counts around :func:`usual` for *days* days."""
    rng = random.Random(seed)
    out = []
    for i in range(int(days * 288)):
        at = start + i * BUCKET
        lam = usual(at, base)
        # Poisson via a normal approximation is enough at these rates; never negative
        out.append((at, float(max(0, round(rng.gauss(lam, math.sqrt(lam)))))))
    return out


def seed_buckets(
    engine: Engine, tag: str, counts: Iterable[tuple[datetime, float]],
    compound: float = 0.0, scored_share: float = 0.0,
) -> None:
    rows = []
    for at, n in counts:
        scored = int(n * scored_share)
        rows.append({
            "tag": tag, "bucket_start": at, "posts": int(n), "scored": scored,
            "compound_sum": compound * scored, "compound_sq_sum": compound * compound * scored,
            "positive": scored if compound >= 0.05 else 0,
            "neutral": scored if -0.05 < compound < 0.05 else 0,
            "negative": scored if compound <= -0.05 else 0,
        })
    with engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            conn.execute(tag_buckets.insert(), rows[i : i + 2000])


def seed_posts(engine: Engine, tagsets: Sequence[tuple[datetime, Sequence[str]]], key: str) -> None:
    """One post per entry, carrying those tags (post_tags only need id, tag, time)."""
    with engine.begin() as conn:
        for i, (at, tags) in enumerate(tagsets):
            pid = conn.execute(posts.insert().values(
                platform="mastodon", key=f"{key}-{i}", created_at=at, collected_at=at,
                is_repost=False, sensitive=False,
            ).returning(posts.c.id)).scalar_one()
            conn.execute(post_tags.insert(), [{"post_id": pid, "tag": t, "created_at": at}
                                              for t in tags])


def seed_health(
    engine: Engine, source: str, stream: str, *, last_post: datetime, last_success: datetime,
    collected: int = 100,
) -> None:
    with engine.begin() as conn:
        conn.execute(stream_health.delete().where(stream_health.c.source == source,
                                                  stream_health.c.stream == stream))
        conn.execute(stream_health.insert().values(
            source=source, stream=stream, last_attempt_at=last_success,
            last_success_at=last_success, last_post_at=last_post, posts_collected=collected,
            posts_rejected=0, fetch_errors=0,
        ))
