"""Control state in real columns: delivery claims and alert lifecycle counters.

Until 0003 two pieces of control state lived in free-form columns:

- the key of the notification a ``deliveries`` row is in flight with (or
  failing with) was the prefix of ``last_error`` — ``[<40 hex>] sending``,
  ``[<key>] notice failed (attempt 2): …`` — and parsed back by slicing; a row
  summarised in a suppression notice said so in prose
  (``suppressed by the hourly cap; summarised in notice <key>``);
- an alert's announcement counter and the time of its last "firing" page were
  the ``_notify_seq`` and ``_incident_at`` keys of ``alerts.annotations``
  (the only ``_``-prefixed keys the engine ever wrote).

This revision adds ``deliveries.claim_key`` / ``deliveries.claim_notice`` and
``alerts.notify_seq`` / ``alerts.incident_at``, moves every existing value over
and removes it from the old place, so ``last_error`` is only the error text and
``annotations`` only what the rule reported. Downgrade writes them back.

Revision ID: 0004_state_columns
Revises: 0003_tag_pairs
Create Date: 2026-11-27
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_state_columns"
down_revision = "0003_tag_pairs"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# frozen copies of the 0003-era encodings
_CLAIM = re.compile(r"^\[([0-9a-f]{40})\] ?(.*)$", re.DOTALL)
_SUMMARISED = re.compile(r"^suppressed by the hourly cap; summarised in notice ([0-9a-f]{40})$")
_INTERNAL = ("_notify_seq", "_incident_at")

_deliveries = sa.table(
    "deliveries",
    sa.column("outbox_id", sa.Integer),
    sa.column("notifier", sa.String),
    sa.column("delivered_at", TS),
    sa.column("last_error", sa.Text),
    sa.column("claim_key", sa.String),
    sa.column("claim_notice", sa.Boolean),
)
_alerts = sa.table(
    "alerts",
    sa.column("id", sa.Integer),
    sa.column("annotations", sa.JSON),
    sa.column("notify_seq", sa.Integer),
    sa.column("incident_at", TS),
)


def _split_last_error(text: str) -> tuple[str | None, bool, str | None]:
    """An old ``last_error`` → (claim key, is a notice, the error text left over)."""
    summarised = _SUMMARISED.match(text)
    if summarised:
        return summarised.group(1), True, None
    claim = _CLAIM.match(text)
    if not claim:
        return None, False, text
    key, rest = claim.group(1), claim.group(2)
    notice = rest.startswith("notice")
    if notice:
        rest = rest[len("notice"):].lstrip()
    # "sending" was only the in-flight mark, not an error
    return key, notice, (None if rest in ("", "sending") else rest)


def _utc(value: datetime) -> datetime:
    # on SQLite a DateTime is stored as its wall-clock text: make that UTC first
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _move_delivery_claims(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.select(_deliveries.c.outbox_id, _deliveries.c.notifier, _deliveries.c.last_error)
        .where(_deliveries.c.last_error.is_not(None))
    ).all()
    for row in rows:
        key, notice, error = _split_last_error(str(row.last_error))
        if key is None:
            continue
        conn.execute(
            sa.update(_deliveries)
            .where(_deliveries.c.outbox_id == row.outbox_id,
                   _deliveries.c.notifier == row.notifier)
            .values(claim_key=key, claim_notice=notice, last_error=error)
        )


def _move_alert_counters(conn: sa.Connection) -> None:
    for row in conn.execute(sa.select(_alerts.c.id, _alerts.c.annotations)).all():
        annotations: dict[str, Any] = dict(row.annotations or {})
        if not any(k in annotations for k in _INTERNAL):
            continue
        seq = annotations.pop("_notify_seq", 0)
        incident = annotations.pop("_incident_at", None)
        conn.execute(
            sa.update(_alerts).where(_alerts.c.id == row.id).values(
                annotations=annotations,
                notify_seq=int(seq or 0),
                incident_at=_utc(datetime.fromisoformat(incident)) if incident else None,
            )
        )


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("claim_key", sa.String(40)))
        batch.add_column(sa.Column("claim_notice", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("notify_seq", sa.Integer, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("incident_at", TS))
    conn = op.get_bind()
    _move_delivery_claims(conn)
    _move_alert_counters(conn)


def _restore_delivery_claims(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.select(_deliveries.c.outbox_id, _deliveries.c.notifier, _deliveries.c.last_error,
                  _deliveries.c.claim_key, _deliveries.c.claim_notice,
                  _deliveries.c.delivered_at)
        .where(_deliveries.c.claim_key.is_not(None))
    ).all()
    for row in rows:
        if row.delivered_at is not None:
            text = (f"suppressed by the hourly cap; summarised in notice {row.claim_key}"
                    if row.claim_notice else row.last_error)
        else:
            status = row.last_error or "sending"
            text = f"[{row.claim_key}] {'notice ' if row.claim_notice else ''}{status}"
        conn.execute(
            sa.update(_deliveries)
            .where(_deliveries.c.outbox_id == row.outbox_id,
                   _deliveries.c.notifier == row.notifier)
            .values(last_error=text)
        )


def _restore_alert_counters(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.select(_alerts.c.id, _alerts.c.annotations, _alerts.c.notify_seq,
                  _alerts.c.incident_at)
    ).all()
    for row in rows:
        incident = _utc(row.incident_at).isoformat() if row.incident_at else None
        annotations = {**dict(row.annotations or {}), "_notify_seq": int(row.notify_seq or 0),
                       "_incident_at": incident}
        conn.execute(sa.update(_alerts).where(_alerts.c.id == row.id)
                     .values(annotations=annotations))


def downgrade() -> None:
    conn = op.get_bind()
    _restore_delivery_claims(conn)
    _restore_alert_counters(conn)
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("incident_at")
        batch.drop_column("notify_seq")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claim_notice")
        batch.drop_column("claim_key")
