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
from posts stored before it existed.

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
from time import gmtime
from typing import Any, TypedDict

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from monitor.errors import StoreError
from monitor.models import ScoredPost
from monitor.store.schema import BUCKET_SECONDS, tag_pair_buckets

__all__ = [
    "MAX_PAIR_TAGS",
    "PairRow",
    "add_pair_buckets",
    "add_sqlite_pairs",
    "pair_increments",
    "pg_pairs_insert",
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


_COLUMNS = "tag_a, tag_b, bucket_start, posts, scored, compound_sum"
_UPDATE = (
    "ON CONFLICT (tag_a, tag_b, bucket_start) DO UPDATE SET "
    "posts = tag_pair_buckets.posts + excluded.posts, "
    "scored = tag_pair_buckets.scored + excluded.scored, "
    "compound_sum = tag_pair_buckets.compound_sum + excluded.compound_sum"
)
# sqlite3 executemany with prepared text: far less per-row work than SQLAlchemy binds
_SQLITE_UPSERT = f"INSERT INTO tag_pair_buckets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) " + _UPDATE
# psycopg 3: one statement over binary arrays, no per-row round trips
_PG_UPSERT = (
    f"INSERT INTO tag_pair_buckets ({_COLUMNS}) SELECT * FROM unnest("
    "%b::text[], %b::text[], %b::timestamptz[], %b::int4[], %b::int4[], %b::float8[]) "
    + _UPDATE
)


def _aggregate(inserted: Iterable[ScoredPost]) -> list[tuple[tuple[str, str, int], list[Any]]]:
    """((tag_a, tag_b, bucket epoch), [posts, scored, compound_sum]) sorted by key."""
    # hot path of every batch write: one tuple key and one list per new pair, no more
    acc: dict[tuple[str, str, int], list[Any]] = {}
    get = acc.get
    for post in inserted:
        tags = post.tags
        if len(tags) < 2:
            continue
        ts = post.created_at
        epoch = int((ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp())
        start = epoch - epoch % BUCKET_SECONDS
        if len(tags) == 2:
            a, b = tags
            keys: Iterable[tuple[str, str, int]] = ((a, b, start) if a < b else (b, a, start),)
        else:
            keys = [(a, b, start)
                    for a, b in combinations(sorted(set(tags[:MAX_PAIR_TAGS])), 2)]
        s = post.sentiment
        if s is None:
            for key in keys:
                row = get(key)
                if row is None:
                    acc[key] = [1, 0, 0.0]
                else:
                    row[0] += 1
        else:
            compound = float(s.compound)
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
    for (a, b, start), (n, scored, compound_sum) in _aggregate(inserted):
        when = starts.get(start)
        if when is None:
            when = starts[start] = _EPOCH + timedelta(seconds=start)
        out.append({"tag_a": a, "tag_b": b, "bucket_start": when, "posts": n,
                    "scored": scored, "compound_sum": compound_sum})
    return out


# SQLite, posts above an id just inserted in this transaction: the pairs read by
# SQLite from post_tags (~5 µs/post cheaper than from Python), one upsert per
# (post, pair) without GROUP BY (SQLite applies ON CONFLICT row by row; sorting
# the rows through a temporary B-tree cost more than the upserts). No cap here:
# used only when none of those posts has more than MAX_PAIR_TAGS tags. The bucket
# text is the stored created_at with its minutes floored, as tag_buckets' writer does.
_SQLITE_PAIRS_ABOVE_ID = (
    f"INSERT INTO tag_pair_buckets ({_COLUMNS}) "
    "SELECT a.tag, b.tag, substr(a.created_at, 1, 14) || printf('%02d:00.000000', "
    f"CAST(substr(a.created_at, 15, 2) AS INTEGER) / {BUCKET_SECONDS // 60} "
    f"* {BUCKET_SECONDS // 60}), 1, p.compound IS NOT NULL, coalesce(p.compound, 0.0) "
    # CROSS JOIN fixes the join order: the new posts by id range, then their tags
    "FROM posts AS p CROSS JOIN post_tags AS a ON a.post_id = p.id "
    "JOIN post_tags AS b ON b.post_id = p.id AND a.tag < b.tag "
    "WHERE p.id > ? " + _UPDATE
)
if BUCKET_SECONDS % 60 or 3600 % BUCKET_SECONDS:  # the SQL above floors minutes in the hour
    raise RuntimeError(f"BUCKET_SECONDS={BUCKET_SECONDS} must be whole minutes dividing an hour")


def add_sqlite_pairs(cursor: Any, inserted: Sequence[ScoredPost], above_id: int) -> None:
    """``add_pair_buckets(pair_increments(inserted))`` for a sqlite3 *cursor* inside the
    batch's transaction, where *inserted* are exactly the posts with an id above
    *above_id* (the batch writer's fast path)."""
    if all(len(post.tags) <= MAX_PAIR_TAGS for post in inserted):
        cursor.execute(_SQLITE_PAIRS_ABOVE_ID, (above_id,))
        return
    texts: dict[int, str] = {}
    values = []
    for (a, b, start), (n, scored, compound_sum) in _aggregate(inserted):
        text = texts.get(start)
        if text is None:
            # what SQLAlchemy stores for the aware UTC datetime (f-string: slower)
            text = texts[start] = (
                "%04d-%02d-%02d %02d:%02d:%02d.000000" % gmtime(start)[:6]  # noqa: UP031
            )
        values.append((a, b, text, n, scored, compound_sum))
    if values:
        cursor.executemany(_SQLITE_UPSERT, values)


def pg_pairs_insert(source: str) -> str:
    """PostgreSQL: an INSERT … SELECT adding the pair increments of the rows in *source*.

    *source* names a relation (a CTE of the batch statement) with one row per
    stored (post, tag): ``id`` (the post), ``tag``, ``created_at``, ``compound``
    and ``n``, which orders a post's tags as the post does. For writers that
    insert posts and tags in one server-side statement and never see which posts
    were new; the same sums as :func:`pair_increments`, rows in key order.

    Pairs come from each post's tag array and a constant list of index pairs,
    not from a self-join of *source* or generate_series: the planner guesses
    CTE and function row counts, and a guess in the millions makes PostgreSQL
    JIT-compile the statement, which cost 0.4 s per batch (10x the whole write).
    """
    # (i, j, k): the index pairs of a k-tag array, so a hash join on k yields only
    # the valid pairs (a filter j <= k over all 45 pairs discarded 9 rows in 10)
    index_pairs = ", ".join(f"({i}, {j}, {k})" for k in range(2, MAX_PAIR_TAGS + 1)
                            for i in range(1, k) for j in range(i + 1, k + 1))
    return (
        f"INSERT INTO tag_pair_buckets ({_COLUMNS}) "
        # COLLATE "C": code point order, as Python's sorted() and SQLite compare
        # (a locale collation could store a pair the other way round)
        "SELECT least(p.tags[ij.i], p.tags[ij.j] COLLATE \"C\"), "
        "greatest(p.tags[ij.i], p.tags[ij.j] COLLATE \"C\"), "
        f"date_bin('{BUCKET_SECONDS} seconds', p.created_at, "
        "TIMESTAMPTZ '1970-01-01 00:00:00+00'), count(*), count(p.compound), "
        "coalesce(sum(p.compound), 0) "
        f"FROM (SELECT (array_agg(tag ORDER BY n))[1:{MAX_PAIR_TAGS}] AS tags, created_at, "
        f"compound FROM {source} GROUP BY id, created_at, compound HAVING count(*) > 1) AS p "
        f"JOIN (VALUES {index_pairs}) AS ij(i, j, k) ON ij.k = cardinality(p.tags) "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 " + _UPDATE
    )


def _driver_connection(conn: Connection) -> Any:
    raw = conn.connection.driver_connection
    if raw is None:
        raise StoreError("database connection was closed during a batch write")
    return raw


def _sqlite_text(ts: datetime) -> str:
    # exactly what SQLAlchemy's SQLite DATETIME stores for an aware UTC value
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _add_sqlite(conn: Connection, rows: Sequence[PairRow]) -> None:
    texts: dict[datetime, str] = {}
    values = []
    for r in rows:
        when = r["bucket_start"]
        text = texts.get(when)
        if text is None:
            text = texts[when] = _sqlite_text(when)
        values.append((r["tag_a"], r["tag_b"], text, r["posts"], r["scored"], r["compound_sum"]))
    cur = _driver_connection(conn).cursor()
    try:
        cur.executemany(_SQLITE_UPSERT, values)
    finally:
        cur.close()


def _add_postgres(conn: Connection, rows: Sequence[PairRow]) -> None:
    columns = (
        [r["tag_a"] for r in rows],
        [r["tag_b"] for r in rows],
        [r["bucket_start"] for r in rows],
        [r["posts"] for r in rows],
        [r["scored"] for r in rows],
        [r["compound_sum"] for r in rows],
    )
    with _driver_connection(conn).cursor() as cur:
        cur.execute(_PG_UPSERT, columns)


def _add_portable(conn: Connection, rows: Sequence[PairRow]) -> None:
    """SQLAlchemy Core: slower, for drivers without a fast path."""
    ins = (postgresql.insert(tag_pair_buckets) if conn.dialect.name == "postgresql"
           else sqlite.insert(tag_pair_buckets))
    c, ex = tag_pair_buckets.c, ins.excluded
    upsert = ins.on_conflict_do_update(
        index_elements=[c.tag_a, c.tag_b, c.bucket_start],
        set_={"posts": c.posts + ex.posts, "scored": c.scored + ex.scored,
              "compound_sum": c.compound_sum + ex.compound_sum},
    )
    conn.execute(upsert, [dict(r) for r in rows])


_WRITERS = {("sqlite", "pysqlite"): _add_sqlite, ("postgresql", "psycopg"): _add_postgres}


def add_pair_buckets(conn: Connection, rows: Sequence[PairRow]) -> None:
    """Add *rows* to ``tag_pair_buckets`` inside *conn*'s transaction (upsert: sums grow).

    Rows are written in the order given; pass them sorted by key (as
    :func:`pair_increments` returns them) so that concurrent writers take row
    locks in the same order and cannot deadlock.
    """
    if rows:
        dialect = conn.dialect
        _WRITERS.get((dialect.name, dialect.driver), _add_portable)(conn, rows)
