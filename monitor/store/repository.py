"""Writes. ``write_batch`` stores a batch in ONE transaction: posts, tags, bucket
and tag-pair increments, deletions, the cursor and the stream's health. Only rows
that were really inserted are counted, so re-running a batch changes nothing."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from monitor.errors import StoreError
from monitor.models import Cursor, ScoredPost, StreamKey
from monitor.store.pairs import (
    add_pair_buckets,
    add_sqlite_pairs,
    pair_increments,
    pg_pairs_insert,
)
from monitor.store.schema import (
    BUCKET_SECONDS,
    cursors,
    deletions,
    post_tags,
    posts,
    stream_health,
    tag_buckets,
)

__all__ = [
    "WriteResult",
    "bucket_start",
    "insert_for",
    "load_cursor",
    "record_failure",
    "write_batch",
]

# compound thresholds from the VADER paper: >= 0.05 positive, <= -0.05 negative
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write really changed."""

    inserted: int
    duplicates: int
    tag_rows: int


def bucket_start(ts: datetime) -> datetime:
    """The start of the 5-minute bucket holding *ts* (UTC)."""
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % BUCKET_SECONDS, tz=UTC)


def insert_for(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """A dialect INSERT that understands ON CONFLICT (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# one tag_buckets increment: tag, bucket start (epoch seconds), posts, scored,
# compound sum, compound squared sum, positive, neutral, negative
BucketRow = tuple[str, int, int, int, float, float, int, int, int]
# a post that was really inserted: its id, the post, its created_at as aware UTC
Inserted = tuple[int, ScoredPost, datetime]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_SENTIMENT = (None, None, None, None)
_POST_COLUMNS = (
    "platform, key, created_at, collected_at, author, url, lang, text, is_repost, sensitive, "
    "compound, pos, neu, neg"
)
_BUCKET_COLUMNS = (
    "tag, bucket_start, posts, scored, compound_sum, compound_sq_sum, positive, neutral, negative"
)
_BUCKET_UPDATE = (
    "ON CONFLICT (tag, bucket_start) DO UPDATE SET "
    "posts = tag_buckets.posts + excluded.posts, "
    "scored = tag_buckets.scored + excluded.scored, "
    "compound_sum = tag_buckets.compound_sum + excluded.compound_sum, "
    "compound_sq_sum = tag_buckets.compound_sq_sum + excluded.compound_sq_sum, "
    "positive = tag_buckets.positive + excluded.positive, "
    "neutral = tag_buckets.neutral + excluded.neutral, "
    "negative = tag_buckets.negative + excluded.negative"
)


def _aware(ts: datetime) -> datetime:
    # the same normalisation as schema.UTCDateTime: naive is taken as UTC
    tz = ts.tzinfo
    if tz is UTC:
        return ts
    return ts.replace(tzinfo=UTC) if tz is None else ts.astimezone(UTC)


def _sqlite_text(ts: datetime) -> str:
    """*ts* (aware UTC) exactly as SQLAlchemy's SQLite DATETIME stores it (its storage
    format: naive UTC, always six fractional digits), so raw writes compare equal to
    SQLAlchemy binds in queries."""
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031 (f-string: 2x slower)
        ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond
    )


def _bucket_increments(inserted: Iterable[Inserted]) -> list[BucketRow]:
    """Per (tag, bucket) sums of the inserted posts, sorted by (tag, bucket) so that
    concurrent writers lock bucket rows in the same order (no deadlocks)."""
    acc: dict[tuple[str, int], list[Any]] = {}
    get = acc.get
    for _, post, created in inserted:
        epoch = int(created.timestamp())
        start = epoch - epoch % BUCKET_SECONDS
        s = post.sentiment
        if s is None:
            for tag in post.tags:
                row = get((tag, start))
                if row is None:
                    acc[(tag, start)] = row = [0, 0, 0.0, 0.0, 0, 0, 0]
                row[0] += 1
            continue
        c = s.compound
        sq = c * c
        # 4 positive, 5 neutral, 6 negative (thresholds of the VADER paper)
        slot = 4 if c >= POSITIVE_AT else 6 if c <= NEGATIVE_AT else 5
        for tag in post.tags:
            row = get((tag, start))
            if row is None:
                acc[(tag, start)] = row = [0, 0, 0.0, 0.0, 0, 0, 0]
            row[0] += 1
            row[1] += 1
            row[2] += c
            row[3] += sq
            row[slot] += 1
    return [
        (tag, start, v[0], v[1], float(v[2]), float(v[3]), v[4], v[5], v[6])
        for (tag, start), v in sorted(acc.items())
    ]


def _bucket_time(start: int) -> datetime:
    return _EPOCH + timedelta(seconds=start)


def _driver_connection(conn: Connection) -> Any:
    """The DBAPI connection under *conn*, inside the same transaction."""
    raw = conn.connection.driver_connection
    if raw is None:
        raise StoreError("database connection was closed during a batch write")
    return raw


# ---------------------------------------------------------------- SQLite (sqlite3)
#
# Raw prepared statements and executemany: sqlite3's C loop binds rows far faster
# than SQLAlchemy's per-parameter processing, and SQLite has no executemany with
# RETURNING. Which posts went in is read back by id instead: with the write lock
# held from the start of the transaction, the rows with an id above the maximum
# before the insert are exactly this batch's.

_SQLITE_POSTS = (
    f"INSERT INTO posts ({_POST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (platform, key) DO NOTHING"
)
_SQLITE_TAGS = "INSERT INTO post_tags (post_id, tag, created_at) VALUES (?, ?, ?)"
if BUCKET_SECONDS % 60 or 3600 % BUCKET_SECONDS:  # the SQL below floors minutes in the hour
    raise RuntimeError(f"BUCKET_SECONDS={BUCKET_SECONDS} must be whole minutes dividing an hour")
_BUCKET_MINUTES = BUCKET_SECONDS // 60
# The batch's bucket increments, one upsert per stored (post, tag) row, straight
# from the rows just inserted. No GROUP BY: SQLite applies ON CONFLICT row by row
# (a bucket met twice in the batch is inserted, then incremented), and sorting
# ~1,000 rows through a temporary B-tree per batch cost more than the upserts
# (~3 µs/post). The bucket text comes from the stored 'YYYY-MM-DD HH:MM:SS.ffffff'
# by string work (hour prefix, minute floored): cheaper than strftime, the same text.
_SQLITE_BUCKETS = (
    f"INSERT INTO tag_buckets ({_BUCKET_COLUMNS}) "
    "SELECT t.tag, substr(t.created_at, 1, 14) || printf('%02d:00.000000', "
    f"CAST(substr(t.created_at, 15, 2) AS INTEGER) / {_BUCKET_MINUTES} * {_BUCKET_MINUTES}), "
    "1, p.compound IS NOT NULL, coalesce(p.compound, 0.0), "
    "coalesce(p.compound * p.compound, 0.0), "
    f"coalesce(p.compound >= {POSITIVE_AT!r}, 0), "
    f"coalesce(p.compound < {POSITIVE_AT!r} AND p.compound > {NEGATIVE_AT!r}, 0), "
    f"coalesce(p.compound <= {NEGATIVE_AT!r}, 0) "
    # CROSS JOIN fixes the join order: this batch's posts by id range, then their tags
    "FROM posts AS p CROSS JOIN post_tags AS t ON t.post_id = p.id WHERE p.id > ? "
    + _BUCKET_UPDATE
)


def _write_sqlite(
    conn: Connection, batch: Sequence[tuple[ScoredPost, datetime]], now: datetime
) -> tuple[int, int]:
    raw = _driver_connection(conn)
    cur = raw.cursor()
    try:
        if not raw.in_transaction:
            # take the write lock now, so no other writer can add posts before the read-back
            cur.execute("BEGIN IMMEDIATE")
        top = cur.execute("SELECT coalesce(max(id), 0) FROM posts").fetchone()[0]
        now_text = _sqlite_text(now)
        by_key: dict[tuple[str, str], tuple[ScoredPost, str]] = {}
        rows = []
        for post, created in batch:
            text = _sqlite_text(created)
            by_key[(post.platform, post.key)] = (post, text)
            s = post.sentiment
            rows.append(
                (post.platform, post.key, text, now_text, post.author, post.url, post.lang,
                 post.text, post.is_repost, post.sensitive)
                + ((s.compound, s.pos, s.neu, s.neg) if s is not None else _NO_SENTIMENT)
            )
        cur.executemany(_SQLITE_POSTS, rows)
        expected = cur.rowcount
        inserted = cur.execute(
            "SELECT id, platform, key FROM posts WHERE id > ? ORDER BY id", (top,)
        ).fetchall()
        if len(inserted) != expected:
            raise StoreError(
                f"posts: {expected} rows inserted but {len(inserted)} found above id {top}; "
                "is another process writing without a transaction?"
            )
        tag_rows: list[tuple[int, str, str]] = []
        for pid, platform, key in inserted:
            post, text = by_key[(platform, key)]
            tag_rows.extend([(pid, tag, text) for tag in post.tags])
        if tag_rows:
            cur.executemany(_SQLITE_TAGS, tag_rows)
            cur.execute(_SQLITE_BUCKETS, (top,))
            add_sqlite_pairs(
                cur, [by_key[(platform, key)][0] for _, platform, key in inserted], top)
    finally:
        cur.close()
    return len(inserted), len(tag_rows)


# ---------------------------------------------------------------- PostgreSQL (psycopg 3)
#
# ONE statement per batch: posts, their tags and the bucket increments, over
# array parameters (unnest). No per-row round trips, no 500-row VALUES list to
# parse, and the server aggregates the buckets of exactly the rows it inserted.
# Parameters go in binary (%b): dumping and parsing text arrays of timestamps
# costs more than the inserts themselves. Rows go in sorted, posts by (platform,
# key) and buckets by (tag, bucket_start), so that concurrent writers take row
# locks in the same order and cannot deadlock.

_SEP, _NULL = "\x1f", "\x1e"  # ASCII unit and record separators


def _pg_batch_sql(packed: bool) -> str:
    # text columns: one string split by the server (packed), or a binary text[]
    t = "string_to_array(%b::text, chr(31), chr(30))" if packed else "%b::text[]"
    return (
        "WITH ins AS ("
        f" INSERT INTO posts ({_POST_COLUMNS}) SELECT {_POST_COLUMNS} FROM unnest("
        f"  {t}, {t}, %b::timestamptz[], %b::timestamptz[], {t}, {t}, {t}, {t},"
        "  %b::bool[], %b::bool[], %b::float8[], %b::float8[], %b::float8[], %b::float8[])"
        f" WITH ORDINALITY AS s({_POST_COLUMNS}, n) ORDER BY n"
        " ON CONFLICT (platform, key) DO NOTHING"
        " RETURNING id, platform, key, created_at, compound"
        "), tagged AS ("
        " SELECT ins.id, t.tag, ins.created_at, ins.compound, t.n"
        f" FROM unnest({t}, {t}, {t}) WITH ORDINALITY AS t(platform, key, tag, n)"
        " JOIN ins ON ins.platform = t.platform AND ins.key = t.key"
        "), pairs_in AS ("
        f" {pg_pairs_insert('tagged')}"
        "), tags_in AS ("
        " INSERT INTO post_tags (post_id, tag, created_at)"
        " SELECT id, tag, created_at FROM tagged"
        "), buckets_in AS ("
        f" INSERT INTO tag_buckets ({_BUCKET_COLUMNS})"
        # COLLATE "C": a byte-order sort, cheaper than the database's collation
        f" SELECT tag COLLATE \"C\", date_bin('{BUCKET_SECONDS} seconds', created_at,"
        "  TIMESTAMPTZ '1970-01-01 00:00:00+00'),"
        "  count(*), count(compound), coalesce(sum(compound), 0),"
        "  coalesce(sum(compound * compound), 0),"
        f"  count(*) FILTER (WHERE compound >= {POSITIVE_AT!r}),"
        f"  count(*) FILTER (WHERE compound < {POSITIVE_AT!r} AND compound > {NEGATIVE_AT!r}),"
        f"  count(*) FILTER (WHERE compound <= {NEGATIVE_AT!r})"
        " FROM tagged GROUP BY 1, 2 ORDER BY 1, 2 "
        + _BUCKET_UPDATE
        + ") SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM tagged)"
    )


_PG_BATCH = _pg_batch_sql(packed=False)
_PG_BATCH_PACKED = _pg_batch_sql(packed=True)


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


def _write_postgres(
    conn: Connection, batch: Sequence[tuple[ScoredPost, datetime]], now: datetime
) -> tuple[int, int]:
    posts_ = [post for post, _ in batch]
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
    sql = _PG_BATCH_PACKED
    text_params: list[Any] = packed
    if None in packed:
        sql, text_params = _PG_BATCH, texts
    platforms, keys, authors, urls, langs, bodies, *tag_params = text_params
    params = [
        platforms,
        keys,
        [created for _, created in batch],
        [now] * len(batch),
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
        *tag_params,
    ]
    with _driver_connection(conn).cursor() as cur:
        cur.execute(sql, params)
        inserted, tag_rows = cur.fetchone()
    return int(inserted), int(tag_rows)


# ---------------------------------------------------------------- other drivers


def _write_portable(
    conn: Connection, batch: Sequence[tuple[ScoredPost, datetime]], now: datetime
) -> tuple[int, int]:
    """SQLAlchemy Core statements: slower, for drivers without a fast path."""
    by_key = {(post.platform, post.key): (post, created) for post, created in batch}
    rows: list[dict[str, Any]] = []
    for post, created in batch:
        s = post.sentiment
        rows.append({
            "platform": post.platform,
            "key": post.key,
            "created_at": created,
            "collected_at": now,
            "author": post.author,
            "url": post.url,
            "lang": post.lang,
            "text": post.text,
            "is_repost": post.is_repost,
            "sensitive": post.sensitive,
            "compound": s.compound if s else None,
            "pos": s.pos if s else None,
            "neu": s.neu if s else None,
            "neg": s.neg if s else None,
        })
    stmt = (
        insert_for(conn, posts)
        .on_conflict_do_nothing(index_elements=[posts.c.platform, posts.c.key])
        .returning(posts.c.id, posts.c.platform, posts.c.key)
    )
    inserted: list[Inserted] = sorted(
        (row.id, *by_key[(row.platform, row.key)]) for row in conn.execute(stmt, rows)
    )
    tag_rows = [
        {"post_id": pid, "tag": tag, "created_at": created}
        for pid, post, created in inserted
        for tag in post.tags
    ]
    if tag_rows:
        conn.execute(post_tags.insert(), tag_rows)
    buckets = _bucket_increments(inserted)
    if buckets:
        ins = insert_for(conn, tag_buckets)
        ex = ins.excluded
        c = tag_buckets.c
        upsert = ins.on_conflict_do_update(
            index_elements=[c.tag, c.bucket_start],
            set_={
                "posts": c.posts + ex.posts,
                "scored": c.scored + ex.scored,
                "compound_sum": c.compound_sum + ex.compound_sum,
                "compound_sq_sum": c.compound_sq_sum + ex.compound_sq_sum,
                "positive": c.positive + ex.positive,
                "neutral": c.neutral + ex.neutral,
                "negative": c.negative + ex.negative,
            },
        )
        names = ("posts", "scored", "compound_sum", "compound_sq_sum", "positive", "neutral",
                 "negative")
        conn.execute(
            upsert,
            [
                {"tag": b[0], "bucket_start": _bucket_time(b[1])}
                | dict(zip(names, b[2:], strict=True))
                for b in buckets
            ],
        )
    add_pair_buckets(conn, pair_increments(post for _, post, _ in inserted))
    return len(inserted), len(tag_rows)


_WRITERS = {("sqlite", "pysqlite"): _write_sqlite, ("postgresql", "psycopg"): _write_postgres}


# The cursor and health upserts run once per batch: built once per dialect and
# shape, with the values as parameters, so SQLAlchemy need not rebuild and re-key
# the statement every time.


@functools.cache
def _cursor_upsert(dialect: str) -> postgresql.Insert | sqlite.Insert:
    stmt = postgresql.insert(cursors) if dialect == "postgresql" else sqlite.insert(cursors)
    return stmt.on_conflict_do_update(
        index_elements=[cursors.c.source, cursors.c.stream],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )


def _save_cursor(conn: Connection, cursor: Cursor, now: datetime) -> None:
    conn.execute(
        _cursor_upsert(conn.dialect.name),
        {"source": cursor.source, "stream": cursor.stream, "value": cursor.value,
         "updated_at": now},
    )


@functools.cache
def _health_upsert(dialect: str, ok: bool, has_newest: bool) -> postgresql.Insert | sqlite.Insert:
    stmt = (
        postgresql.insert(stream_health) if dialect == "postgresql"
        else sqlite.insert(stream_health)
    )
    h, ex = stream_health.c, stmt.excluded
    update: dict[str, Any] = {
        "last_attempt_at": ex.last_attempt_at,
        "posts_collected": h.posts_collected + ex.posts_collected,
        "posts_rejected": h.posts_rejected + ex.posts_rejected,
    }
    if ok:
        update["last_success_at"] = ex.last_success_at
    else:
        update.update(
            last_error_at=ex.last_error_at,
            last_error=ex.last_error,
            fetch_errors=h.fetch_errors + ex.fetch_errors,
        )
    if has_newest:
        update["last_post_at"] = ex.last_post_at
        update["lag_seconds"] = ex.lag_seconds
    return stmt.on_conflict_do_update(index_elements=[h.source, h.stream], set_=update)


def _touch_health(
    conn: Connection,
    stream: StreamKey,
    now: datetime,
    *,
    collected: int = 0,
    rejected: int = 0,
    newest: datetime | None = None,
    error: str | None = None,
) -> None:
    ok = error is None
    values: dict[str, Any] = {
        "source": stream.source,
        "stream": stream.name,
        "last_attempt_at": now,
        "last_success_at": now if ok else None,
        "last_error_at": None if ok else now,
        "last_error": error,
        "last_post_at": newest,
        "lag_seconds": (now - newest).total_seconds() if newest else None,
        "posts_collected": collected,
        "posts_rejected": rejected,
        "fetch_errors": 0 if ok else 1,
    }
    conn.execute(_health_upsert(conn.dialect.name, ok, newest is not None), values)


def write_batch(
    engine: Engine,
    posts_in: Sequence[ScoredPost],
    *,
    cursor: Cursor | None = None,
    stream: StreamKey | None = None,
    deleted: Sequence[tuple[str, str]] = (),
    rejected: int = 0,
    now: datetime | None = None,
) -> WriteResult:
    """Store posts, their tags, bucket increments, deletions, cursor and health atomically.

    Duplicates (same platform and key, in this batch or already stored) are
    skipped and do not touch the buckets.
    """
    now = _aware(now or datetime.now(UTC))
    unique: dict[tuple[str, str], ScoredPost] = {}
    for post in posts_in:
        unique.setdefault((post.platform, post.key), post)
    # sorted by (platform, key): concurrent writers meet shared keys in the same order
    batch = [(unique[k], _aware(unique[k].created_at)) for k in sorted(unique)]
    with engine.begin() as conn:
        inserted = tag_rows = 0
        if batch:
            dialect = conn.dialect
            writer = _WRITERS.get((dialect.name, dialect.driver), _write_portable)
            inserted, tag_rows = writer(conn, batch, now)
        if deleted:
            stmt_d = insert_for(conn, deletions).on_conflict_do_nothing()
            conn.execute(
                stmt_d, [{"platform": pl, "key": k, "seen_at": now} for pl, k in sorted(deleted)]
            )
        if cursor is not None:
            _save_cursor(conn, cursor, now)
        if stream is not None:
            newest = max((created for _, created in batch), default=None)
            _touch_health(
                conn, stream, now, collected=inserted, rejected=rejected, newest=newest
            )
    return WriteResult(
        inserted=inserted, duplicates=len(posts_in) - inserted, tag_rows=tag_rows
    )


def record_failure(
    engine: Engine, stream: StreamKey, error: str, now: datetime | None = None
) -> None:
    """Note a failed fetch in the stream's health (one line, no post content)."""
    with engine.begin() as conn:
        _touch_health(conn, stream, now or datetime.now(UTC), error=error[:500])


def load_cursor(engine: Engine, source: str, stream: str) -> Cursor | None:
    """The saved cursor of a stream, or None on its first run."""
    with engine.connect() as conn:
        value = conn.execute(
            select(cursors.c.value).where(cursors.c.source == source, cursors.c.stream == stream)
        ).scalar_one_or_none()
    return None if value is None else Cursor(source=source, stream=stream, value=value)
