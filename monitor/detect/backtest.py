"""``monitor backtest``: replay the configured rules over stored history, sending nothing.

For every rule and tag the stored series is read ONCE (one statement per tag
and kind through :mod:`monitor.store.windows` / :mod:`monitor.store.history`)
and replayed: the spike rule through the streaming
:class:`~monitor.detect.seasonal.SpikeDetector`, one bucket at a time; the
sentiment-shift and co-tag rules through their vectorised conditions
(:mod:`monitor.detect.shiftrules`, the same arithmetic the live rules use).
Each alert's condition at every 5-minute instant then goes through the real
lifecycle (:func:`monitor.detect.lifecycle.step`, the function the engine
calls) with the rule's ``for``/``resolve_after``/``repeat_interval``/
``rearm_after``. Nothing is written: no ``alerts`` row, no outbox row.

Instants are the bucket boundaries: a rule judges complete buckets only, so
its findings change only there. :func:`naive_replay` is the reference the
benchmark and the tests hold this to: ``evaluate_rule`` at every instant.

Not replayed: ``flatline`` (it reads the collectors' current health, of which
no history is stored), silences (they are operational, not part of a rule),
and hence the flatline → spike inhibition. Spike detectors start at the
span's start minus the detector's history (or at the tag's first bucket), so
very long spans may differ from the live rule's fresh detector in the first
days; on the live rule's own history window they see the same buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from monitor.detect.engine import explained, fingerprint
from monitor.detect.lifecycle import AlertState, Timing, step
from monitor.detect.registry import evaluate_rule
from monitor.detect.rules import (
    Finding,
    _tags,
    cotag_excluded,
    cotag_findings,
    sentiment_finding,
    spike_finding,
    spike_history,
    spike_params,
)
from monitor.detect.seasonal import SpikeDetector
from monitor.detect.settings import (
    EmergingCotagRule,
    RuleConfig,
    RuleContext,
    SentimentShiftRule,
    SpikeRule,
)
from monitor.detect.shiftrules import ToneSteps, cotag_steps, history_span, tone_steps
from monitor.store.buckets import bucket_start
from monitor.store.history import cotag_buckets, tone_buckets
from monitor.store.schema import BUCKET_SECONDS
from monitor.store.windows import bucket_posts, first_bucket

__all__ = ["BacktestAlert", "BacktestResult", "backtest", "instants", "naive_replay"]

BUCKET = timedelta(seconds=BUCKET_SECONDS)
REPLAYED = ("spike", "sentiment_shift", "emerging_cotag")


@dataclass
class BacktestAlert:
    """One alert episode the rule would have raised: fired, announced, resolved (or still on)."""

    rule: str
    labels: dict[str, str]
    fired_at: datetime
    resolved_at: datetime | None = None
    announcements: list[tuple[datetime, str]] = field(default_factory=list)
    summary: str = ""
    explanation: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.labels.get("tag", "")


@dataclass
class BacktestResult:
    """Every episode, the rules skipped (with why), and the span replayed."""

    since: datetime
    until: datetime
    steps: int
    alerts: list[BacktestAlert] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    replayed: list[tuple[str, str]] = field(default_factory=list)  # (rule, tag)

    @property
    def weeks(self) -> float:
        return max((self.until - self.since).total_seconds() / (7 * 86400), 1e-9)

    def summary(self) -> list[dict[str, Any]]:
        """Per rule and tag: episodes, pages (first announcements) and alerts per week."""
        rows = []
        for rule, tag in self.replayed:
            mine = [a for a in self.alerts if a.rule == rule and a.tag == tag]
            pages = sum(1 for a in mine for _, kind in a.announcements if kind == "firing")
            rows.append({"rule": rule, "tag": tag, "alerts": len(mine), "pages": pages,
                         "per_week": round(len(mine) / self.weeks, 2),
                         "firing_hours": round(sum(
                             ((a.resolved_at or self.until) - a.fired_at).total_seconds()
                             for a in mine) / 3600, 1)})
        return rows


def instants(since: datetime, until: datetime) -> list[datetime]:
    """The evaluation instants of ``[since, until]``: every bucket boundary."""
    first = bucket_start(since)
    if first < since:
        first += BUCKET
    out = []
    at = first
    while at <= until:
        out.append(at)
        at += BUCKET
    return out


def _timing(rule: RuleConfig) -> Timing:
    return Timing(rule.for_, rule.repeat_interval, rule.resolve_after, rule.rearm_after)


class _Lifecycle:
    """The lifecycle of every alert of one rule, in memory, recording its episodes."""

    def __init__(self, rule: RuleConfig, out: list[BacktestAlert]) -> None:
        self.rule = rule
        self.timing = _timing(rule)
        self.states: dict[str, AlertState] = {}
        self.open: dict[str, BacktestAlert] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.out = out

    def advance(self, labels: Mapping[str, str], condition: bool, now: datetime,
                finding: Callable[[], Finding | None]) -> None:
        merged = {**self.rule.labels, **labels}
        fp = fingerprint(self.rule.name, merged)
        prev = self.states.get(fp)
        if prev is None:
            if not condition:
                return  # the engine stores nothing for an alert that never started
            prev = AlertState()
            self.labels[fp] = dict(labels)
        new, kind = step(prev, condition, now, self.timing)
        self.states[fp] = new
        if new.state == "firing" and new.fired_at == now:
            found = finding()
            episode = BacktestAlert(self.rule.name, dict(merged), now)
            if found is not None:
                episode.summary = found.summary
                episode.explanation = dict(explained(self.rule, found, now).get(
                    "explanation") or {})
            self.open[fp] = episode
            self.out.append(episode)
        episode_now = self.open.get(fp)
        if kind is not None and episode_now is not None:
            episode_now.announcements.append((now, kind))
        if new.state == "resolved" and new.resolved_at == now and episode_now is not None:
            episode_now.resolved_at = now
            del self.open[fp]

    def known(self) -> Iterable[str]:
        return self.states


def _spike(engine: Engine, rule: SpikeRule, tag: str, times: Sequence[datetime],
           life: _Lifecycle) -> None:
    history = spike_history(rule)
    first = first_bucket(engine, tag)
    end = times[-1]
    if first is None or first >= end:
        return
    start = max(first, times[0] - history)
    counts = bucket_posts(engine, tag, start, end)
    detector = SpikeDetector(spike_params(rule))
    at = start
    when = {t: i for i, t in enumerate(times)}
    while at < end:
        verdict = detector.update(at, float(counts.get(at, 0)))
        now = at + BUCKET
        at = now
        if now not in when:
            continue
        fired = bool(verdict.is_spike) and verdict.expected is not None

        def finding(v: Any = verdict) -> Finding:
            return spike_finding(tag, v, rule)

        life.advance({"tag": tag}, fired, now, finding)


def _sentiment(engine: Engine, rule: SentimentShiftRule, tags: list[str],
               times: Sequence[datetime], lives: _Lifecycle) -> None:
    start = bucket_start(times[0]) - history_span(rule)
    series = tone_buckets(engine, tags, start, times[-1])
    ends = np.array([int((t - start).total_seconds()) // BUCKET_SECONDS for t in times])
    for tag in tags:
        steps = tone_steps(rule, series[tag], ends)
        if not steps.active.any():
            continue  # never true: the engine would never store this alert
        active = steps.active.tolist()
        for i in range(int(np.argmax(steps.active)), len(times)):
            now = times[i]
            lives.advance({"tag": tag}, active[i], now, _tone_finder(rule, tag, steps, i, now))


def _tone_finder(rule: SentimentShiftRule, tag: str, steps: ToneSteps, i: int,
                 now: datetime) -> Callable[[], Finding | None]:
    return lambda: sentiment_finding(rule, tag, steps, i, now)


def _same(found: Finding) -> Callable[[], Finding | None]:
    return lambda: found


def _none() -> Finding | None:
    return None


def _cotag(engine: Engine, rule: EmergingCotagRule, config: RuleContext, tags: list[str],
           times: Sequence[datetime], life: _Lifecycle) -> None:
    start = bucket_start(times[0]) - history_span(rule)
    excluded = cotag_excluded(rule, config)
    ends = np.array([int((t - start).total_seconds()) // BUCKET_SECONDS for t in times])
    for tag in tags:
        series = cotag_buckets(engine, tag, start, times[-1], min_posts=rule.min_posts)
        steps = cotag_steps(rule, series, ends, excluded)
        for j, other in enumerate(steps.others):
            if not steps.active[j].any():
                continue  # never true: the engine would never store this alert
            active = steps.active[j].tolist()
            for i in range(int(np.argmax(steps.active[j])), len(times)):
                now = times[i]
                def finding(i: int = i, now: datetime = now, other: str = other,
                            tag: str = tag, steps: Any = steps) -> Finding | None:
                    found = cotag_findings(rule, tag, steps, i, now)
                    return next((f for f in found if f.labels.get("cotag") == other), None)

                life.advance({"tag": tag, "cotag": other}, active[i], now, finding)


def _selected(config: Any, rules: Sequence[str] | None) -> list[RuleConfig]:
    chosen = [r for r in config.rules if not rules or r.name in rules]
    return chosen


def backtest(
    engine: Engine, config: Any, since: datetime, until: datetime, *,
    rules: Sequence[str] | None = None, tags: Sequence[str] | None = None,
) -> BacktestResult:
    """Replay *config*'s rules (or those named in *rules*) over ``[since, until]``."""
    times = instants(since, until)
    result = BacktestResult(since, until, len(times))
    if not times:
        return result
    for rule in _selected(config, rules):
        if rule.kind not in REPLAYED:
            result.skipped[rule.name] = (
                "not replayed: a flatline rule reads the collectors' current health, "
                "which has no stored history" if rule.kind == "flatline"
                else f"not replayed: kind {rule.kind!r} has no replay")
            continue
        rule_tags = [t for t in _tags(rule, config) if not tags or t in tags]
        life = _Lifecycle(rule, result.alerts)
        if isinstance(rule, SpikeRule):
            for tag in rule_tags:
                _spike(engine, rule, tag, times, life)
        elif isinstance(rule, SentimentShiftRule):
            _sentiment(engine, rule, rule_tags, times, life)
        elif isinstance(rule, EmergingCotagRule):
            _cotag(engine, rule, config, rule_tags, times, life)
        result.replayed.extend((rule.name, t) for t in rule_tags)
    result.alerts.sort(key=lambda a: (a.fired_at, a.rule, sorted(a.labels.items())))
    return result


