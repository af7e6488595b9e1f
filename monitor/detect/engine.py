"""Evaluate every configured rule at an instant and keep alert state in SQL.

:func:`evaluate` runs in ONE transaction: it reads the rules' inputs, advances
each alert through :func:`monitor.detect.lifecycle.step`, writes the
``alerts`` rows (:mod:`monitor.store.alerts`), and writes an ``outbox`` row
for every announcement (:mod:`monitor.store.outbox`), so a state change and
its notification are stored together or not at all. The
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
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from monitor.config import Config
from monitor.detect.explain import fallback
from monitor.detect.lifecycle import AlertState, Announcement, Timing, step
from monitor.detect.registry import evaluate_rule
from monitor.detect.rules import Finding
from monitor.detect.settings import FlatlineRule, RuleConfig, SpikeRule
from monitor.detect.silences import is_silenced
from monitor.store.alerts import Silence, StoredAlert, active_silences, rule_alerts, save_alert
from monitor.store.outbox import enqueue

__all__ = [
    "EvalReport",
    "RuleOutcome",
    "evaluate",
    "explained",
    "fingerprint",
    "idempotency_key",
]


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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _payload(
    fp: str, rule: RuleConfig, labels: Mapping[str, str], state: AlertState,
    finding: Finding | None, stored: StoredAlert | None,
) -> dict[str, Any]:
    if finding is not None:
        summary, value = finding.summary, finding.value
        threshold, baseline = finding.threshold, finding.baseline
        annotations = explained(rule, finding, state.last_eval_at)
    else:
        summary = stored.summary if stored is not None else ""
        value = float(stored.value or 0.0) if stored is not None else 0.0
        threshold = baseline = None
        annotations = dict(stored.annotations) if stored is not None else {}
    return {
        "fingerprint": fp, "rule": rule.name, "kind": rule.kind, "labels": dict(labels),
        "state": "resolved" if state.state == "resolved" else "firing",
        "summary": summary, "value": value, "threshold": threshold, "baseline": baseline,
        "active_since": _iso(state.active_since), "fired_at": _iso(state.fired_at),
        "resolved_at": _iso(state.resolved_at), "annotations": annotations,
    }


def explained(rule: RuleConfig, finding: Finding, now: datetime | None) -> dict[str, Any]:
    """The finding's annotations with its ``explanation`` (derived when the rule gave none)."""
    out: dict[str, Any] = dict(finding.annotations)
    if finding.explanation is not None:
        out["explanation"] = dict(finding.explanation)
    elif now is not None:
        out["explanation"] = fallback(rule, now, finding.value, finding.baseline,
                                      finding.threshold, finding.annotations)
    return out


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
    silences_now: list[Silence], dead_tags: set[str | None],
) -> list[RuleOutcome]:
    stored = rule_alerts(conn, rule.name)
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
        prev = AlertState(**row.lifecycle) if row is not None else AlertState()
        new, announcement = step(prev, condition, now, timing, muted=muted is not None)
        if new is not prev:
            alert_id = _save(conn, fp, rule, labels, new, finding, row)
            if announcement is not None:
                _enqueue(conn, alert_id, fp, rule, labels, new, finding, row, announcement, now)
        summary = finding.summary if finding else row.summary if row else ""
        outcomes.append(RuleOutcome(rule.name, fp, labels, condition, new.state, announcement,
                                    muted, summary))
    return outcomes


def _save(
    conn: Connection, fp: str, rule: RuleConfig, labels: Mapping[str, str], state: AlertState,
    finding: Finding | None, row: StoredAlert | None,
) -> int:
    annotations: dict[str, Any] = (
        explained(rule, finding, state.last_eval_at) if finding is not None
        else dict(row.annotations) if row is not None else {}
    )
    return save_alert(
        conn, row.id if row is not None else None, fingerprint=fp, rule=rule.name,
        labels=labels, lifecycle=asdict(state), annotations=annotations,
        measured=(finding.value, finding.summary) if finding is not None else None,
    )


def _enqueue(
    conn: Connection, alert_id: int, fp: str, rule: RuleConfig, labels: Mapping[str, str],
    state: AlertState, finding: Finding | None, row: StoredAlert | None, kind: Announcement,
    now: datetime,
) -> None:
    at = state.resolved_at if kind == "resolved" else state.fired_at
    enqueue(conn, key=idempotency_key(fp, kind, at, state.notify_seq), kind=kind,
            payload=_payload(fp, rule, labels, state, finding, row), created_at=now,
            alert_id=alert_id)
