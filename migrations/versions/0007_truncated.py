"""posts.text_truncated: the text was cut to the documented cap (issue 11).

A post's text is kept to its first ``monitor.enrich.pipeline.TEXT_MAX_CHARS``
characters, for scoring and for storage; this flag says which posts were cut.
Existing rows were stored whole, so they are all ``false``.

Revision ID: 0007_truncated
Revises: 0006_author_key
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_truncated"
down_revision = "0006_author_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN with a default on both databases: no copy of the posts table
    op.add_column("posts", sa.Column("text_truncated", sa.Boolean(), nullable=False,
                                     server_default=sa.false()))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): a batch copy of posts would cascade-delete
    # every post_tags row through the foreign key
    op.drop_column("posts", "text_truncated")
