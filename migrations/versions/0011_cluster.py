"""PostgreSQL: cluster membership and the job engine's schema (issue 14). Placeholder: no change yet.

Revision ID: 0011_cluster
Revises: 0010_partition_posts
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0011_cluster"
down_revision = "0010_partition_posts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
