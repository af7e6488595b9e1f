"""Alert state and silences: the one module that reads and writes ``alerts`` and ``silences``.

The rule engine (``monitor.detect.engine``) decides; this module stores. Rows
come back as plain records. The lifecycle columns carry the names of
:class:`monitor.detect.lifecycle.AlertState`'s fields (``LIFECYCLE``), so the
engine turns a record into a state with ``AlertState(**alert.lifecycle)``
without this module depending on detection.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update

from monitor.store.reading import Reader, reading
from monitor.store.schema import alerts, silences

__all__ = [
    "LIFECYCLE",
    "AlertRow",
    "Silence",
    "StoredAlert",
    "active_silences",
    "add_silence",
    "alerts_overlapping",
    "end_silence",
    "firing_counts",
    "list_alerts",
    "list_silences",
    "recent_alerts",
    "rule_alerts",
    "save_alert",
]

# the alert columns the lifecycle owns, named as AlertState's fields
LIFECYCLE = ("state", "active_since", "fired_at", "resolved_at", "last_true_at",
             "last_notified_at", "last_eval_at", "notify_seq", "incident_at")


# ----------------------------------------------------------------- alert state


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """One ``alerts`` row as the engine needs it."""

    id: int
    fingerprint: str
    rule: str
    labels: dict[str, str]
    lifecycle: dict[str, Any]  # LIFECYCLE column → value
    value: float | None
    summary: str
    annotations: dict[str, Any]


def _stored(row: Any) -> StoredAlert:
    return StoredAlert(
        id=int(row.id), fingerprint=str(row.fingerprint), rule=str(row.rule),
        labels={str(k): str(v) for k, v in dict(row.labels or {}).items()},
        lifecycle={name: getattr(row, name) for name in LIFECYCLE},
        value=row.value, summary=str(row.summary or ""),
        annotations=dict(row.annotations or {}),
    )


def rule_alerts(conn: Connection, rule: str) -> dict[str, StoredAlert]:
    """The stored alerts of *rule* by fingerprint, oldest first, in the caller's transaction."""
    stmt = select(alerts).where(alerts.c.rule == rule).order_by(alerts.c.id)
    return {str(row.fingerprint): _stored(row) for row in conn.execute(stmt)}


