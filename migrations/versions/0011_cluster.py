"""PostgreSQL: cluster membership and the job engine's schema (issue 14).

``cluster_members`` (one row per live ``monitor run``), ``cluster_hosts`` (who
polls each platform host, when it is due, its rate-limit state) and the schema
of procrastinate, the job engine that leases polled hosts to processes
(docs/cluster-engine.md): its tables, types, functions and triggers, as the
installed procrastinate ships them (``procrastinate/sql/schema.sql``). A later
procrastinate release with schema changes needs a migration applying its
``sql/migrations`` files. SQLite: nothing (one process per SQLite database).

Revision ID: 0011_cluster
Revises: 0010_partition_posts
Create Date: 2026-12-01
"""

from __future__ import annotations

from importlib.resources import files

import sqlalchemy as sa
from alembic import op

revision = "0011_cluster"
down_revision = "0010_partition_posts"
branch_labels = None
depends_on = None

# everything procrastinate's schema.sql creates, dropped in reverse order
# (the triggers go with their table)
_PROCRASTINATE_TABLES = ("procrastinate_events", "procrastinate_periodic_defers",
                         "procrastinate_jobs", "procrastinate_workers")
_PROCRASTINATE_FUNCTIONS = (
    "procrastinate_defer_jobs_v1", "procrastinate_defer_periodic_job_v2",
    "procrastinate_fetch_job_v2", "procrastinate_finish_job_v1", "procrastinate_cancel_job_v1",
    "procrastinate_retry_job_v1", "procrastinate_retry_job_v2",
    "procrastinate_notify_queue_job_inserted_v1", "procrastinate_notify_queue_abort_job_v1",
    "procrastinate_trigger_function_status_events_insert_v1",
    "procrastinate_trigger_function_status_events_update_v1",
    "procrastinate_trigger_function_scheduled_events_v1",
    "procrastinate_trigger_abort_requested_events_procedure_v1",
    "procrastinate_unlink_periodic_defers_v1", "procrastinate_register_worker_v1",
    "procrastinate_unregister_worker_v1", "procrastinate_update_heartbeat_v1",
    "procrastinate_prune_stalled_workers_v1",
)
_PROCRASTINATE_TYPES = ("procrastinate_job_to_defer_v1", "procrastinate_job_event_type",
                        "procrastinate_job_status")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.create_table(
        "cluster_members",
        sa.Column("member", sa.String(200), primary_key=True),
        sa.Column("hostname", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("hosts", sa.Text, nullable=False),
        sa.Column("worker_id", sa.BigInteger),
    )
    op.create_table(
        "cluster_hosts",
        sa.Column("host", sa.String(300), primary_key=True),
        sa.Column("holder", sa.String(200)),
        sa.Column("polled_at", sa.DateTime(timezone=True)),
        sa.Column("next_due", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True)),
        sa.Column("next_slot", sa.DateTime(timezone=True)),
        sa.Column("busy_until", sa.DateTime(timezone=True)),
        sa.Column("polls", sa.BigInteger, nullable=False),
    )
    schema_sql = (files("procrastinate") / "sql" / "schema.sql").read_text(encoding="utf-8")
    # through the driver as it is: the SQL holds %, :: and $$ that SQLAlchemy's
    # parameter parsing must not see; psycopg runs a parameterless script whole
    bind.connection.driver_connection.execute(schema_sql)  # type: ignore[union-attr]


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in _PROCRASTINATE_TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    for function in _PROCRASTINATE_FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    for type_name in _PROCRASTINATE_TYPES:
        op.execute(f"DROP TYPE IF EXISTS {type_name}")
    op.drop_table("cluster_hosts")
    op.drop_table("cluster_members")
