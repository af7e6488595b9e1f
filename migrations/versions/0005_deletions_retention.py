"""Deletions that remove posts, and retention by age.

- ``post_tags.seq``: a tag's place in its post's own tag order, so a deletion
  counted back out of the rollups (``privacy.deletions: recount``) subtracts
  exactly the pairs the pair rule counted (a post's first 10 tags). Rows stored
  before this revision keep NULL and are ordered by tag.
- ``ix_posts_text_created_at``: posts still holding text, by age (partial, so
  it costs nothing while text is not stored): what the retention job clears
  and ``monitor status`` reports without reading cleared rows.
- ``retention_state``: the retention job's last run per kind and its progress.
- Posts that a recorded deletion left in place (before this revision a deletion
  was only noted) are removed; the rollups keep counting them.

Revision ID: 0005_deletions_retention
Revises: 0004_state_columns
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_deletions_retention"
down_revision = "0004_state_columns"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _apply_recorded_deletions() -> None:
    """Until 0004 a recorded deletion left its post in place: remove those posts now
    (their tags too; the rollups keep counting them, as ``privacy.deletions: keep``)."""
    deleted = ("EXISTS (SELECT 1 FROM deletions AS d "
               "WHERE d.platform = posts.platform AND d.key = posts.key)")
    op.execute(sa.text(
        "UPDATE deletions SET applied_at = seen_at WHERE applied_at IS NULL AND EXISTS "
        "(SELECT 1 FROM posts WHERE posts.platform = deletions.platform "
        "AND posts.key = deletions.key)"))
    op.execute(sa.text(f"DELETE FROM post_tags WHERE post_id IN (SELECT id FROM posts WHERE "
                       f"{deleted})"))
    op.execute(sa.text(f"DELETE FROM posts WHERE {deleted}"))


def upgrade() -> None:
    _apply_recorded_deletions()
    # a nullable column: O(1) on both databases, no table rewrite
    op.add_column("post_tags", sa.Column("seq", sa.Integer))
    has_text = sa.text("text IS NOT NULL")
    op.create_index("ix_posts_text_created_at", "posts", ["created_at"],
                    sqlite_where=has_text, postgresql_where=has_text)
    op.create_table(
        "retention_state",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("last_run_at", TS),
        sa.Column("last_ok_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("last_changed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("done_before", TS),
        sa.Column("seen_id", sa.BigInteger),
        sa.PrimaryKeyConstraint("kind", name="pk_retention_state"),
    )


def downgrade() -> None:
    op.drop_table("retention_state")
    op.drop_index("ix_posts_text_created_at", table_name="posts")
    with op.batch_alter_table("post_tags") as batch:
        batch.drop_column("seq")
