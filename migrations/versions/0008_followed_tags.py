"""followed_tags: tags added or removed at run time (`monitor tags add|remove`).

The running service reads this table once per poll interval and starts or stops
streams to match, so the followed tags change without a restart. A row
overrides the config's ``hashtags`` for its tag: ``follow`` adds it, ``unfollow``
removes it. No rows: exactly the config's list.

Revision ID: 0008_followed_tags
Revises: 0007_truncated
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_followed_tags"
down_revision = "0007_truncated"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "followed_tags",
        sa.Column("tag", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("followed_tags")
