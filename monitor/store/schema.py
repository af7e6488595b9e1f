"""SQLAlchemy 2 tables (design.md "Data model"). Alembic migrations mirror these.

Timestamps are stored as UTC and always come back timezone-aware, on SQLite
as on PostgreSQL (see :class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "BUCKET_SECONDS",
    "alerts",
    "author_keys",
    "cursors",
    "deletions",
    "deliveries",
    "followed_tags",
    "forgotten_authors",
    "metadata",
    "outbox",
    "post_tags",
    "posts",
    "privacy_state",
    "retention_state",
    "silences",
    "stream_health",
    "tag_buckets",
    "tag_pair_buckets",
]

BUCKET_SECONDS = 300  # the base bucket: 5 minutes

# BIGINT on PostgreSQL, INTEGER (the rowid alias, so autoincrement works) on SQLite
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every dialect."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

posts = Table(
    "posts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("platform", String(32), nullable=False),
    Column("key", String(512), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("collected_at", UTCDateTime(), nullable=False),
    Column("author", String(256)),
    Column("url", Text),
    Column("lang", String(16)),
    Column("text", Text),
    Column("is_repost", Boolean, nullable=False, default=False),
    Column("sensitive", Boolean, nullable=False, default=False),
    Column("compound", Float),
    Column("pos", Float),
    Column("neu", Float),
    Column("neg", Float),
    # the text was cut to enrich.pipeline.TEXT_MAX_CHARS (for scoring and storage)
    Column("text_truncated", Boolean, nullable=False, default=False, server_default=false()),
    UniqueConstraint("platform", "key"),
    Index("ix_posts_created_at", "created_at"),
)

# Posts still holding their text, oldest first: what the retention job clears and
# `monitor status` reports, without reading the rows already cleared. Partial, so
# it costs nothing while text is not stored (the default).
Index("ix_posts_text_created_at", posts.c.created_at,
      sqlite_where=posts.c.text.is_not(None), postgresql_where=posts.c.text.is_not(None))

post_tags = Table(
    "post_tags",
    metadata,
    Column("post_id", Id, ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(200), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # the tag's place in the post's own tag order (only relative order counts):
    # which tags the pair rollup paired (monitor.store.pairs), so a recounted
    # deletion subtracts exactly those; NULL on rows stored before 0005
    Column("seq", Integer),
    Index("ix_post_tags_tag_created_at", "tag", "created_at"),
)

tag_buckets = Table(
    "tag_buckets",
    metadata,
    Column("tag", String(200), primary_key=True),
    Column("bucket_start", UTCDateTime(), primary_key=True),
    Column("posts", Integer, nullable=False, default=0),
    Column("scored", Integer, nullable=False, default=0),
    Column("compound_sum", Float, nullable=False, default=0.0),
    Column("compound_sq_sum", Float, nullable=False, default=0.0),
    Column("positive", Integer, nullable=False, default=0),
    Column("neutral", Integer, nullable=False, default=0),
    Column("negative", Integer, nullable=False, default=0),
    Index("ix_tag_buckets_bucket_start", "bucket_start"),
)

# Posts carrying both tags of a pair, per 5-minute bucket: what the relate view's
# co-occurrence share and with/without tone are computed from (tag_buckets gives
# each tag's totals). Each unordered pair is stored once, tag_a < tag_b; only a
# post's first MAX_PAIR_TAGS tags are paired (monitor.store.pairs).
tag_pair_buckets = Table(
    "tag_pair_buckets",
    metadata,
    Column("tag_a", String(200), primary_key=True),
    Column("tag_b", String(200), primary_key=True),
    Column("bucket_start", UTCDateTime(), primary_key=True),
    Column("posts", Integer, nullable=False, default=0),
    Column("scored", Integer, nullable=False, default=0),
    Column("compound_sum", Float, nullable=False, default=0.0),
    # SQLite: the rows live in the primary-key b-tree, so a pair's range is one
    # sequential read and an upsert one b-tree update (no rowid table + index)
    sqlite_with_rowid=False,
)

cursors = Table(
    "cursors",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("stream", String(512), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Tags followed or unfollowed at run time (`monitor tags add|remove`): each row
# overrides the config's hashtags for its tag; the service re-reads it once per
# poll interval (monitor.streams, monitor.store.followed).
followed_tags = Table(
    "followed_tags",
    metadata,
    Column("tag", String(200), primary_key=True),
    Column("state", String(16), nullable=False),  # follow|unfollow
    Column("changed_at", UTCDateTime(), nullable=False),
)

stream_health = Table(
    "stream_health",
    metadata,
    Column("source", String(64), primary_key=True),
    Column("stream", String(512), primary_key=True),
    Column("last_attempt_at", UTCDateTime()),
    Column("last_success_at", UTCDateTime()),
    Column("last_error_at", UTCDateTime()),
    Column("last_error", Text),
    Column("last_post_at", UTCDateTime()),
    Column("lag_seconds", Float),
    Column("posts_collected", BigInteger, nullable=False, default=0),
    Column("posts_rejected", BigInteger, nullable=False, default=0),
    Column("fetch_errors", BigInteger, nullable=False, default=0),
)

# What a platform said is gone: only platform, key and times (no text, no
# author). Kept as a tombstone, so the post is never stored again when it shows
# up later (monitor.store.erase). applied_at: when a stored post was removed.
deletions = Table(
    "deletions",
    metadata,
    Column("platform", String(32), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("seen_at", UTCDateTime(), nullable=False),
    Column("applied_at", UTCDateTime()),
)

# The retention job's state per kind (text, authors, posts): its last run and,
# for authors, how far it has cleared (monitor.store.retention).
retention_state = Table(
    "retention_state",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("last_run_at", UTCDateTime()),
    Column("last_ok_at", UTCDateTime()),
    Column("last_error", Text),
    Column("last_changed", BigInteger, nullable=False, default=0),
    # authors: every post created before done_before was cleared, and every post
    # with an id above seen_id is checked again (a late import of old posts)
    Column("done_before", UTCDateTime()),
    Column("seen_id", BigInteger),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fingerprint", String(512), nullable=False, unique=True),
    Column("rule", String(128), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # inactive|pending|firing|resolved
    Column("active_since", UTCDateTime()),
    Column("fired_at", UTCDateTime()),
    Column("resolved_at", UTCDateTime()),
    Column("last_true_at", UTCDateTime()),
    Column("last_notified_at", UTCDateTime()),
    Column("last_eval_at", UTCDateTime()),
    Column("value", Float),
    Column("summary", Text),
    Column("annotations", JSON, nullable=False, default=dict),  # what the rule reported
    # lifecycle counters (monitor.detect.lifecycle.AlertState): announcements in
    # this firing episode (part of the outbox idempotency key), and when the last
    # "firing" page went out (rearm_after)
    Column("notify_seq", Integer, nullable=False, default=0, server_default="0"),
    Column("incident_at", UTCDateTime()),
    Index("ix_alerts_state", "state"),
)

# The key of the author pseudonyms, one chain per database (monitor.store.keys,
# monitor.enrich.privacy): a fingerprint of each key, the secret itself when the
# database keeps it, and the progress of a rotation (posts.id re-keyed through).
author_keys = Table(
    "author_keys",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("fingerprint", String(64), nullable=False),
    Column("secret", Text),  # NULL: kept outside the database (privacy.hash_secret[_file])
    Column("state", String(16), nullable=False),  # active|retired|rotating
    Column("rotated_through", BigInteger),  # rotating: last posts.id re-keyed
    Column("created_at", UTCDateTime(), nullable=False),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("matchers", JSON, nullable=False),  # {"rule": "spike", "tag": "metoo"}
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("created_by", String(128), nullable=False, default=""),
    Column("created_at", UTCDateTime(), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # firing|resolved|repeat|digest
    Column("alert_id", Id, ForeignKey("alerts.id", ondelete="SET NULL")),
    Column("payload", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("done_at", UTCDateTime()),  # every notifier delivered (or gave up)
    Index("ix_outbox_done_at", "done_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("outbox_id", Id, ForeignKey("outbox.id", ondelete="CASCADE"), primary_key=True),
    Column("notifier", String(64), primary_key=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    Column("last_error", Text),  # for people: the last failure, never parsed
    # the notification carrying this row: its idempotency key, written before the
    # send (so a retry after a crash reuses the key and the members) and kept after
    # delivery; claim_notice: that notification is an hourly-cap "suppressed" notice
    Column("claim_key", String(40)),
    Column("claim_notice", Boolean, nullable=False, default=False, server_default=false()),
)

# ---------------------------------------------------------------- cluster (issue 14)
# PostgreSQL only (migration 0011_cluster): several `monitor run` processes on one
# database. Kept out of `metadata` because SQLite databases never have them.
cluster_metadata = MetaData(naming_convention=metadata.naming_convention)

# one row per live process, renewed every lease/3 (monitor.cluster.members)
cluster_members = Table(
    "cluster_members",
    cluster_metadata,
    Column("member", String(200), primary_key=True),  # hostname:pid:start-ms
    Column("hostname", String(128), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("renewed_at", UTCDateTime(), nullable=False),
    Column("roles", Text, nullable=False, default=""),  # comma list: stream:jetstream,…
    Column("hosts", Text, nullable=False, default=""),  # comma list: hosts polled lately
    Column("worker_id", BigInteger),  # procrastinate_workers.id of its worker
)

# one row per polled platform host: who polls it, when it is due, its rate-limit state
cluster_hosts = Table(
    "cluster_hosts",
    cluster_metadata,
    Column("host", String(300), primary_key=True),
    Column("holder", String(200)),  # cluster_members.member of the last poll
    Column("polled_at", UTCDateTime()),
    Column("next_due", UTCDateTime(), nullable=False),
    Column("blocked_until", UTCDateTime()),  # a 429 or an exhausted window
    Column("next_slot", UTCDateTime()),  # the next request may not start before
    # a round in progress (set by its claim, cleared by its release): no other claim
    # until then, even when the job engine hands a slow worker's job to another
    Column("busy_until", UTCDateTime()),
    Column("polls", BigInteger, nullable=False, default=0),
)

# Authors erased on request (monitor forget --author): only the keyed pseudonym of
# the handle (monitor.enrich.privacy), so a later post of theirs is dropped before
# it is stored; dropped counts those posts (monitor status "forgotten").
forgotten_authors = Table(
    "forgotten_authors",
    metadata,
    Column("platform", String(32), primary_key=True),
    Column("author_hash", String(64), primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("dropped", BigInteger, nullable=False, default=0, server_default="0"),
)

# One-time privacy steps done on this database (monitor.enrich.post_keys_convert):
# "post_keys" = "keys" (every post key and tombstone is a pseudonym) or "keys+urls"
# (no link either), so a start skips the scan of posts once it is recorded.
privacy_state = Table(
    "privacy_state",
    metadata,
    Column("step", String(32), primary_key=True),
    Column("value", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)