def save_alert(
    conn: Connection, alert_id: int | None, *, fingerprint: str, rule: str,
    labels: Mapping[str, str], lifecycle: Mapping[str, Any], annotations: Mapping[str, Any],
    measured: tuple[float, str] | None = None,
) -> int:
    """Insert (``alert_id`` None) or update one alert; returns its id.

    *measured* is the finding's (value, summary); None keeps the stored ones
    (an alert whose rule no longer reports it).
    """
    unknown = set(lifecycle) - set(LIFECYCLE)
    if unknown:
        raise ValueError(f"not a lifecycle column: {sorted(unknown)}")
    values: dict[str, Any] = {**lifecycle, "labels": dict(labels),
                              "annotations": dict(annotations)}
    if measured is not None:
        values.update(value=measured[0], summary=measured[1])
    if alert_id is None:
        values.update(fingerprint=fingerprint, rule=rule)
        return int(conn.execute(alerts.insert().values(**values).returning(alerts.c.id))
                   .scalar_one())
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))
    return alert_id


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An alert as `monitor alerts` shows it."""

    id: int
    rule: str
    labels: Mapping[str, str]
    state: str
    active_since: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None
    value: float | None
    summary: str
    fingerprint: str = ""
    annotations: Mapping[str, Any] | None = None  # the rule's numbers and its explanation


def _alert_row(row: Any) -> AlertRow:
    labels = row.labels if isinstance(row.labels, dict) else {}
    notes = row.annotations if isinstance(row.annotations, dict) else {}
    return AlertRow(int(row.id), row.rule, dict(labels), row.state, row.active_since,
                    row.fired_at, row.resolved_at, row.value, str(row.summary or ""),
                    str(row.fingerprint), dict(notes))


def recent_alerts(
    db: Reader, states: Collection[str] | None = None, *, limit: int | None = None
) -> list[AlertRow]:
    """Alerts in *states* (every alert when None), the most recently fired (else
    activated, else evaluated) first: the dashboard's list and MQTT's firing alerts."""
    c = alerts.c
    stmt = select(alerts).order_by(
        func.coalesce(c.fired_at, c.active_since, c.last_eval_at).desc(), c.id.desc())
    if states is not None:
        stmt = stmt.where(c.state.in_(sorted(states)))
    if limit is not None:
        stmt = stmt.limit(limit)
    with reading(db) as conn:
        return [_alert_row(row) for row in conn.execute(stmt)]


def alerts_overlapping(db: Reader, since: datetime, until: datetime) -> list[AlertRow]:
    """Pending, firing and resolved alerts whose episode overlaps ``[since, until)``, the
    earliest first: the dashboard's chart markers.

    An episode runs from ``active_since`` (pending, firing) or ``fired_at`` (resolved: the
    lifecycle clears ``active_since`` then) to ``resolved_at``, or is still open. Only the
    latest episode of each alert is stored, so older ones are not returned.
    """
    c = alerts.c
    open_start = func.coalesce(c.active_since, c.fired_at)
    stmt = (
        select(alerts)
        .where(or_(
            and_(c.state.in_(("pending", "firing")), open_start < until),
            and_(c.state == "resolved", c.fired_at < until, c.resolved_at >= since),
        ))
        .order_by(open_start, c.id)
    )
    with reading(db) as conn:
        return [_alert_row(row) for row in conn.execute(stmt)]


def firing_counts(db: Reader) -> dict[str, int]:
    """How many alerts are firing, per rule (rules with none are absent)."""
    stmt = (select(alerts.c.rule, func.count()).where(alerts.c.state == "firing")
            .group_by(alerts.c.rule))
    with reading(db) as conn:
        return {str(rule): int(n) for rule, n in conn.execute(stmt)}


_LISTING_ORDER = {"firing": 0, "pending": 1, "resolved": 2, "inactive": 3}


def list_alerts(
    engine: Engine, now: datetime, *, recent: timedelta = timedelta(hours=24),
    include_all: bool = False,
) -> list[AlertRow]:
    """Firing and pending alerts, plus those resolved within *recent* (or every alert).

    Firing first, then pending, then resolved; newest firing first within each.
    """
    stmt = select(alerts).order_by(alerts.c.state, alerts.c.fired_at.desc(), alerts.c.id)
    out: list[AlertRow] = []
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            keep = include_all or row.state in ("firing", "pending") or (
                row.state == "resolved" and row.resolved_at is not None
                and now - row.resolved_at <= recent
            )
            if keep:
                out.append(_alert_row(row))
    out.sort(key=lambda a: (_LISTING_ORDER.get(a.state, 9),
                            -(a.fired_at.timestamp() if a.fired_at else 0)))
    return out


# -------------------------------------------------------------------- silences


@dataclass(frozen=True, slots=True)
class Silence:
    """A stored mute: ``matchers`` (rule / label → value) from ``starts_at`` until ``ends_at``."""

    id: int
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


def _silence(row: Any) -> Silence:
    return Silence(int(row.id), dict(row.matchers), row.starts_at, row.ends_at,
                   str(row.comment or ""), str(row.created_by or ""), row.created_at)


def add_silence(
    engine: Engine, matchers: Mapping[str, str], starts_at: datetime, ends_at: datetime, *,
    comment: str = "", created_by: str = "", created_at: datetime,
) -> Silence:
    """Store a silence; returns it with its new id."""
    values = {
        "matchers": dict(matchers), "starts_at": starts_at, "ends_at": ends_at,
        "comment": comment, "created_by": created_by, "created_at": created_at,
    }
    with engine.begin() as conn:
        new_id = conn.execute(silences.insert().values(**values).returning(silences.c.id)
                              ).scalar_one()
    return Silence(int(new_id), dict(matchers), starts_at, ends_at, comment, created_by,
                   created_at)


def list_silences(engine: Engine, now: datetime, *, include_expired: bool = False) -> list[Silence]:
    """Silences not yet ended at *now* (with *include_expired*, every one), newest first."""
    stmt = select(silences).order_by(silences.c.id.desc())
    if not include_expired:
        stmt = stmt.where(silences.c.ends_at > now)
    with engine.connect() as conn:
        return [_silence(r) for r in conn.execute(stmt)]


def end_silence(engine: Engine, silence_id: int, now: datetime) -> Silence | None:
    """Make a silence end at *now* (unless it already has); None when there is no such id."""
    with engine.begin() as conn:
        row = conn.execute(select(silences).where(silences.c.id == silence_id)).first()
        if row is None:
            return None
        if row.ends_at > now:
            conn.execute(update(silences).where(silences.c.id == silence_id).values(ends_at=now))
        row = conn.execute(select(silences).where(silences.c.id == silence_id)).one()
    return _silence(row)


def active_silences(conn: Connection, now: datetime) -> list[Silence]:
    """Silences in force at *now*, read inside the caller's transaction."""
    stmt = select(silences).where(silences.c.starts_at <= now, silences.c.ends_at > now)
    return [_silence(r) for r in conn.execute(stmt)]
