"""Evaluate every configured rule at an instant and keep alert state in SQL.

:func:`evaluate` runs in ONE transaction: it reads the rules' inputs, advances
each alert through :func:`monitor.detect.lifecycle.step`, writes the
``alerts`` rows, and writes an ``outbox`` row for every announcement, so a
state change and its notification are stored together or not at all. The
clock is the *now* argument: evaluating the same instant twice, or again after
a restart, changes nothing and announces nothing twice (the lifecycle ignores
instants it has seen, and outbox rows carry an idempotency key).

Inhibition: while a stream's flatline alert fires, the spike alerts of the
tag it follows (every tag, for a firehose) are held back, so a dead collector
is one alert rather than one per tag.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from monitor.config import Config
from monitor.detect.lifecycle import AlertState, Announcement, Timing, step
from monitor.detect.rules import Finding, evaluate_rule
from monitor.detect.settings import FlatlineRule, RuleConfig, SpikeRule
from monitor.detect.silences import active_silences, is_silenced
from monitor.store.repository import insert_for
from monitor.store.schema import alerts, outbox

__all__ = [
    "AlertRow",
    "EvalReport",
    "RuleOutcome",
    "evaluate",
    "fingerprint",
    "idempotency_key",
    "list_alerts",
]

_INTERNAL = ("_notify_seq", "_incident_at")


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """One alert candidate after evaluation (for logs and the CLI)."""

    rule: str
    fingerprint: str
    labels: Mapping[str, str]
    condition: bool
    state: str
    announced: Announcement | None
    muted: str | None  # "silenced" | "inhibited" | None
    summary: str


@dataclass(frozen=True, slots=True)
class EvalReport:
    """What one evaluation saw and did."""

    at: datetime
    outcomes: list[RuleOutcome] = field(default_factory=list)

    @property
    def announcements(self) -> list[tuple[str, Announcement]]:
        return [(o.fingerprint, o.announced) for o in self.outcomes if o.announced]

    @property
    def firing(self) -> list[RuleOutcome]:
        return [o for o in self.outcomes if o.state == "firing"]


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """A stable id of an alert: its rule name and labels."""
    canonical = json.dumps({"rule": rule, "labels": dict(sorted(labels.items()))},
                           sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def idempotency_key(fp: str, kind: str, at: datetime | None, seq: int) -> str:
    """The outbox key: sha256 of (fingerprint, kind, fired_at or resolved_at, sequence)."""
    stamp = at.isoformat() if at else ""
    return hashlib.sha256(f"{fp}|{kind}|{stamp}|{seq}".encode()).hexdigest()[:40]


def _timing(rule: RuleConfig) -> Timing:
    return Timing(rule.for_, rule.repeat_interval, rule.resolve_after, rule.rearm_after)


def _state_of(row: Any) -> AlertState:
    ann = dict(row.annotations or {})
    incident = ann.get("_incident_at")
    return AlertState(
        state=row.state, active_since=row.active_since, fired_at=row.fired_at,
        resolved_at=row.resolved_at, last_true_at=row.last_true_at,
        last_notified_at=row.last_notified_at, last_eval_at=row.last_eval_at,
        notify_seq=int(ann.get("_notify_seq", 0)),
        incident_at=datetime.fromisoformat(incident) if incident else None,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _public(annotations: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in annotations.items() if k not in _INTERNAL}


def _payload(
    fp: str, rule: RuleConfig, labels: Mapping[str, str], state: AlertState,
    finding: Finding | None, stored: Any,
) -> dict[str, Any]:
    if finding is not None:
        summary, value = finding.summary, finding.value
        threshold, baseline = finding.threshold, finding.baseline
        annotations = dict(finding.annotations)
    else:
        summary = str(stored.summary or "") if stored is not None else ""
        value = float(stored.value or 0.0) if stored is not None else 0.0
        threshold = baseline = None
        annotations = _public(dict(stored.annotations or {})) if stored is not None else {}
    return {
        "fingerprint": fp, "rule": rule.name, "kind": rule.kind, "labels": dict(labels),
        "state": "resolved" if state.state == "resolved" else "firing",
        "summary": summary, "value": value, "threshold": threshold, "baseline": baseline,
        "active_since": _iso(state.active_since), "fired_at": _iso(state.fired_at),
        "resolved_at": _iso(state.resolved_at), "annotations": annotations,
    }


def _ordered(rules: Sequence[RuleConfig]) -> list[RuleConfig]:
    # flatline first: its firing alerts decide which spike alerts are inhibited
    return sorted(rules, key=lambda r: 0 if isinstance(r, FlatlineRule) else 1)


def _inhibited(rule: RuleConfig, labels: Mapping[str, str], dead: set[str | None]) -> bool:
    if not isinstance(rule, SpikeRule) or not dead:
        return False
    return None in dead or labels.get("tag") in dead


def evaluate(engine: Engine, config: Config, now: datetime) -> EvalReport:
    """Evaluate every rule in *config* at *now* (aware UTC) and store the result atomically."""
    if now.tzinfo is None:
        raise ValueError("evaluate(now=...) needs an aware UTC datetime")
    report = EvalReport(at=now)
    with engine.begin() as conn:
        silences_now = active_silences(conn, now)
        dead_tags: set[str | None] = set()
        for rule in _ordered(config.rules):
            findings = evaluate_rule(conn, rule, config, now)
            for outcome in _apply(conn, rule, findings, now, silences_now, dead_tags):
                report.outcomes.append(outcome)
                if isinstance(rule, FlatlineRule) and outcome.state == "firing":
                    dead_tags.add(outcome.labels.get("tag"))
    return report


def _apply(
    conn: Connection, rule: RuleConfig, findings: list[Finding], now: datetime,
    silences_now: list[Any], dead_tags: set[str | None],
) -> list[RuleOutcome]:
    stored = {row.fingerprint: row for row in conn.execute(
        select(alerts).where(alerts.c.rule == rule.name).order_by(alerts.c.id))}
    by_fp: dict[str, tuple[dict[str, str], Finding | None]] = {}
    for found in findings:
        found_labels = {**rule.labels, **found.labels}
        by_fp[fingerprint(rule.name, found_labels)] = (found_labels, found)
    for old_fp, old_row in stored.items():
        if old_fp not in by_fp:  # no longer a candidate: its condition is false
            by_fp[old_fp] = (dict(old_row.labels), None)
    timing = _timing(rule)
    outcomes: list[RuleOutcome] = []
    for fp, (labels, finding) in by_fp.items():
        row = stored.get(fp)
        condition = finding is not None and finding.active
        if row is None and not condition:
            # nothing to remember about an alert that never started; still reported
            outcomes.append(RuleOutcome(rule.name, fp, labels, False, "inactive", None, None,
                                        finding.summary if finding else ""))
            continue
        muted: str | None = None
        if is_silenced(silences_now, rule.name, labels):
            muted = "silenced"
        elif _inhibited(rule, labels, dead_tags):
            muted = "inhibited"
        prev = _state_of(row) if row is not None else AlertState()
        new, announcement = step(prev, condition, now, timing, muted=muted is not None)
        if new is not prev:
            alert_id = _save(conn, fp, rule, labels, new, finding, row)
            if announcement is not None:
                _enqueue(conn, alert_id, fp, rule, labels, new, finding, row, announcement, now)
        summary = finding.summary if finding else str(row.summary or "") if row else ""
        outcomes.append(RuleOutcome(rule.name, fp, labels, condition, new.state, announcement,
                                    muted, summary))
    return outcomes


def _save(
    conn: Connection, fp: str, rule: RuleConfig, labels: Mapping[str, str], state: AlertState,
    finding: Finding | None, row: Any,
) -> int:
    annotations: dict[str, Any] = (
        dict(finding.annotations) if finding is not None
        else dict(row.annotations or {}) if row is not None else {}
    )
    annotations["_notify_seq"] = state.notify_seq
    annotations["_incident_at"] = _iso(state.incident_at)
    values: dict[str, Any] = {
        "state": state.state, "active_since": state.active_since, "fired_at": state.fired_at,
        "resolved_at": state.resolved_at, "last_true_at": state.last_true_at,
        "last_notified_at": state.last_notified_at, "last_eval_at": state.last_eval_at,
        "annotations": annotations, "labels": dict(labels),
    }
    if finding is not None:
        values.update(value=finding.value, summary=finding.summary)
    if row is None:
        values.update(fingerprint=fp, rule=rule.name)
        return int(conn.execute(alerts.insert().values(**values).returning(alerts.c.id))
                   .scalar_one())
    conn.execute(update(alerts).where(alerts.c.id == row.id).values(**values))
    return int(row.id)


def _enqueue(
    conn: Connection, alert_id: int, fp: str, rule: RuleConfig, labels: Mapping[str, str],
    state: AlertState, finding: Finding | None, row: Any, kind: Announcement, now: datetime,
) -> None:
    at = state.resolved_at if kind == "resolved" else state.fired_at
    payload = _payload(fp, rule, labels, state, finding, row)
    stmt = insert_for(conn, outbox).values(
        idempotency_key=idempotency_key(fp, kind, at, state.notify_seq), kind=kind,
        alert_id=alert_id, payload=payload, created_at=now,
    ).on_conflict_do_nothing(index_elements=[outbox.c.idempotency_key])
    conn.execute(stmt)


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


def list_alerts(
    engine: Engine, now: datetime, *, recent: timedelta = timedelta(hours=24),
    include_all: bool = False,
) -> list[AlertRow]:
    """Firing and pending alerts, plus those resolved within *recent* (or every alert)."""
    stmt = select(alerts).order_by(alerts.c.state, alerts.c.fired_at.desc(), alerts.c.id)
    out: list[AlertRow] = []
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            keep = include_all or row.state in ("firing", "pending") or (
                row.state == "resolved" and row.resolved_at is not None
                and now - row.resolved_at <= recent
            )
            if keep:
                out.append(AlertRow(int(row.id), row.rule, dict(row.labels), row.state,
                                    row.active_since, row.fired_at, row.resolved_at,
                                    row.value, str(row.summary or "")))
    order = {"firing": 0, "pending": 1, "resolved": 2, "inactive": 3}
    out.sort(key=lambda a: (order.get(a.state, 9), -(a.fired_at.timestamp() if a.fired_at else 0)))
    return out
