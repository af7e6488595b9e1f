"""A reference writer in plain SQLAlchemy Core, for tests only.

The store's executors bind rows with sqlite3 and psycopg directly; the readers
filter with SQLAlchemy binds. This writer stores posts, tags, bucket and pair
increments the way SQLAlchemy would, so a test can check that both land on the
same rows: if the stored formats differed, the sums would split.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from monitor.models import ScoredPost
from monitor.store.buckets import NEGATIVE_AT, POSITIVE_AT, bucket_start
from monitor.store.pairs import PairRow, pair_increments
from monitor.store.partitions import post_keys
from monitor.store.schema import post_tags, posts, tag_buckets, tag_pair_buckets


def _insert(conn: Connection, table: Table) -> Any:
    return (postgresql.insert(table) if conn.dialect.name == "postgresql"
            else sqlite.insert(table))


def add_pairs(conn: Connection, rows: Sequence[PairRow]) -> None:
    """Upsert pair increments with SQLAlchemy binds (sums grow)."""
    ins = _insert(conn, tag_pair_buckets)
    c, ex = tag_pair_buckets.c, ins.excluded
    conn.execute(ins.on_conflict_do_update(
        index_elements=[c.tag_a, c.tag_b, c.bucket_start],
        set_={"posts": c.posts + ex.posts, "scored": c.scored + ex.scored,
              "compound_sum": c.compound_sum + ex.compound_sum},
    ), [dict(r) for r in rows])


def write_posts(conn: Connection, batch: Sequence[ScoredPost], now: datetime) -> tuple[int, int]:
    """Store *batch* (distinct keys) with Core statements: (posts inserted, tag rows)."""
    by_key = {(p.platform, p.key): p for p in batch}
    stmt = (
        _insert(conn, posts)
        .on_conflict_do_nothing(index_elements=[posts.c.platform, posts.c.key])
        .returning(posts.c.id, posts.c.platform, posts.c.key)
    )
    gate: dict[tuple[str, str], int] | None = None
    if conn.dialect.name == "postgresql":
        # posts is partitioned there (0010): the post_keys gate dedupes and hands out ids
        k = post_keys.c
        admitted = conn.execute(
            postgresql.insert(post_keys).on_conflict_do_nothing(index_elements=[k.platform, k.key])
            .returning(k.id, k.platform, k.key),
            [{"platform": p.platform, "key": p.key, "created_at": p.created_at} for p in batch])
        gate = {(r.platform, r.key): r.id for r in admitted}
        batch = [p for p in batch if (p.platform, p.key) in gate]
        stmt = posts.insert().returning(posts.c.id, posts.c.platform, posts.c.key)
    rows = [{
        "platform": p.platform, "key": p.key, "created_at": p.created_at, "collected_at": now,
        "author": p.author, "url": p.url, "lang": p.lang, "text": p.text,
        "is_repost": p.is_repost, "sensitive": p.sensitive,
        "compound": p.sentiment.compound if p.sentiment else None,
        "pos": p.sentiment.pos if p.sentiment else None,
        "neu": p.sentiment.neu if p.sentiment else None,
        "neg": p.sentiment.neg if p.sentiment else None,
    } for p in batch]
    if gate is not None:
        for row in rows:
            row["id"] = gate[(row["platform"], row["key"])]
    if not rows:
        return 0, 0
    inserted = sorted((r.id, by_key[(r.platform, r.key)]) for r in conn.execute(stmt, rows))
    tag_rows = [{"post_id": pid, "tag": tag, "created_at": p.created_at}
                for pid, p in inserted for tag in p.tags]
    if tag_rows:
        conn.execute(post_tags.insert(), tag_rows)
    sums: dict[tuple[str, datetime], list[Any]] = {}
    for _, p in inserted:
        for tag in p.tags:
            row = sums.setdefault((tag, bucket_start(p.created_at)), [0, 0, 0.0, 0.0, 0, 0, 0])
            row[0] += 1
            if p.sentiment is not None:
                c = p.sentiment.compound
                row[1] += 1
                row[2] += c
                row[3] += c * c
                row[4 if c >= POSITIVE_AT else 6 if c <= NEGATIVE_AT else 5] += 1
    if sums:
        ins = _insert(conn, tag_buckets)
        c, ex = tag_buckets.c, ins.excluded
        names = ("posts", "scored", "compound_sum", "compound_sq_sum", "positive", "neutral",
                 "negative")
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[c.tag, c.bucket_start],
                set_={name: getattr(c, name) + getattr(ex, name) for name in names},
            ),
            [{"tag": tag, "bucket_start": start} | dict(zip(names, v, strict=True))
             for (tag, start), v in sorted(sums.items())],
        )
    pairs = pair_increments(p for _, p in inserted)
    if pairs:
        add_pairs(conn, pairs)
    return len(inserted), len(tag_rows)
