"""SQL views for researchers: hourly and daily tag series, daily tag pairs.

Same names and columns on SQLite and PostgreSQL:

- ``tag_series_hourly`` / ``tag_series_daily``: bucket, tag, posts, scored,
  mean_compound, positive, neutral, negative — GROUP BYs over ``tag_buckets``,
  buckets at whole UTC hours / UTC midnight. Steps without posts have no row.
- ``tag_pairs_daily``: day, tag_a, tag_b, posts — how many posts of that UTC day
  carried both tags (each pair once, ``tag_a < tag_b``).

Only the date truncation differs: SQLite stores timestamps as UTC text
'YYYY-MM-DD HH:MM:SS.ffffff' (the views give 'YYYY-MM-DD HH:MM:SS' text and a
'YYYY-MM-DD' day); PostgreSQL truncates in UTC whatever the session time zone
(``timestamptz`` buckets and a ``date`` day).

Revision ID: 0002_views
Revises: 0001_spine
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002_views"
down_revision = "0001_spine"
branch_labels = None
depends_on = None

VIEWS = ("tag_pairs_daily", "tag_series_daily", "tag_series_hourly")


def _series_view(name: str, bucket_sql: str) -> str:
    return f"""
CREATE VIEW {name} AS
SELECT {bucket_sql} AS bucket,
       tag,
       SUM(posts) AS posts,
       SUM(scored) AS scored,
       SUM(compound_sum) / NULLIF(SUM(scored), 0) AS mean_compound,
       SUM(positive) AS positive,
       SUM(neutral) AS neutral,
       SUM(negative) AS negative
FROM tag_buckets
GROUP BY {bucket_sql}, tag
"""


def _pairs_view(day_sql: str) -> str:
    return f"""
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
    if op.get_bind().dialect.name == "postgresql":
        hour = "date_trunc('hour', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        day = "date_trunc('day', bucket_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        pair_day = "CAST(a.created_at AT TIME ZONE 'UTC' AS date)"
    else:
        hour = "strftime('%Y-%m-%d %H:00:00', bucket_start)"
        day = "strftime('%Y-%m-%d 00:00:00', bucket_start)"
        pair_day = "date(a.created_at)"
    op.execute(_series_view("tag_series_hourly", hour))
    op.execute(_series_view("tag_series_daily", day))
    op.execute(_pairs_view(pair_day))


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
