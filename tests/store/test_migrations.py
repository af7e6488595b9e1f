"""Migrations build exactly the schema the code uses, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from monitor.store.db import MIGRATIONS_DIR, make_engine, migrate
from monitor.store.partitions import is_partition, postgres_metadata
from monitor.store.schema import alerts, deliveries, metadata, outbox


def _not_cluster(name: str | None, type_: str, _parent: object) -> bool:
    # PostgreSQL only (0011_cluster): the cluster tables (schema.cluster_metadata, checked in
    # tests/cluster/) and the job engine's own tables are not the models' business here
    return type_ != "table" or not (name or "").startswith(("cluster_", "procrastinate_"))


def _not_cluster_nor_partition(name: str | None, type_: str, parent: object) -> bool:
    # PostgreSQL only (0010): the month partitions of posts and post_tags come and go
    return _not_cluster(name, type_, parent) and not (type_ == "table" and is_partition(name))


def test_migrated_schema_matches_models(engine: Engine) -> None:
    # PostgreSQL holds posts and post_tags partitioned, and post_keys (0010)
    models = postgres_metadata() if engine.dialect.name == "postgresql" else metadata
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": False, "include_name": _not_cluster_nor_partition})
        diff = compare_metadata(context, models)
    assert diff == []


def test_migrate_twice_is_a_no_op(engine: Engine) -> None:
    before = sorted(inspect(engine).get_table_names())
    migrate(engine)
    assert sorted(inspect(engine).get_table_names()) == before
    assert {"posts", "post_tags", "tag_buckets", "cursors", "alerts", "outbox"} <= set(before)


# ---------------------------------------------------------------- 0004: state columns

K = {name: hashlib.sha1(name.encode()).hexdigest() for name in
     ("sending", "notice-failing", "failing", "gave-up", "summarised")}
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

# the deliveries rows a 0003 database held, as the dispatcher of then wrote them:
# name → (last_error, delivered_at)
OLD_DELIVERIES: dict[str, tuple[str | None, datetime | None]] = {
    "sending": (f"[{K['sending']}] sending", None),
    "notice-failing": (f"[{K['notice-failing']}] notice failed (attempt 3): cannot connect",
                       None),
    "failing": (f"[{K['failing']}] failed (attempt 1): cannot connect", None),
    "gave-up": (f"[{K['gave-up']}] gave up after 9 attempts: 535 login refused", None),
    "summarised": (f"suppressed by the hourly cap; summarised in notice {K['summarised']}", T0),
    "delivered": (None, T0),
}
# name → (claim_key, claim_notice, last_error) after 0004
NEW_DELIVERIES: dict[str, tuple[str | None, bool, str | None]] = {
    "sending": (K["sending"], False, None),
    "notice-failing": (K["notice-failing"], True, "failed (attempt 3): cannot connect"),
    "failing": (K["failing"], False, "failed (attempt 1): cannot connect"),
    "gave-up": (K["gave-up"], False, "gave up after 9 attempts: 535 login refused"),
    "summarised": (K["summarised"], True, None),
    "delivered": (None, False, None),
}

TS = sa.DateTime(timezone=True)
# the three tables as revision 0003 left them (schema.py has the 0004 columns)
_old_alerts = sa.table(
    "alerts", sa.column("id", sa.Integer), sa.column("fingerprint", sa.String),
    sa.column("rule", sa.String), sa.column("labels", sa.JSON), sa.column("state", sa.String),
    sa.column("fired_at", TS), sa.column("annotations", sa.JSON))
_old_outbox = sa.table(
    "outbox", sa.column("id", sa.Integer), sa.column("idempotency_key", sa.String),
    sa.column("kind", sa.String), sa.column("payload", sa.JSON), sa.column("created_at", TS))
_old_deliveries = sa.table(
    "deliveries", sa.column("outbox_id", sa.Integer), sa.column("notifier", sa.String),
    sa.column("attempts", sa.Integer), sa.column("next_attempt_at", TS),
    sa.column("delivered_at", TS), sa.column("last_error", sa.Text))


def _fill_0003(engine: Engine) -> None:
    """Rows with the control state encoded the 0003 way."""
    with engine.begin() as conn:
        conn.execute(_old_alerts.insert(), [
            {"id": 1, "fingerprint": "fp-firing", "rule": "metoo-spike",
             "labels": {"tag": "metoo"}, "state": "firing", "fired_at": T0,
             "annotations": {"ratio": 4.2, "_notify_seq": 3,
                             "_incident_at": "2026-11-26T11:00:00+00:00"}},
            {"id": 2, "fingerprint": "fp-new", "rule": "tone", "labels": {},
             "state": "pending", "fired_at": None, "annotations": {"scored": 240}},
        ])
        for i, (name, (error, delivered)) in enumerate(OLD_DELIVERIES.items(), start=1):
            conn.execute(_old_outbox.insert().values(
                id=i, idempotency_key=f"key-{name}", kind="firing", payload={"rule": name},
                created_at=T0))
            conn.execute(_old_deliveries.insert().values(
                outbox_id=i, notifier="email:desk@example.org", attempts=2,
                next_attempt_at=None if delivered else T0, delivered_at=delivered,
                last_error=error))


def _deliveries_by_name(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.idempotency_key, deliveries)
                            .join(deliveries, deliveries.c.outbox_id == outbox.c.id)).all()
    return {r.idempotency_key.removeprefix("key-"): r for r in rows}


def test_0004_moves_claims_and_counters_into_columns(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine, "0003_tag_pairs")
    _fill_0003(engine)
    migrate(engine)

    got = {name: (r.claim_key, r.claim_notice, r.last_error)
           for name, r in _deliveries_by_name(engine).items()}
    assert got == NEW_DELIVERIES
    with engine.connect() as conn:
        firing, pending = conn.execute(sa.select(alerts).order_by(alerts.c.id)).all()
    # the counters are real columns now, and gone from the annotations
    assert firing.notify_seq == 3
    assert firing.incident_at == datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    assert firing.annotations == {"ratio": 4.2}
    assert (pending.notify_seq, pending.incident_at, pending.annotations) == (
        0, None, {"scored": 240})
    engine.dispose()


def test_0004_downgrade_restores_the_old_encoding(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine, "0003_tag_pairs")
    _fill_0003(engine)
    migrate(engine)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003_tag_pairs")
    with engine.connect() as conn:
        errors = dict(conn.execute(
            sa.select(_old_outbox.c.idempotency_key, _old_deliveries.c.last_error)
            .join(_old_deliveries, _old_deliveries.c.outbox_id == _old_outbox.c.id)).all())
        annotations = list(conn.execute(
            sa.select(_old_alerts.c.annotations).order_by(_old_alerts.c.id)).scalars())
    assert errors == {f"key-{name}": error for name, (error, _) in OLD_DELIVERIES.items()}
    assert annotations[0] == {"ratio": 4.2, "_notify_seq": 3,
                              "_incident_at": "2026-11-26T11:00:00+00:00"}
    engine.dispose()


# ---------------------------------------------------------------- 0005: deletions, retention


def test_0005_removes_posts_a_recorded_deletion_left_in_place(db_url: str) -> None:
    from monitor.store.schema import deletions, post_tags, posts, tag_buckets

    engine = make_engine(db_url)
    migrate(engine, "0004_state_columns")
    with engine.begin() as conn:
        # the 0004 columns only (raw SQL: today's table has more)
        for key in ("kept", "gone"):
            conn.execute(sa.text("INSERT INTO posts (platform, key, created_at, collected_at, "
                                 "is_repost, sensitive) VALUES ('bluesky', :k, :t, :t, "
                                 "false, false)"), {"k": key, "t": T0})
        ids = dict(conn.execute(sa.select(posts.c.key, posts.c.id)).all())
        conn.execute(sa.text("INSERT INTO post_tags (post_id, tag, created_at) "
                             "VALUES (:a, 'metoo', :t), (:b, 'metoo', :t)"),
                     {"a": ids["kept"], "b": ids["gone"], "t": T0})
        conn.execute(sa.text("INSERT INTO tag_buckets (tag, bucket_start, posts, scored, "
                             "compound_sum, compound_sq_sum, positive, neutral, negative) "
                             "VALUES ('metoo', :t, 2, 0, 0, 0, 0, 0, 0)"), {"t": T0})
        # 0004 noted the deletion and kept the post
        conn.execute(sa.text("INSERT INTO deletions (platform, key, seen_at) "
                             "VALUES ('bluesky', 'gone', :t)"), {"t": T0})
    migrate(engine, "0005_deletions_retention")
    with engine.connect() as conn:
        assert list(conn.execute(sa.select(posts.c.key)).scalars()) == ["kept"]
        assert conn.execute(sa.select(sa.func.count()).select_from(post_tags)).scalar() == 1
        assert conn.execute(sa.select(deletions.c.applied_at)).scalar() == T0
        # keep: the bucket still counts what was seen
        assert conn.execute(sa.select(tag_buckets.c.posts)).scalar() == 2
    engine.dispose()
