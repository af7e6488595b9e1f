"""The tag-pair rollup: posts carrying both tags of a pair, per 5-minute bucket.

``tag_pair_buckets`` holds, for every unordered pair of tags seen together on a
post (stored once, ``tag_a < tag_b``) and every 5-minute bucket, how many posts
carried both, how many of those were scored and the sum of their VADER
compound. With ``tag_buckets`` (each tag's totals) it answers "share of posts
carrying both" and "tone of a tag's posts with and without the other" for any
range by summing a few rows per bucket, without reading a single post.

``write_batch`` adds the increments of the posts it really inserted, in the
same transaction as the posts themselves, so the rollup can never disagree with
``posts``/``post_tags``; the migration ``0003_tag_pairs`` builds the same rows
from posts stored before it existed. This module is the rule in Python
(:func:`pair_increments`, the reference the tests recount with); the batch
executors (``write_sqlite``, ``write_postgres``) apply the same rule in SQL,
and the SQLite one uses :func:`pair_sums` for tag-stuffed posts.

Cost cap: a post with n tags has n(n-1)/2 pairs, and tag-stuffed spam carries
dozens of tags (a 500-character post can hold over a hundred), which would turn
one post into thousands of row updates. Only the first ``MAX_PAIR_TAGS`` (10)
distinct tags of a post are paired — at most 45 pairs — in the post's own tag
order (the platform's tags first, then those found in the text), where the
topical tags come first and stuffing comes last. Per-tag counts in
``tag_buckets`` are not capped; a pair involving a tag past the 10th of a post
is not counted for that post (relate then counts the post as "without").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any, TypedDict

from monitor.models import ScoredPost
from monitor.store.schema import BUCKET_SECONDS

__all__ = [
    "MAX_PAIR_TAGS",
    "PAIR_COLUMNS",
    "PAIR_UPDATE",
    "PairRow",
    "pair_increments",
    "pair_sums",
    "pair_sums_of",
]

MAX_PAIR_TAGS = 10

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PairRow(TypedDict):
    """One increment of ``tag_pair_buckets``."""

    tag_a: str
    tag_b: str
    bucket_start: datetime  # aware UTC, on a 5-minute boundary
    posts: int
    scored: int
    compound_sum: float


PAIR_COLUMNS = "tag_a, tag_b, bucket_start, posts, scored, compound_sum"
# an increment adds to the pair row: sums grow, nothing is overwritten
PAIR_UPDATE = (
    "ON CONFLICT (tag_a, tag_b, bucket_start) DO UPDATE SET "
    "posts = tag_pair_buckets.posts + excluded.posts, "
    "scored = tag_pair_buckets.scored + excluded.scored, "
    "compound_sum = tag_pair_buckets.compound_sum + excluded.compound_sum"
)


def pair_sums(inserted: Iterable[ScoredPost]) -> list[tuple[tuple[str, str, int], list[Any]]]:
    """((tag_a, tag_b, bucket epoch), [posts, scored, compound_sum]) sorted by key:
    :func:`pair_increments` without building a dict per row."""
    items = []
    for post in inserted:
        if len(post.tags) < 2:
            continue
        ts = post.created_at
        epoch = int((ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp())
        s = post.sentiment
        items.append((post.tags, epoch - epoch % BUCKET_SECONDS,
                      None if s is None else float(s.compound)))
    return pair_sums_of(items)


def pair_sums_of(items: Iterable[tuple[Sequence[str], int, float | None]]
                 ) -> list[tuple[tuple[str, str, int], list[Any]]]:
    """:func:`pair_sums` of (tags, bucket epoch, compound or None) per inserted post."""
    # hot path of every batch write: one tuple key and one list per new pair, no more
    acc: dict[tuple[str, str, int], list[Any]] = {}
    get = acc.get
    for tags, start, compound in items:
        if len(tags) < 2:
            continue
        if len(tags) == 2:
            a, b = tags
            keys: Iterable[tuple[str, str, int]] = ((a, b, start) if a < b else (b, a, start),)
        else:
            keys = [(a, b, start)
                    for a, b in combinations(sorted(set(tags[:MAX_PAIR_TAGS])), 2)]
        if compound is None:
            for key in keys:
                row = get(key)
                if row is None:
                    acc[key] = [1, 0, 0.0]
                else:
                    row[0] += 1
        else:
            for key in keys:
                row = get(key)
                if row is None:
                    acc[key] = [1, 1, compound]
                else:
                    row[0] += 1
                    row[1] += 1
                    row[2] += compound
    return sorted(acc.items())


def pair_increments(inserted: Iterable[ScoredPost]) -> list[PairRow]:
    """Per (tag_a, tag_b, bucket) sums over the posts given, sorted by that key.

    Pass only posts that were really inserted (a duplicate must not count twice).
    Posts with fewer than two tags add nothing; tags past a post's first
    ``MAX_PAIR_TAGS`` are ignored (see the module docstring). A post's tags are
    distinct, as ``post_tags``' primary key requires. Sorted, because that is the
    order concurrent writers must lock rows in.
    """
    starts: dict[int, datetime] = {}
    out: list[PairRow] = []
    for (a, b, start), (n, scored, compound_sum) in pair_sums(inserted):
        when = starts.get(start)
        if when is None:
            when = starts[start] = _EPOCH + timedelta(seconds=start)
        out.append({"tag_a": a, "tag_b": b, "bucket_start": when, "posts": n,
                    "scored": scored, "compound_sum": compound_sum})
    return out
