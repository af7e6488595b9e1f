"""PostgreSQL: posts and post_tags partitioned by month (issue 14). No-op on SQLite.

Why: retention (``privacy.retention.posts``) drops a whole month of rows at once
instead of deleting them one by one, and reads of raw posts by time touch only
the months asked for. The rollups (``tag_buckets``, ``tag_pair_buckets``) are
not touched: trend and relate reads never read raw posts.

The layout (``monitor.store.partitions`` describes and maintains it):

- ``posts`` and ``post_tags`` are ``PARTITION BY RANGE (created_at)``: one
  partition per UTC calendar month (``posts_p2026_12``: ``[2026-12-01,
  2027-01-01)``), made here for every month that holds rows and for the current
  and the next month, and at run time before a batch needs one; and a ``DEFAULT``
  partition (``posts_default``, ``post_tags_default``) so an insert never fails
  for want of a month.
- A partitioned table's unique keys must include the partition key, but a post
  is the same post by (platform, key) whatever its ``created_at`` (milliseconds
  from one API, seconds from an RSS feed, an edit). So the dedupe gate moves to
  ``post_keys`` (platform, key → id, created_at), unpartitioned: the batch
  executor inserts there first (``ON CONFLICT DO NOTHING RETURNING id``) and
  stores only the posts it got an id for, ids from the same ``posts_id_seq``.
  ``posts`` keys on (id, created_at) and keeps a plain index on (platform,
  key) for lookups; ``post_tags`` keys on (post_id, tag, created_at).
- ``post_tags`` loses its foreign key to ``posts`` (a foreign key between
  partitioned tables turns each month drop into a detach and a validation scan);
  every delete removes the tags explicitly (``erase.remove_posts``) or drops both
  tables' month together.
- Triggers keep ``post_keys`` equal to ``posts``: a deleted post takes its gate
  row with it (a platform deletion keeps the post out through its ``deletions``
  tombstone; a post past retention must not leave its key behind), and a changed
  ``posts.key`` (the pseudonymous-key conversion) renames its gate row. Setting
  ``monitor.moving_rows`` for a transaction skips them (rows moved between
  partitions).

The conversion copies every row with its id (one transaction: the tables are
locked while it runs, minutes for millions of posts) and leaves
``posts_id_seq`` where it was. The downgrade rebuilds the unpartitioned tables
with their old keys, unique constraint, foreign key and indexes, same rows and
ids (a tag row whose post is gone could not satisfy the foreign key and is
left out: the store never leaves one).

Revision ID: 0010_partition_posts
Revises: 0009_pseudonymous_keys
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010_partition_posts"
down_revision = "0009_pseudonymous_keys"
branch_labels = None
depends_on = None

POST_COLUMNS = ("id, platform, key, created_at, collected_at, author, url, lang, text, "
                "is_repost, sensitive, compound, pos, neu, neg, text_truncated")
POST_DDL = """
    id bigint NOT NULL DEFAULT nextval('posts_id_seq'::regclass),
    platform character varying(32) NOT NULL,
    key character varying(512) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    collected_at timestamp with time zone NOT NULL,
    author character varying(256),
    url text,
    lang character varying(16),
    text text,
    is_repost boolean NOT NULL,
    sensitive boolean NOT NULL,
    compound double precision,
    pos double precision,
    neu double precision,
    neg double precision,
    text_truncated boolean DEFAULT false NOT NULL"""
TAG_COLUMNS = "post_id, tag, created_at, seq"
TAG_DDL = """
    post_id bigint NOT NULL,
    tag character varying(200) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    seq integer"""

TRIGGER_FUNCTION = """
CREATE FUNCTION post_keys_follow() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF current_setting('monitor.moving_rows', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        DELETE FROM post_keys
         WHERE platform = OLD.platform AND key = OLD.key AND id = OLD.id;
    ELSE
        UPDATE post_keys SET platform = NEW.platform, key = NEW.key
         WHERE platform = OLD.platform AND key = OLD.key AND id = OLD.id;
    END IF;
    RETURN NULL;
END $$"""


def _month_after(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _bounds(month: date) -> str:
    nxt = _month_after(month)
    return (f"FROM ('{month.isoformat()} 00:00:00+00') "
            f"TO ('{nxt.isoformat()} 00:00:00+00')")


def _months(conn: sa.Connection) -> list[date]:
    """Every month holding a post or a tag row, plus the current and the next month."""
    rows = conn.execute(sa.text(
        "SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date FROM ("
        " SELECT created_at FROM posts UNION ALL SELECT created_at FROM post_tags) AS t"
    )).scalars()
    today = datetime.now(UTC).date().replace(day=1)
    return sorted({*rows, today, _month_after(today)})


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    months = _months(conn)
    # new tables under temporary names, filled, then the old ones dropped: no
    # constraint or index name is taken twice, and indexes are built once, after the load
    op.execute(f"CREATE TABLE posts_partitioned ({POST_DDL}) PARTITION BY RANGE (created_at)")
    op.execute(f"CREATE TABLE post_tags_partitioned ({TAG_DDL}) PARTITION BY RANGE (created_at)")
    for table in ("posts", "post_tags"):
        for month in months:
            op.execute(f"CREATE TABLE {table}_p{month:%Y_%m} PARTITION OF {table}_partitioned "
                       f"FOR VALUES {_bounds(month)}")
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table}_partitioned DEFAULT")
    op.execute("""CREATE TABLE post_keys (
        platform character varying(32) NOT NULL,
        key character varying(512) NOT NULL,
        id bigint NOT NULL DEFAULT nextval('posts_id_seq'::regclass),
        created_at timestamp with time zone NOT NULL)""")
    op.execute(f"INSERT INTO posts_partitioned ({POST_COLUMNS}) SELECT {POST_COLUMNS} FROM posts")
    op.execute("INSERT INTO post_keys (platform, key, id, created_at) "
               "SELECT platform, key, id, created_at FROM posts")
    op.execute(f"INSERT INTO post_tags_partitioned ({TAG_COLUMNS}) "
               f"SELECT {TAG_COLUMNS} FROM post_tags")
    op.execute("ALTER SEQUENCE posts_id_seq OWNED BY posts_partitioned.id")
    op.execute("DROP TABLE post_tags")
    op.execute("DROP TABLE posts")
    op.execute("ALTER TABLE posts_partitioned RENAME TO posts")
    op.execute("ALTER TABLE post_tags_partitioned RENAME TO post_tags")
    op.execute("ALTER TABLE post_keys ADD CONSTRAINT pk_post_keys PRIMARY KEY (platform, key)")
    op.execute("ALTER TABLE posts ADD CONSTRAINT pk_posts PRIMARY KEY (id, created_at)")
    op.execute("CREATE INDEX ix_posts_created_at ON posts (created_at)")
    op.execute("CREATE INDEX ix_posts_platform_key ON posts (platform, key)")
    op.execute("CREATE INDEX ix_posts_text_created_at ON posts (created_at) "
               "WHERE text IS NOT NULL")
    op.execute("ALTER TABLE post_tags ADD CONSTRAINT pk_post_tags "
               "PRIMARY KEY (post_id, tag, created_at)")
    op.execute("CREATE INDEX ix_post_tags_tag_created_at ON post_tags (tag, created_at)")
    op.execute(TRIGGER_FUNCTION)
    op.execute("CREATE TRIGGER posts_gate_delete AFTER DELETE ON posts "
               "FOR EACH ROW EXECUTE FUNCTION post_keys_follow()")
    op.execute("CREATE TRIGGER posts_gate_rekey AFTER UPDATE OF platform, key ON posts "
               "FOR EACH ROW WHEN (OLD.platform IS DISTINCT FROM NEW.platform "
               "OR OLD.key IS DISTINCT FROM NEW.key) EXECUTE FUNCTION post_keys_follow()")
    op.execute("ANALYZE posts")
    op.execute("ANALYZE post_tags")
    op.execute("ANALYZE post_keys")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE posts_plain (" + POST_DDL + ")")
    op.execute("CREATE TABLE post_tags_plain (" + TAG_DDL + ")")
    op.execute(f"INSERT INTO posts_plain ({POST_COLUMNS}) SELECT {POST_COLUMNS} FROM posts "
               "ORDER BY id")
    op.execute(f"INSERT INTO post_tags_plain ({TAG_COLUMNS}) SELECT {TAG_COLUMNS} FROM post_tags "
               "AS t WHERE EXISTS (SELECT 1 FROM posts AS p WHERE p.id = t.post_id)")
    op.execute("ALTER SEQUENCE posts_id_seq OWNED BY posts_plain.id")
    # the partitions go with their parents; the triggers with posts
    op.execute("DROP TABLE post_tags")
    op.execute("DROP TABLE posts")
    op.execute("DROP TABLE post_keys")
    op.execute("DROP FUNCTION post_keys_follow()")
    op.execute("ALTER TABLE posts_plain RENAME TO posts")
    op.execute("ALTER TABLE post_tags_plain RENAME TO post_tags")
    op.execute("ALTER TABLE posts ADD CONSTRAINT pk_posts PRIMARY KEY (id)")
    op.execute("ALTER TABLE posts ADD CONSTRAINT uq_posts_platform_key UNIQUE (platform, key)")
    op.execute("CREATE INDEX ix_posts_created_at ON posts (created_at)")
    op.execute("CREATE INDEX ix_posts_text_created_at ON posts (created_at) "
               "WHERE text IS NOT NULL")
    op.execute("ALTER TABLE post_tags ADD CONSTRAINT pk_post_tags PRIMARY KEY (post_id, tag)")
    op.execute("ALTER TABLE post_tags ADD CONSTRAINT fk_post_tags_post_id_posts "
               "FOREIGN KEY (post_id) REFERENCES posts (id) ON DELETE CASCADE")
    op.execute("CREATE INDEX ix_post_tags_tag_created_at ON post_tags (tag, created_at)")
