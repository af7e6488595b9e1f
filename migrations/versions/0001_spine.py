"""The spine: posts, tags, 5-minute buckets, cursors, stream health, alerts, outbox.

Revision ID: 0001_spine
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_spine"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("collected_at", TS, nullable=False),
        sa.Column("author", sa.String(256)),
        sa.Column("url", sa.Text),
        sa.Column("lang", sa.String(16)),
        sa.Column("text", sa.Text),
        sa.Column("is_repost", sa.Boolean, nullable=False),
        sa.Column("sensitive", sa.Boolean, nullable=False),
        sa.Column("compound", sa.Float),
        sa.Column("pos", sa.Float),
        sa.Column("neu", sa.Float),
        sa.Column("neg", sa.Float),
        sa.PrimaryKeyConstraint("id", name="pk_posts"),
        sa.UniqueConstraint("platform", "key", name="uq_posts_platform_key"),
    )
    op.create_index("ix_posts_created_at", "posts", ["created_at"])
    op.create_table(
        "post_tags",
        sa.Column("post_id", Id, nullable=False),
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("post_id", "tag", name="pk_post_tags"),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], ondelete="CASCADE",
                                name="fk_post_tags_post_id_posts"),
    )
    op.create_index("ix_post_tags_tag_created_at", "post_tags", ["tag", "created_at"])
    op.create_table(
        "tag_buckets",
        sa.Column("tag", sa.String(200), nullable=False),
        sa.Column("bucket_start", TS, nullable=False),
        sa.Column("posts", sa.Integer, nullable=False),
        sa.Column("scored", sa.Integer, nullable=False),
        sa.Column("compound_sum", sa.Float, nullable=False),
        sa.Column("compound_sq_sum", sa.Float, nullable=False),
        sa.Column("positive", sa.Integer, nullable=False),
        sa.Column("neutral", sa.Integer, nullable=False),
        sa.Column("negative", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("tag", "bucket_start", name="pk_tag_buckets"),
    )
    op.create_index("ix_tag_buckets_bucket_start", "tag_buckets", ["bucket_start"])
    op.create_table(
        "cursors",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(512), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("source", "stream", name="pk_cursors"),
    )
    op.create_table(
        "stream_health",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(512), nullable=False),
        sa.Column("last_attempt_at", TS),
        sa.Column("last_success_at", TS),
        sa.Column("last_error_at", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("last_post_at", TS),
        sa.Column("lag_seconds", sa.Float),
        sa.Column("posts_collected", sa.BigInteger, nullable=False),
        sa.Column("posts_rejected", sa.BigInteger, nullable=False),
        sa.Column("fetch_errors", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("source", "stream", name="pk_stream_health"),
    )
    op.create_table(
        "deletions",
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.Column("applied_at", TS),
        sa.PrimaryKeyConstraint("platform", "key", name="pk_deletions"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(512), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active_since", TS),
        sa.Column("fired_at", TS),
        sa.Column("resolved_at", TS),
        sa.Column("last_true_at", TS),
        sa.Column("last_notified_at", TS),
        sa.Column("last_eval_at", TS),
        sa.Column("value", sa.Float),
        sa.Column("summary", sa.Text),
        sa.Column("annotations", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("fingerprint", name="uq_alerts_fingerprint"),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_table(
        "silences",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("matchers", sa.JSON, nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_silences"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("alert_id", Id),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("done_at", TS),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="SET NULL",
                                name="fk_outbox_alert_id_alerts"),
    )
    op.create_index("ix_outbox_done_at", "outbox", ["done_at"])
    op.create_table(
        "deliveries",
        sa.Column("outbox_id", Id, nullable=False),
        sa.Column("notifier", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("delivered_at", TS),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("outbox_id", "notifier", name="pk_deliveries"),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], ondelete="CASCADE",
                                name="fk_deliveries_outbox_id_outbox"),
    )


def downgrade() -> None:
    for table in ("deliveries", "outbox", "silences", "alerts", "deletions", "stream_health",
                  "cursors", "tag_buckets", "post_tags", "posts"):
        op.drop_table(table)
