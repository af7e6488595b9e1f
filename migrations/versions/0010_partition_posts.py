"""PostgreSQL: posts partitioned by month (issue 14). Placeholder: no change yet.

Revision ID: 0010_partition_posts
Revises: 0009_pseudonymous_keys
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0010_partition_posts"
down_revision = "0009_pseudonymous_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
