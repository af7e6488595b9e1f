"""PostgreSQL: ``posts`` and ``post_tags`` partitioned by month (issue 14; migration 0010).

SQLite is unchanged: everything here is a no-op there.

Layout on PostgreSQL (``postgres_metadata`` describes it for the schema check):

- ``posts`` and ``post_tags`` are ``PARTITION BY RANGE (created_at)``, one
  partition per UTC calendar month (``posts_p2026_12`` holds
  ``[2026-12-01, 2027-01-01)``) and a ``DEFAULT`` partition (``posts_default``)
  that catches a row whose month has no partition yet, so an insert never fails.
  ``post_tags.created_at`` is always its post's, so a post and its tags share a month.
- A partitioned table's unique keys must hold the partition key, and the same post
  can arrive with a different ``created_at`` (milliseconds from one API, seconds
  from an RSS feed, an edit). So the dedupe gate is ``post_keys`` (platform, key
  → id, created_at), unpartitioned: the batch executor inserts there first
  (``ON CONFLICT DO NOTHING RETURNING id``) and stores in ``posts`` only the rows
  it got an id for. ``posts`` keeps a plain (non-unique) index on (platform, key)
  for the readers that look posts up by key (deletions, edits, exports).
  Triggers keep the gate equal to ``posts``: deleting a post deletes its gate row
  (a deleted post is kept out by its ``deletions`` tombstone, and a post past its
  retention age must not leave its key behind), changing ``posts.key`` (the
  pseudonymous-key conversion) renames it. ``created_at`` is never updated in place.
- ``posts``' key is (id, created_at); ``post_tags``' is (post_id, tag,
  created_at). ``post_tags`` has no foreign key to ``posts`` on PostgreSQL: every
  delete goes through :func:`monitor.store.erase.remove_posts`, which deletes tags
  explicitly, or drops a month of both tables at once, and a foreign key between
  partitioned tables would make every month drop a detach-and-validate scan.

Partitions are made on demand: :func:`ensure_partitions` runs before each batch's
transaction (``write_batch``, ``apply_edits``) for the batch's months plus the
current and next month, so in a running service next month's partition exists
weeks before it is needed. It is cached per process; a month missing from the
cache is looked up in the catalog and created in its own short transaction
(serialised by an advisory lock, attached with ``ATTACH PARTITION``, which does
not block reads and writes of ``posts``; rows of that month that went to the
default partition meanwhile are moved into it). When the needed locks are not
free within a second the month is tried again a minute later and its rows go to
the default partition in between: writes never wait on it.

Retention (:func:`drop_expired_partitions`) drops a month of both tables, and its
gate rows, in one transaction once every row of it is past the age. The raw reads
that join ``post_tags`` to ``posts`` or to itself (co-tags, the relate split, recent
posts, exports) tie the joined rows to the same month (:func:`same_months`), so
they read only the partitions of the range asked for.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.exc import DBAPIError

from monitor.store.schema import UTCDateTime, metadata

__all__ = ["PARTITIONED", "drop_expired_partitions", "ensure_partitions", "forget_months",
           "is_partition", "month_of", "partition_bounds", "partition_months", "post_keys",
           "postgres_metadata", "same_months"]

log = logging.getLogger(__name__)

PARTITIONED = ("posts", "post_tags")
_PARTITION = re.compile(r"^(posts|post_tags)_(?:p(\d{4})_(\d{2})|default)$")
# one creator of partitions at a time, cluster-wide (an arbitrary constant)
_LOCK_KEY = 0x70617274  # "part"
_LOCK_TIMEOUT = "1s"
_RETRY_SECONDS = 60.0

# the gate; PostgreSQL only (created by 0010), so outside schema.metadata
partition_metadata = MetaData(naming_convention=metadata.naming_convention)
post_keys = Table(
    "post_keys",
    partition_metadata,
    Column("platform", String(32), nullable=False),
    Column("key", String(512), nullable=False),
    Column("id", BigInteger, nullable=False),  # DEFAULT nextval('posts_id_seq')
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("platform", "key"),
)


def postgres_metadata() -> MetaData:
    """The tables as a PostgreSQL database holds them after 0010: ``schema.metadata``
    with ``posts`` and ``post_tags`` keyed for partitioning, and ``post_keys``."""
    out = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        if table.name not in PARTITIONED:
            table.to_metadata(out)
    post_keys.to_metadata(out)
    for name, key, indexes in (
        ("posts", ("id", "created_at"),
         [("ix_posts_created_at", ("created_at",), None),
          ("ix_posts_platform_key", ("platform", "key"), None),
          ("ix_posts_text_created_at", ("created_at",), "text IS NOT NULL")]),
        ("post_tags", ("post_id", "tag", "created_at"),
         [("ix_post_tags_tag_created_at", ("tag", "created_at"), None)]),
    ):
        source = metadata.tables[name]
        columns = [Column(c.name, c.type, nullable=c.nullable,
                          server_default=c.server_default.arg  # type: ignore[attr-defined]
                          if c.server_default is not None else None)
                   for c in source.columns]
        table = Table(name, out, *columns, PrimaryKeyConstraint(*key),
                      postgresql_partition_by="RANGE (created_at)")
        for ix_name, cols, where in indexes:
            Index(ix_name, *(table.c[c] for c in cols),
                  postgresql_where=text(where) if where else None)
        assert not any(isinstance(c, UniqueConstraint) for c in table.constraints)
    return out


def is_partition(name: str | None) -> bool:
    """True for a partition of posts or post_tags (``posts_p2026_12``, ``posts_default``)."""
    return bool(name) and _PARTITION.match(name or "") is not None


def month_of(when: datetime) -> date:
    """The first day of *when*'s UTC month."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return date(when.year, when.month, 1)


