"""The SQLite batch executor (sqlite3): posts, tags, bucket and pair increments.

Raw prepared statements and ``executemany``: sqlite3's C loop binds rows far
faster than SQLAlchemy's per-parameter processing, and SQLite has no
executemany with RETURNING. Which posts went in is read back by id instead:
with the write lock held from the start of the transaction, the rows with an
id above the maximum before the insert are exactly this batch's (the
tombstones of ``deletions`` are checked in the insert itself). The bucket
and pair increments are then read by SQLite itself from those rows.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from time import gmtime

from monitor.errors import StoreError
from monitor.models import ScoredPost
from monitor.store.buckets import (
    BUCKET_COLUMNS,
    BUCKET_MINUTES,
    BUCKET_UPDATE,
    NEGATIVE_AT,
    POSITIVE_AT,
)
from monitor.store.pairs import MAX_PAIR_TAGS, PAIR_COLUMNS, PAIR_UPDATE, pair_sums
from monitor.store.plan import POST_COLUMNS, BatchPlan, Stored

__all__ = ["write_sqlite"]

_NO_SENTIMENT = (None, None, None, None)

# A post whose key has a ``deletions`` tombstone is not stored (monitor.store.erase):
# one primary-key probe per row, in the same statement. ?1/?2 are its platform and
# key; the WHERE also tells SQLite's parser that ON CONFLICT is the upsert clause.
_POSTS = (
    f"INSERT INTO posts ({POST_COLUMNS}) "
    "SELECT " + ", ".join(f"?{i}" for i in range(1, POST_COLUMNS.count(",") + 2)) + " "
    "WHERE NOT EXISTS (SELECT 1 FROM deletions WHERE platform = ?1 AND key = ?2) "
    "ON CONFLICT (platform, key) DO NOTHING"
)
_TAGS = "INSERT INTO post_tags (post_id, tag, created_at, seq) VALUES (?, ?, ?, ?)"

# The bucket text from the stored 'YYYY-MM-DD HH:MM:SS.ffffff': hour prefix,
# minutes floored (string work: cheaper than strftime, the same text).
_BUCKET_TEXT = (
    "substr({t}.created_at, 1, 14) || printf('%02d:00.000000', "
    f"CAST(substr({{t}}.created_at, 15, 2) AS INTEGER) / {BUCKET_MINUTES} * {BUCKET_MINUTES})"
)

# One upsert per stored (post, tag) row, straight from the rows just inserted.
# No GROUP BY: SQLite applies ON CONFLICT row by row (a bucket met twice in the
# batch is inserted, then incremented), and sorting ~1,000 rows through a
# temporary B-tree per batch cost more than the upserts (~3 µs/post).
_BUCKETS = (
    f"INSERT INTO tag_buckets ({BUCKET_COLUMNS}) "
    f"SELECT t.tag, {_BUCKET_TEXT.format(t='t')}, "
    "1, p.compound IS NOT NULL, coalesce(p.compound, 0.0), "
    "coalesce(p.compound * p.compound, 0.0), "
    f"coalesce(p.compound >= {POSITIVE_AT!r}, 0), "
    f"coalesce(p.compound < {POSITIVE_AT!r} AND p.compound > {NEGATIVE_AT!r}, 0), "
    f"coalesce(p.compound <= {NEGATIVE_AT!r}, 0) "
    # CROSS JOIN fixes the join order: this batch's posts by id range, then their tags
    "FROM posts AS p CROSS JOIN post_tags AS t ON t.post_id = p.id WHERE p.id > ? "
    + BUCKET_UPDATE
)

# The pairs, read by SQLite from post_tags (~5 µs/post cheaper than binding them
# from Python), one upsert per (post, pair), no GROUP BY (as above). No tag cap
# here: used only when no new post has more than MAX_PAIR_TAGS tags.
_PAIRS = (
    f"INSERT INTO tag_pair_buckets ({PAIR_COLUMNS}) "
    f"SELECT a.tag, b.tag, {_BUCKET_TEXT.format(t='a')}, "
    "1, p.compound IS NOT NULL, coalesce(p.compound, 0.0) "
    "FROM posts AS p CROSS JOIN post_tags AS a ON a.post_id = p.id "
    "JOIN post_tags AS b ON b.post_id = p.id AND a.tag < b.tag "
    "WHERE p.id > ? " + PAIR_UPDATE
)
# the same increments bound from Python, for batches with a tag-stuffed post
_PAIR_VALUES = f"INSERT INTO tag_pair_buckets ({PAIR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) " \
    + PAIR_UPDATE


def _stored_text(ts: datetime) -> str:
    """*ts* (aware UTC) exactly as SQLAlchemy's SQLite DATETIME stores it (naive
    UTC, always six fractional digits), so raw writes compare equal to the
    SQLAlchemy binds of queries."""
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031 (f-string: 2x slower)
        ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond
    )


def _add_pairs(cur: sqlite3.Cursor, inserted: list[ScoredPost], above_id: int) -> None:
    if all(len(post.tags) <= MAX_PAIR_TAGS for post in inserted):
        cur.execute(_PAIRS, (above_id,))
        return
    texts: dict[int, str] = {}
    values = []
    for (a, b, start), (n, scored, compound_sum) in pair_sums(inserted):
        text = texts.get(start)
        if text is None:
            # the stored text of a whole-minute UTC time (f-string: slower)
            text = texts[start] = (
                "%04d-%02d-%02d %02d:%02d:%02d.000000" % gmtime(start)[:6]  # noqa: UP031
            )
        values.append((a, b, text, n, scored, compound_sum))
    if values:
        cur.executemany(_PAIR_VALUES, values)


def write_sqlite(driver: sqlite3.Connection, plan: BatchPlan) -> Stored:
    """The :class:`~monitor.store.plan.Executor` for sqlite3."""
    cur = driver.cursor()
    try:
        if not driver.in_transaction:
            # take the write lock now, so no other writer can add posts before the read-back
            cur.execute("BEGIN IMMEDIATE")
        top = cur.execute("SELECT coalesce(max(id), 0) FROM posts").fetchone()[0]
        now_text = _stored_text(plan.now)
        by_key: dict[tuple[str, str], tuple[ScoredPost, str]] = {}
        rows = []
        for post, created in zip(plan.posts, plan.created, strict=True):
            text = _stored_text(created)
            by_key[(post.platform, post.key)] = (post, text)
            s = post.sentiment
            rows.append(
                (post.platform, post.key, text, now_text, post.author, post.url, post.lang,
                 post.text, post.is_repost, post.sensitive)
                + ((s.compound, s.pos, s.neu, s.neg) if s is not None else _NO_SENTIMENT)
                + (post.text_truncated,)
            )
        cur.executemany(_POSTS, rows)
        expected = cur.rowcount
        inserted = cur.execute(
            "SELECT id, platform, key FROM posts WHERE id > ? ORDER BY id", (top,)
        ).fetchall()
        if len(inserted) != expected:
            raise StoreError(
                f"posts: {expected} rows inserted but {len(inserted)} found above id {top}; "
                "is another process writing without a transaction?"
            )
        tag_rows: list[tuple[int, str, str, int]] = []
        for pid, platform, key in inserted:
            post, text = by_key[(platform, key)]
            tag_rows.extend([(pid, tag, text, seq) for seq, tag in enumerate(post.tags)])
        if tag_rows:
            cur.executemany(_TAGS, tag_rows)
            cur.execute(_BUCKETS, (top,))
            _add_pairs(cur, [by_key[(platform, key)][0] for _, platform, key in inserted], top)
    finally:
        cur.close()
    return Stored(len(inserted), len(tag_rows))
