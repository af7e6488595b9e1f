"""Tag pairs per 5-minute bucket: the rollup behind relate's co-occurrence and tone.

Creates ``tag_pair_buckets`` (tag_a, tag_b, bucket_start, posts, scored,
compound_sum; each unordered pair once with ``tag_a < tag_b``) and fills it from
the posts already stored, so an existing database answers ``relate`` exactly as
if every post had been written with the pair rollup in place. Only the first 10
tags of a post are paired (``monitor.store.pairs.MAX_PAIR_TAGS``); a post's tag
order is the order its ``post_tags`` rows were inserted in (rowid on SQLite,
physical order on PostgreSQL), which is the post's own tag order for rows
written by ``write_batch``.

``tag_pairs_daily`` is redefined over the new table (same name and columns) so
it sums a few rows per pair and day instead of self-joining ``post_tags``.

Revision ID: 0003_tag_pairs
Revises: 0002_views
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_tag_pairs"
down_revision = "0002_views"
branch_labels = None
depends_on = None

# frozen copy of monitor.store.pairs.MAX_PAIR_TAGS as of this revision
MAX_PAIR_TAGS = 10
BUCKET_SECONDS = 300


def _backfill(dialect: str) -> str:
    if dialect == "postgresql":
        order = "ctid"
        bucket = (f"to_timestamp(floor(date_part('epoch', a.created_at) / {BUCKET_SECONDS})"
                  f" * {BUCKET_SECONDS})")
        # code point order whatever the database's collation (SQLite's BINARY is too)
        less = 'a.tag COLLATE "C" < b.tag COLLATE "C"'
    else:
        order = "rowid"
        less = "a.tag < b.tag"
        # the text SQLAlchemy stores for an aware UTC datetime on SQLite
        bucket = ("strftime('%Y-%m-%d %H:%M:%S.000000', "
                  f"CAST(strftime('%s', a.created_at) AS INTEGER) / {BUCKET_SECONDS} "
                  f"* {BUCKET_SECONDS}, 'unixepoch')")
    return f"""
INSERT INTO tag_pair_buckets (tag_a, tag_b, bucket_start, posts, scored, compound_sum)
SELECT a.tag, b.tag, {bucket}, COUNT(*), COUNT(p.compound), COALESCE(SUM(p.compound), 0.0)
FROM (SELECT post_id, tag, created_at,
             ROW_NUMBER() OVER (PARTITION BY post_id ORDER BY {order}) AS position
      FROM post_tags) a
JOIN (SELECT post_id, tag,
             ROW_NUMBER() OVER (PARTITION BY post_id ORDER BY {order}) AS position
      FROM post_tags) b
  ON b.post_id = a.post_id AND {less}
JOIN posts p ON p.id = a.post_id
WHERE a.position <= {MAX_PAIR_TAGS} AND b.position <= {MAX_PAIR_TAGS}
GROUP BY a.tag, b.tag, {bucket}
"""


def _pairs_view(day_sql: str) -> str:
    return f"""
CREATE VIEW tag_pairs_daily AS
SELECT {day_sql} AS day,
       tag_a,
       tag_b,
       SUM(posts) AS posts
FROM tag_pair_buckets
GROUP BY {day_sql}, tag_a, tag_b
"""


# the 0002 definition, restored on downgrade
_OLD_PAIRS_VIEW = """
CREATE VIEW tag_pairs_daily AS
SELECT {day_sql} AS day,
       a.tag AS tag_a,
       b.tag AS tag_b,
       COUNT(*) AS posts
FROM post_tags a
JOIN post_tags b ON b.post_id = a.post_id AND a.tag < b.tag
GROUP BY {day_sql}, a.tag, b.tag
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "tag_pair_buckets",
        sa.Column("tag_a", sa.String(200), nullable=False),
        sa.Column("tag_b", sa.String(200), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posts", sa.Integer, nullable=False),
        sa.Column("scored", sa.Integer, nullable=False),
        sa.Column("compound_sum", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("tag_a", "tag_b", "bucket_start", name="pk_tag_pair_buckets"),
        sqlite_with_rowid=False,
    )
    op.execute(_backfill(dialect))
    day = ("CAST(bucket_start AT TIME ZONE 'UTC' AS date)" if dialect == "postgresql"
           else "date(bucket_start)")
    op.execute("DROP VIEW IF EXISTS tag_pairs_daily")
    op.execute(_pairs_view(day))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    day = ("CAST(a.created_at AT TIME ZONE 'UTC' AS date)" if dialect == "postgresql"
           else "date(a.created_at)")
    op.execute("DROP VIEW IF EXISTS tag_pairs_daily")
    op.execute(_OLD_PAIRS_VIEW.format(day_sql=day))
    op.drop_table("tag_pair_buckets")
