"""posts.key, deletions.key and posts.url made pseudonymous in hash mode (issue 12). Placeholder: no change yet.

Revision ID: 0009_pseudonymous_keys
Revises: 0008_followed_tags
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0009_pseudonymous_keys"
down_revision = "0008_followed_tags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
