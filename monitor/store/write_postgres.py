"""The PostgreSQL batch executor (psycopg 3): ONE statement per batch.

Posts, their tags and the bucket and pair increments go in as one statement
over array parameters (unnest): no per-row round trips, no 500-row VALUES list
to parse, and the server sums the increments of exactly the rows it inserted.
Parameters go in binary (%b): dumping and parsing text arrays of timestamps
costs more than the inserts themselves. Rows go in sorted, posts by (platform,
key) and buckets and pairs by their keys, so that concurrent writers take row
locks in the same order and cannot deadlock. ``posts`` is partitioned by month
(:mod:`monitor.store.partitions`): a post goes in through the ``post_keys`` gate,
which dedupes by (platform, key) and hands out its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.store.buckets import BUCKET_COLUMNS, BUCKET_UPDATE, NEGATIVE_AT, POSITIVE_AT
from monitor.store.pairs import MAX_PAIR_TAGS, PAIR_COLUMNS, PAIR_UPDATE
from monitor.store.plan import POST_COLUMNS, BatchPlan, Executor, Stored
from monitor.store.schema import BUCKET_SECONDS

__all__ = ["execute_postgres", "prepare_postgres", "write_postgres"]

_SEP, _NULL = "\x1f", "\x1e"  # ASCII unit and record separators
_BUCKET_OF = (
    f"date_bin('{BUCKET_SECONDS} seconds', {{}}, TIMESTAMPTZ '1970-01-01 00:00:00+00')"
)


def _pairs_insert(source: str) -> str:
    """An INSERT … SELECT adding the pair increments of the rows in *source*.

    *source* names a CTE with one row per stored (post, tag): ``id`` (the post),
    ``tag``, ``created_at``, ``compound`` and ``n``, which orders a post's tags
    as the post does; the same sums as :func:`monitor.store.pairs.pair_increments`,
    rows in key order.

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
        f"INSERT INTO tag_pair_buckets ({PAIR_COLUMNS}) "
        # COLLATE "C": code point order, as Python's sorted() and SQLite compare
        # (a locale collation could store a pair the other way round)
        "SELECT least(p.tags[ij.i], p.tags[ij.j] COLLATE \"C\"), "
        "greatest(p.tags[ij.i], p.tags[ij.j] COLLATE \"C\"), "
        f"{_BUCKET_OF.format('p.created_at')}, count(*), count(p.compound), "
        "coalesce(sum(p.compound), 0) "
        f"FROM (SELECT (array_agg(tag ORDER BY n))[1:{MAX_PAIR_TAGS}] AS tags, created_at, "
        f"compound FROM {source} GROUP BY id, created_at, compound HAVING count(*) > 1) AS p "
        f"JOIN (VALUES {index_pairs}) AS ij(i, j, k) ON ij.k = cardinality(p.tags) "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 " + PAIR_UPDATE
    )


def _batch_sql(packed: bool) -> str:
    # text columns: one string split by the server (packed), or a binary text[]
    t = "string_to_array(%b::text, chr(31), chr(30))" if packed else "%b::text[]"
    return (
        f"WITH s AS (SELECT * FROM unnest("
        f"  {t}, {t}, %b::timestamptz[], %b::timestamptz[], {t}, {t}, {t}, {t},"
        "  %b::bool[], %b::bool[], %b::float8[], %b::float8[], %b::float8[], %b::float8[],"
        "  %b::bool[])"
        f" WITH ORDINALITY AS s({POST_COLUMNS}, n)"
        # posts is partitioned by month (monitor.store.partitions): the dedupe gate is
        # post_keys (platform, key), which hands out the ids of the posts it lets in
        "), keys AS ("
        " INSERT INTO post_keys (platform, key, created_at)"
        " SELECT platform, key, created_at FROM s"
        # a deleted post stays out, even when it shows up after its deletion
        " WHERE NOT EXISTS (SELECT 1 FROM deletions AS d"
        "  WHERE d.platform = s.platform AND d.key = s.key)"
        " ORDER BY n"
        " ON CONFLICT (platform, key) DO NOTHING"
        " RETURNING id, platform, key"
        "), ins AS ("
        f" INSERT INTO posts (id, {POST_COLUMNS})"
        f" SELECT k.id, {', '.join('s.' + c.strip() for c in POST_COLUMNS.split(','))}"
        " FROM s JOIN keys AS k ON k.platform = s.platform AND k.key = s.key ORDER BY s.n"
        " RETURNING id, platform, key, created_at, compound"
        "), tagged AS ("
        " SELECT ins.id, t.tag, ins.created_at, ins.compound, t.n"
        f" FROM unnest({t}, {t}, {t}) WITH ORDINALITY AS t(platform, key, tag, n)"
        " JOIN ins ON ins.platform = t.platform AND ins.key = t.key"
        "), pairs_in AS ("
        f" {_pairs_insert('tagged')}"
        "), tags_in AS ("
        " INSERT INTO post_tags (post_id, tag, created_at, seq)"
        # n: the batch-wide ordinal, increasing along each post's own tag order
        " SELECT id, tag, created_at, n::int FROM tagged"
        "), buckets_in AS ("
        f" INSERT INTO tag_buckets ({BUCKET_COLUMNS})"
        # COLLATE "C": a byte-order sort, cheaper than the database's collation
        f" SELECT tag COLLATE \"C\", {_BUCKET_OF.format('created_at')},"
        "  count(*), count(compound), coalesce(sum(compound), 0),"
        "  coalesce(sum(compound * compound), 0),"
        f"  count(*) FILTER (WHERE compound >= {POSITIVE_AT!r}),"
        f"  count(*) FILTER (WHERE compound < {POSITIVE_AT!r} AND compound > {NEGATIVE_AT!r}),"
        f"  count(*) FILTER (WHERE compound <= {NEGATIVE_AT!r})"
        " FROM tagged GROUP BY 1, 2 ORDER BY 1, 2 "
        + BUCKET_UPDATE
        + ") SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM tagged)"
    )