def naive_replay(
    engine: Engine, config: Any, since: datetime, until: datetime, *,
    rules: Sequence[str] | None = None, tags: Sequence[str] | None = None,
) -> BacktestResult:
    """The reference: ``evaluate_rule`` against the store at every instant (slow)."""
    times = instants(since, until)
    result = BacktestResult(since, until, len(times))
    chosen = [r for r in _selected(config, rules) if r.kind in REPLAYED]
    lives = {r.name: _Lifecycle(r, result.alerts) for r in chosen}
    with engine.connect() as conn:
        for now in times:
            for rule in chosen:
                life = lives[rule.name]
                findings = [f for f in evaluate_rule(conn, rule, config, now)
                            if not tags or f.labels.get("tag") in tags]
                seen = set()
                for f in findings:
                    merged = {**rule.labels, **f.labels}
                    seen.add(fingerprint(rule.name, merged))
                    life.advance(f.labels, f.active, now, _same(f))
                for fp in list(life.known()):
                    if fp not in seen:  # no longer a candidate: its condition is false
                        life.advance(life.labels[fp], False, now, _none)
    for rule in chosen:
        result.replayed.extend((rule.name, t) for t in _tags(rule, config)
                               if not tags or t in tags)
    result.alerts.sort(key=lambda a: (a.fired_at, a.rule, sorted(a.labels.items())))
    return result
