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
import time
from datetime import UTC, datetime
from typing import Any

from monitor.errors import StoreError
from monitor.store.buckets import (
    BUCKET_COLUMNS,
    BUCKET_MINUTES,
    BUCKET_UPDATE,
    NEGATIVE_AT,
    POSITIVE_AT,
)
from monitor.store.pairs import MAX_PAIR_TAGS, PAIR_COLUMNS, PAIR_UPDATE, pair_sums_of
from monitor.store.plan import POST_COLUMNS, BatchPlan, Executor, Stored
from monitor.store.schema import BUCKET_SECONDS

__all__ = ["SqliteRows", "execute_sqlite", "prepare_sqlite", "write_sqlite"]

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


def _add_pairs(cur: sqlite3.Cursor, rows: list[tuple[Any, ...]], tags: list[tuple[str, ...]],
               inserted: list[int], above_id: int) -> None:
    """The pair increments of the rows at indexes *inserted*."""
    if all(len(tags[i]) <= MAX_PAIR_TAGS for i in inserted):
        cur.execute(_PAIRS, (above_id,))
        return
    # a tag-stuffed post: pair only its first MAX_PAIR_TAGS tags (bound from Python)
    items = []
    for i in inserted:
        if len(tags[i]) > 1:
            created = datetime.fromisoformat(rows[i][2]).replace(tzinfo=UTC)
            epoch = int(created.timestamp())
            items.append((tags[i], epoch - epoch % BUCKET_SECONDS, rows[i][_COMPOUND]))
    texts: dict[int, str] = {}
    values = []
    for (a, b, start), (n, scored, compound_sum) in pair_sums_of(items):
        text = texts.get(start)
        if text is None:
            # the stored text of a whole-minute UTC time (f-string: slower)
            text = texts[start] = (
                "%04d-%02d-%02d %02d:%02d:%02d.000000" % time.gmtime(start)[:6]  # noqa: UP031
            )
        values.append((a, b, text, n, scored, compound_sum))
    if values:
        cur.executemany(_PAIR_VALUES, values)


# prepared rows: (post rows in POST_COLUMNS order, each post's tags)
SqliteRows = tuple[list[tuple[Any, ...]], list[tuple[str, ...]]]
_COMPOUND = 10  # the index of compound in a post row


def prepare_sqlite(plan: BatchPlan) -> SqliteRows:
    """The plan's post rows, times as SQLite stores them, and each post's tags."""
    now_text = _stored_text(plan.now)
    rows = []
    for post, created in zip(plan.posts, plan.created, strict=True):
        s = post.sentiment
        rows.append(
            (post.platform, post.key, _stored_text(created), now_text, post.author, post.url,
             post.lang, post.text, post.is_repost, post.sensitive)
            + ((s.compound, s.pos, s.neu, s.neg) if s is not None else _NO_SENTIMENT)
            + (post.text_truncated,)
        )
    return rows, [post.tags for post in plan.posts]


def execute_sqlite(driver: sqlite3.Connection, prepared: SqliteRows) -> Stored:
    """Store :func:`prepare_sqlite`'s rows in the open transaction of *driver*."""
    rows, tags = prepared
    cur = driver.cursor()
    try:
        if not driver.in_transaction:
            # take the write lock now, so no other writer can add posts before the read-back
            cur.execute("BEGIN IMMEDIATE")
        top = cur.execute("SELECT coalesce(max(id), 0) FROM posts").fetchone()[0]
        cur.executemany(_POSTS, rows)
        expected = cur.rowcount
        found = cur.execute(
            "SELECT id, platform, key FROM posts WHERE id > ? ORDER BY id", (top,)
        ).fetchall()
        if len(found) != expected:
            raise StoreError(
                f"posts: {expected} rows inserted but {len(found)} found above id {top}; "
                "is another process writing without a transaction?"
            )
        if len(found) == len(rows) and all(  # all new (an import's usual case): in row order
                f[2] == r[1] and f[1] == r[0] for f, r in zip(found, rows, strict=True)):
            inserted = list(range(len(rows)))
        else:
            index = {(row[0], row[1]): i for i, row in enumerate(rows)}
            inserted = [index[(platform, key)] for _, platform, key in found]
        tag_rows: list[tuple[int, str, str, int]] = []
        for (pid, _, _), i in zip(found, inserted, strict=True):
            created = rows[i][2]
            tag_rows.extend([(pid, tag, created, seq) for seq, tag in enumerate(tags[i])])
        if tag_rows:
            cur.executemany(_TAGS, tag_rows)
            cur.execute(_BUCKETS, (top,))
            _add_pairs(cur, rows, tags, inserted, top)
    finally:
        cur.close()
    return Stored(len(found), len(tag_rows))


write_sqlite = Executor(prepare_sqlite, execute_sqlite)