_BATCH = _batch_sql(packed=False)
_BATCH_PACKED = _batch_sql(packed=True)


def _pack(values: Sequence[str | None]) -> str | None:
    """*values* as one string for ``string_to_array(s, chr(31), chr(30))`` (psycopg
    dumps list elements one by one in Python: a third of the statement's client
    cost), or None when a value holds a separator and would not come back intact."""
    text = _SEP.join([_NULL if v is None else v for v in values])
    if (
        text.count(_SEP) != max(len(values) - 1, 0)
        or text.count(_NULL) != values.count(None)
        or (len(values) == 1 and text == "")  # [""] would come back as []
    ):
        return None
    return text


def prepare_postgres(plan: BatchPlan) -> tuple[bool, list[Any]]:
    """The batch statement's parameters for *plan* (and whether its text columns are packed)."""
    posts_ = plan.posts
    sentiments = [post.sentiment for post in posts_]
    tag_platforms: list[str] = []
    tag_keys: list[str] = []
    tags: list[str] = []
    for post in posts_:
        for tag in post.tags:
            tag_platforms.append(post.platform)
            tag_keys.append(post.key)
            tags.append(tag)
    texts: list[Sequence[str | None]] = [
        [post.platform for post in posts_],
        [post.key for post in posts_],
        [post.author for post in posts_],
        [post.url for post in posts_],
        [post.lang for post in posts_],
        [post.text for post in posts_],
        tag_platforms,
        tag_keys,
        tags,
    ]
    packed = [_pack(column) for column in texts]
    text_params: list[Any] = packed
    if None in packed:
        text_params = texts
    platforms, keys, authors, urls, langs, bodies, *tag_params = text_params
    params = [
        platforms,
        keys,
        list(plan.created),
        [plan.now] * len(posts_),
        authors,
        urls,
        langs,
        bodies,
        [post.is_repost for post in posts_],
        [post.sensitive for post in posts_],
        # float(): a binary array cannot mix int and float (Sentiment(0, 0, 1, 0))
        [float(s.compound) if s is not None else None for s in sentiments],
        [float(s.pos) if s is not None else None for s in sentiments],
        [float(s.neu) if s is not None else None for s in sentiments],
        [float(s.neg) if s is not None else None for s in sentiments],
        [post.text_truncated for post in posts_],
        *tag_params,
    ]
    return None not in packed, params


def execute_postgres(driver: Any, prepared: tuple[bool, list[Any]]) -> Stored:
    """Run :func:`prepare_postgres`'s statement on psycopg 3 connection *driver*."""
    packed, params = prepared
    with driver.cursor() as cur:
        cur.execute(_BATCH_PACKED if packed else _BATCH, params)
        inserted, tag_rows = cur.fetchone()
    return Stored(int(inserted), int(tag_rows))


# the Executor for psycopg 3: prepare anywhere (an import's workers), execute in the writer
write_postgres = Executor(prepare_postgres, execute_postgres)
