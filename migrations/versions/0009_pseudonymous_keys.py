"""Pseudonymous post keys and the block list of forgotten authors (issue 12).

Under ``privacy.authors: hash`` ``posts.key`` and ``deletions.key`` become keyed
pseudonyms and ``posts.url`` is dropped (monitor.enrich.post_keys). The rows
need the database's author key, which may live outside the database
(``privacy.hash_secret[_file]``) and the mode is a setting, so this revision does
not convert them: the first service start or import after it does, in batches,
resumable (:func:`monitor.enrich.post_keys_convert.pseudonymise_existing`).

This revision adds ``forgotten_authors``: the keyed pseudonym of each author
erased with ``monitor forget --author``, so their later posts are not stored
again, and how many such posts were dropped, and ``privacy_state``: which one-time
privacy steps are done (the conversion above), so a start skips them after.

Revision ID: 0009_pseudonymous_keys
Revises: 0008_followed_tags
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_pseudonymous_keys"
down_revision = "0008_followed_tags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forgotten_authors",
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("author_hash", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dropped", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("platform", "author_hash", name="pk_forgotten_authors"),
    )
    op.create_table(
        "privacy_state",
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("step", name="pk_privacy_state"),
    )


def downgrade() -> None:
    op.drop_table("privacy_state")
    op.drop_table("forgotten_authors")
