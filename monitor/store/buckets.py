"""The ``tag_buckets`` rollup rule: 5-minute buckets and the three tone classes.

Each stored (post, tag) adds one post to its tag's bucket; a scored post also
adds its VADER compound (and its square) and one to exactly one tone class.
Both batch executors (``write_sqlite``, ``write_postgres``) express this rule
in SQL over the rows they really inserted; the names here are what they share.
"""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.store.schema import BUCKET_SECONDS

__all__ = [
    "BUCKET_COLUMNS",
    "BUCKET_MINUTES",
    "BUCKET_UPDATE",
    "NEGATIVE_AT",
    "POSITIVE_AT",
    "bucket_start",
]

# compound thresholds from the VADER paper: >= 0.05 positive, <= -0.05 negative
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05

if BUCKET_SECONDS % 60 or 3600 % BUCKET_SECONDS:  # SQLite floors minutes within the hour
    raise RuntimeError(f"BUCKET_SECONDS={BUCKET_SECONDS} must be whole minutes dividing an hour")
BUCKET_MINUTES = BUCKET_SECONDS // 60

BUCKET_COLUMNS = (
    "tag, bucket_start, posts, scored, compound_sum, compound_sq_sum, positive, neutral, negative"
)
# an increment adds to the bucket row: sums grow, nothing is overwritten
BUCKET_UPDATE = (
    "ON CONFLICT (tag, bucket_start) DO UPDATE SET "
    "posts = tag_buckets.posts + excluded.posts, "
    "scored = tag_buckets.scored + excluded.scored, "
    "compound_sum = tag_buckets.compound_sum + excluded.compound_sum, "
    "compound_sq_sum = tag_buckets.compound_sq_sum + excluded.compound_sq_sum, "
    "positive = tag_buckets.positive + excluded.positive, "
    "neutral = tag_buckets.neutral + excluded.neutral, "
    "negative = tag_buckets.negative + excluded.negative"
)


def bucket_start(ts: datetime) -> datetime:
    """The start of the 5-minute bucket holding *ts* (UTC)."""
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % BUCKET_SECONDS, tz=UTC)
