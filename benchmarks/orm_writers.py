"""The two SQLAlchemy-ORM reference writers of ``benchmarks.ingest``.

``store_naive`` commits once per post; ``store_batched`` once per batch, so the
ratio to it measures write_batch's design and not the number of fsyncs. Both
keep ``tag_buckets`` up to date the simple way an ORM user would: fetch the
bucket row by primary key, create it when missing, add to its counters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, registry

from monitor.models import ScoredPost
from monitor.store.buckets import bucket_start
from monitor.store.schema import post_tags, posts, tag_buckets

__all__ = ["map_orm", "store_batched", "store_naive"]


class _PostRow:
    pass


class _TagRow:
    pass


class _BucketRow:
    pass


_mapped = False


def map_orm() -> None:
    """Map the row classes onto the store's tables (once per process)."""
    global _mapped
    if not _mapped:
        mapper = registry()
        mapper.map_imperatively(_PostRow, posts)
        mapper.map_imperatively(_TagRow, post_tags)
        mapper.map_imperatively(_BucketRow, tag_buckets)
        _mapped = True


def _orm_post(post: ScoredPost, now: datetime) -> Any:
    s = post.sentiment
    row: Any = _PostRow()
    row.platform, row.key, row.created_at, row.collected_at = (post.platform, post.key,
                                                               post.created_at, now)
    row.author, row.url, row.lang, row.text = post.author, post.url, post.lang, post.text
    row.is_repost, row.sensitive = post.is_repost, post.sensitive
    row.compound = s.compound if s else None
    row.pos, row.neu, row.neg = (s.pos, s.neu, s.neg) if s else (None, None, None)
    return row


def _orm_tags(session: Session, row: Any, post: ScoredPost) -> None:
    for tag in post.tags:
        tag_row: Any = _TagRow()
        tag_row.post_id, tag_row.tag, tag_row.created_at = row.id, tag, post.created_at
        session.add(tag_row)


def _orm_buckets(session: Session, scored: Sequence[ScoredPost]) -> None:
    """Count *scored* into their buckets the simple way: each bucket row fetched by
    primary key (the session's identity map, else a SELECT), created when missing,
    and its counters incremented in Python."""
    new: dict[tuple[str, datetime], Any] = {}  # pending rows are not in the identity map
    with session.no_autoflush:  # else every SELECT would first flush the rows added so far
        for post in scored:
            s = post.sentiment
            for tag in post.tags:
                key = (tag, bucket_start(post.created_at))
                bucket: Any = new.get(key) or session.get(_BucketRow, key)
                if bucket is None:
                    bucket = new[key] = _BucketRow()
                    bucket.tag, bucket.bucket_start = key
                    bucket.posts = bucket.scored = 0
                    bucket.positive = bucket.neutral = bucket.negative = 0
                    bucket.compound_sum = bucket.compound_sq_sum = 0.0
                    session.add(bucket)
                bucket.posts += 1
                if s is not None:
                    bucket.scored += 1
                    bucket.compound_sum += s.compound
                    bucket.compound_sq_sum += s.compound * s.compound
                    if s.compound >= 0.05:
                        bucket.positive += 1
                    elif s.compound <= -0.05:
                        bucket.negative += 1
                    else:
                        bucket.neutral += 1


def store_naive(session: Session, post: ScoredPost, now: datetime) -> None:
    """One post with its tags and buckets, and one commit."""
    row = _orm_post(post, now)
    session.add(row)
    session.flush()
    _orm_tags(session, row, post)
    _orm_buckets(session, [post])
    session.commit()


def store_batched(session: Session, scored: Sequence[ScoredPost], now: datetime) -> None:
    """A batch: ``add_all`` of its posts (the ORM inserts them and fetches their
    ids), then their tags and buckets, and ONE commit, as write_batch does. It
    skips what write_batch also does: duplicates, tag pairs, cursor and health."""
    rows = [_orm_post(post, now) for post in scored]
    session.add_all(rows)
    session.flush()  # the post ids, for the tag rows
    for row, post in zip(rows, scored, strict=True):
        _orm_tags(session, row, post)
    _orm_buckets(session, scored)
    session.commit()  # tag inserts and bucket updates go out as executemany
