"""The author key belongs to its database: ``author_keys``.

Until now the secret behind ``privacy.authors: hash`` was a file beside the
SQLite database, or ``./data/.author_secret`` of whatever directory the process
ran in (PostgreSQL), so a process started elsewhere silently hashed with a new
key. This revision adds ``author_keys``: one row per key version with its
fingerprint, the secret itself when the database keeps it (the default), and
the progress of a rotation (``monitor rotate-secret``). The first process that
needs the key fills it (``monitor.enrich.privacy``): from ``privacy.hash_secret``
/ ``privacy.hash_secret_file``, else from the legacy ``.author_secret`` beside
a SQLite file (adopted), else a new random key.

Revision ID: 0006_author_key
Revises: 0005_deletions_retention
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_author_key"
down_revision = "0005_deletions_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "author_keys",
        sa.Column("version", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("secret", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rotated_through", sa.BigInteger),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_author_keys"),
    )


def downgrade() -> None:
    op.drop_table("author_keys")
