"""PostgreSQL: room on the rollup tables' pages for HOT updates (issue 11). No-op on SQLite.

Every stored (post, tag) adds to a ``tag_buckets`` row and every tag pair to a
``tag_pair_buckets`` row: an update per increment, 2-3 per post. PostgreSQL
writes an update as a new row version, and only when the new version fits on
the same page (a heap-only tuple, HOT) does it skip inserting new entries into
every index of the table. At the default fillfactor of 100 the pages fill up
and 12-20 % of the increments of ``benchmarks/ingest.py``'s import were not
HOT; at 70 all but a handful were (``pg_stat_user_tables.n_tup_hot_upd``).
The 30 % left free costs space only on the rollups, which are small beside
``posts``.

The setting applies to pages written from now on; existing pages keep their
rows until VACUUM or updates move them, so the upgrade rewrites nothing and
takes only a brief lock. The downgrade resets the option: the tables are then
exactly as 0011 left them (no storage options).

Revision ID: 0012_rollup_fillfactor
Revises: 0011_cluster
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0012_rollup_fillfactor"
down_revision = "0011_cluster"
branch_labels = None
depends_on = None

ROLLUP_TABLES = ("tag_buckets", "tag_pair_buckets")
FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ROLLUP_TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ROLLUP_TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