def _next(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def partition_bounds(month: date) -> tuple[datetime, datetime]:
    """``[from, to)`` of *month*'s partition, as aware UTC datetimes."""
    nxt = _next(month)
    return (datetime(month.year, month.month, 1, tzinfo=UTC),
            datetime(nxt.year, nxt.month, 1, tzinfo=UTC))


def _name(table: str, month: date) -> str:
    return f"{table}_p{month.year:04d}_{month.month:02d}"


def partition_months(conn: Connection) -> set[date]:
    """The months that have a ``posts`` partition."""
    names = conn.execute(text(
        "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'posts'::regclass")).scalars()
    months = set()
    for name in names:
        found = _PARTITION.match(name)
        if found and found.group(2):
            months.add(date(int(found.group(2)), int(found.group(3)), 1))
    return months


def same_months(db: Engine | Connection, partner: Any, driver: Any, since: datetime,
                until: datetime) -> list[Any]:
    """Join conditions tying *partner* (``posts`` or a ``post_tags`` alias) to the rows
    of the ``post_tags`` alias *driver* read in ``[since, until)``: on PostgreSQL the
    same ``created_at`` (a tag row's is its post's) and the same range, so that only
    those months' partitions of *partner* are read; none on SQLite (nothing to prune)."""
    if db.dialect.name != "postgresql":
        return []
    c = partner.c.created_at
    return [c == driver.c.created_at, c >= since, c < until]


# --------------------------------------------------------------------- on demand

_guard = threading.Lock()
_known: dict[str, set[date]] = {}  # database (URL) → months known to have partitions
_retry_at: dict[tuple[str, date], float] = {}  # a month whose creation timed out


def _cache_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def forget_months(engine: Engine, months: Iterable[date] | None = None) -> None:
    """Drop *months* (all when None) from this process's cache of existing partitions."""
    with _guard:
        known = _known.get(_cache_key(engine))
        if known is not None:
            if months is None:
                known.clear()
            else:
                known.difference_update(months)


def ensure_partitions(engine: Engine, times: Iterable[datetime], now: datetime) -> None:
    """Make the month partitions of *times*, and of *now*'s month and the next, exist.

    Call it outside any transaction of *engine*: creating a partition takes table
    locks that a writer's own open transaction could hold. A no-op on SQLite.
    """
    if engine.dialect.name != "postgresql":
        return
    current = month_of(now)
    wanted = {month_of(t) for t in times} | {current, _next(current)}
    key = _cache_key(engine)
    with _guard:
        known = _known.setdefault(key, set())
        missing = wanted - known
    if not missing:
        return
    with engine.connect() as conn:
        existing = partition_months(conn)
        conn.rollback()
    with _guard:
        known.update(existing & wanted)
    clock = time.monotonic()
    for month in sorted(missing - existing):
        with _guard:
            if _retry_at.get((key, month), 0.0) > clock:
                continue
        if _create_month(engine, month):
            with _guard:
                known.add(month)
                _retry_at.pop((key, month), None)
        else:
            with _guard:
                _retry_at[(key, month)] = clock + _RETRY_SECONDS


def _create_month(engine: Engine, month: date) -> bool:
    """Create *month*'s partitions of posts and post_tags (one transaction); False
    when the locks were not free in time (its rows stay in the default partition)."""
    lo, hi = (b.isoformat() for b in partition_bounds(month))
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            for table in PARTITIONED:
                part = _name(table, month)
                if conn.execute(text("SELECT to_regclass(:n)"), {"n": part}).scalar():
                    continue  # another process made it
                bounds = f"created_at >= '{lo}' AND created_at < '{hi}'"
                conn.execute(text(f'CREATE TABLE "{part}" (LIKE "{table}" INCLUDING DEFAULTS)'))
                # the default partition is scanned by ATTACH and must not get rows
                # of this month in between: lock it, move its rows of the month over
                conn.execute(text(f'LOCK TABLE "{table}_default" IN ACCESS EXCLUSIVE MODE'))
                # a move, not a deletion: the post_keys triggers stay out of it
                conn.execute(text("SET LOCAL monitor.moving_rows = 'on'"))
                conn.execute(text(
                    f'WITH moved AS (DELETE FROM "{table}_default" WHERE {bounds} RETURNING *) '
                    f'INSERT INTO "{part}" SELECT * FROM moved'))
                # a CHECK matching the bounds spares ATTACH its scan of the new table
                conn.execute(text(f'ALTER TABLE "{part}" ADD CONSTRAINT "{part}_bounds" '
                                  f"CHECK ({bounds})"))
                conn.execute(text(f'ALTER TABLE "{table}" ATTACH PARTITION "{part}" '
                                  f"FOR VALUES FROM ('{lo}') TO ('{hi}')"))
                conn.execute(text(f'ALTER TABLE "{part}" DROP CONSTRAINT "{part}_bounds"'))
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        log.info("partition %s not created yet: tables busy, retried in %.0f s",
                 _name("posts", month), _RETRY_SECONDS)
        return False
    log.info("created partitions %s and %s", _name("posts", month), _name("post_tags", month))
    return True


# --------------------------------------------------------------------- retention

def drop_expired_partitions(engine: Engine, cutoff: datetime) -> Iterator[int]:
    """Drop, oldest first, each month of posts and post_tags whose every row was
    created before *cutoff*, with its ``post_keys`` rows; yields the posts dropped
    per month. Each month is one transaction. A no-op on SQLite.

    When the tables are busy (their locks not free within a second) the month is
    left to the row-by-row deletion that follows.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        months = sorted(m for m in partition_months(conn) if partition_bounds(m)[1] <= cutoff)
        conn.rollback()
    for month in months:
        posts_part, tags_part = _name("posts", month), _name("post_tags", month)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'"))
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
                if not conn.execute(text("SELECT to_regclass(:n)"), {"n": posts_part}).scalar():
                    continue  # another process dropped it
                # the parent first: the lock order of every other statement on posts
                conn.execute(text('LOCK TABLE posts, post_tags IN ACCESS EXCLUSIVE MODE'))
                count = int(conn.execute(text(f'SELECT count(*) FROM "{posts_part}"')).scalar_one())
                conn.execute(text(
                    f'DELETE FROM post_keys AS k USING "{posts_part}" AS p '
                    "WHERE k.platform = p.platform AND k.key = p.key AND k.id = p.id"))
                conn.execute(text(f'DROP TABLE IF EXISTS "{tags_part}"'))
                conn.execute(text(f'DROP TABLE "{posts_part}"'))
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":
                raise
            log.info("partition %s not dropped: tables busy, its rows are deleted one by one",
                     posts_part)
            continue
        forget_months(engine, [month])
        log.info("dropped partitions %s and %s (%d posts)", posts_part, tags_part, count)
        yield count
