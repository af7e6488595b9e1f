"""Rule conditions: each kind reads the store at an instant and returns findings.

A :class:`Finding` is one alert candidate (its identifying labels, whether the
condition holds now, and the numbers behind it). Rules only read, through the
store's read functions (:mod:`monitor.store.windows`, :mod:`monitor.store.queries`,
:mod:`monitor.store.health`) on the engine's connection; the lifecycle and the
writes live in :mod:`monitor.detect.engine`. Every rule judges complete
buckets only: the bucket holding *now* is still filling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitor.detect.explain import Explanation, rule_params
from monitor.detect.seasonal import SpikeAssessment, SpikeDetector, SpikeParams
from monitor.detect.settings import (
    EmergingCotagRule,
    FlatlineRule,
    RuleConfig,
    RuleContext,
    SentimentShiftRule,
    SpikeRule,
)
from monitor.detect.shiftrules import (
    CotagSteps,
    ToneSteps,
    cotag_steps,
    grid_end,
    history_span,
    tone_steps,
)
from monitor.detect.shifts import tail
from monitor.detect.warmup import young_summary
from monitor.durations import format_duration
from monitor.store.buckets import bucket_start
from monitor.store.health import read_status
from monitor.store.history import cotag_buckets, tone_buckets
from monitor.store.schema import BUCKET_SECONDS
from monitor.store.windows import bucket_posts, first_bucket

__all__ = ["Finding", "cotag_excluded", "cotag_findings", "sentiment_finding", "spike_params",
           "stream_tag"]

BUCKET = timedelta(seconds=BUCKET_SECONDS)
Annotation = str | float | int


@dataclass(frozen=True, slots=True)
class Finding:
    """One alert candidate of a rule at an instant."""

    labels: Mapping[str, str]
    active: bool
    value: float
    summary: str
    threshold: float | None = None
    baseline: float | None = None
    annotations: Mapping[str, Annotation] = field(default_factory=dict)
    # observed / expected (and from which window) / z and tail probability / the
    # rule's parameters (monitor.detect.explain); None: the engine derives one
    explanation: Mapping[str, Any] | None = None


def spike_params(rule: SpikeRule) -> SpikeParams:
    """The detector parameters of a spike rule (shared with the NAB benchmark)."""
    return SpikeParams(
        factor=rule.factor,
        min_posts=rule.min_posts,
        min_z=rule.min_z,
        surprise=rule.surprise,
        novelty=rule.novelty,
        agree=rule.agree,
        agree_z=rule.agree_z,
        smooth=rule.smooth,
        windows=tuple(rule.windows),
        bucket=BUCKET,
        counts=True,
        baseline_days=rule.baseline_days,
        history_days=rule.history_days,
        min_history=rule.min_history,
    )


def _tags(rule: RuleConfig, config: RuleContext) -> list[str]:
    return list(rule.tags) if rule.tags else list(config.hashtags)


def stream_tag(stream: str) -> str | None:
    """The tag a stream follows ("host#metoo" → "metoo"); None for a firehose ("*")."""
    _, sep, tag = stream.rpartition("#")
    if not sep or tag in ("", "*"):
        return None
    return tag


# ------------------------------------------------------------------ spike


def spike_history(rule: SpikeRule) -> timedelta:
    """How much of a tag's past a fresh detector is fed: its longest look-back. The
    live rule and ``monitor backtest`` both use this, so both judge alike."""
    return (timedelta(days=max(rule.baseline_days, rule.history_days))
            + max([rule.smooth * BUCKET, *rule.windows]))


def spike_finding(tag: str, verdict: SpikeAssessment, rule: SpikeRule) -> Finding:
    """The finding for a judged bucket of *tag* (the detector is past its warm-up).

    The numbers are those of the decisive window (the one whose weakest
    criterion was strongest): posts per bucket over it, the usual over it, the
    z and its tail probability under the count model, and how rare that z is
    among the tag's own recent ones.
    """
    expected = verdict.expected or 0.0
    threshold = max(expected * rule.factor, rule.min_posts)
    ratio = verdict.ratio or 0.0
    span = format_duration(verdict.window * BUCKET)
    summary = (f"#{tag}: {verdict.level:.1f} posts per 5 min over {span}, {ratio:.1f}x the "
               f"usual {expected:.1f} for this hour")
    end = verdict.at + BUCKET  # the judged bucket is complete
    memory = (timedelta(days=rule.baseline_days) if verdict.seasonal
              else timedelta(hours=SpikeParams().flat_hours))
    how = ("the usual for this time of day and weekday" if verdict.seasonal
           else "the recent level (the tag shows no daily rhythm yet)")
    explanation = Explanation(
        observed=verdict.level,
        observed_what=f"posts per 5 min over the last {span}",
        expected=verdict.expected,
        expected_what=(f"{how}, per 5 min over the same {span}; z {verdict.z or 0.0:.1f} "
                       f"(count model and the tag's own noise), rarer than "
                       f"{verdict.tail or 0.0:.2g} of its recent deviations"),
        baseline_from=end - memory, baseline_until=end - verdict.window * BUCKET,
        z=verdict.z, p_value=verdict.p_value, params=rule_params(rule))
    return Finding(
        {"tag": tag}, verdict.is_spike, verdict.level, summary, threshold, verdict.expected,
        {"ratio": round(ratio, 3), "z": round(verdict.z or 0.0, 2),
         "score": round(verdict.score, 3), "bucket": verdict.at.isoformat(),
         "window": span, "p_value": float(f"{verdict.p_value or 0.0:.3g}"),
         "surprise": round(verdict.surprise or 0.0, 2)},
        explanation.as_dict(),
    )


def _spike(conn: Connection, rule: SpikeRule, config: RuleContext, now: datetime) -> list[Finding]:
    end = bucket_start(now)  # first bucket not yet complete
    history = spike_history(rule)
    out: list[Finding] = []
    for tag in _tags(rule, config):
        first = first_bucket(conn, tag)
        labels = {"tag": tag}
        if first is None or first >= end:
            out.append(Finding(labels, False, 0.0, f"#{tag}: no posts yet",
                               annotations={"insufficient_history": "no posts yet"}))
            continue
        start = max(first, end - history)
        counts = {at: float(n) for at, n in bucket_posts(conn, tag, start, end).items()}
        detector = SpikeDetector(spike_params(rule))
        at = start
        verdict = None
        while at < end:
            verdict = detector.update(at, counts.get(at, 0.0))
            at += BUCKET
        assert verdict is not None
        if verdict.young or verdict.expected is None:
            # what it lacks and for how long, asked of the detector (monitor.detect.warmup)
            summary, lacking = young_summary(tag, detector, first=first, end=end, step=BUCKET,
                                             min_history=rule.min_history)
            out.append(Finding(labels, False, verdict.level, summary,
                               annotations={"insufficient_history": lacking}))
            continue
        out.append(spike_finding(tag, verdict, rule))
    return out


# ------------------------------------------------------------------ sentiment


def _sentiment(
    conn: Connection, rule: SentimentShiftRule, config: RuleContext, now: datetime
) -> list[Finding]:
    end = bucket_start(now)
    start = end - history_span(rule)
    tags = _tags(rule, config)
    series = tone_buckets(conn, tags, start, end)
    ends = np.array([grid_end(start, end)], dtype=np.int64)
    out: list[Finding] = []
    for tag in tags:
        steps = tone_steps(rule, series[tag], ends)
        out.append(sentiment_finding(rule, tag, steps, 0, end))
    return out


def sentiment_finding(rule: SentimentShiftRule, tag: str, steps: ToneSteps, i: int,
                      end: datetime) -> Finding:
    """The finding of step *i* of *steps* (the instant *end*): shared with the backtest."""
    t = steps.test
    n_now, n_base = int(t.n_now[i]), int(t.n_base[i])
    mean_now, mean_base = float(t.mean_now[i]), float(t.mean_base[i])
    labels = {"tag": tag}
    window = format_duration(rule.window)
    if not steps.enough[i] or math.isnan(mean_now) or math.isnan(mean_base):
        return Finding(
            labels, False, 0.0 if math.isnan(mean_now) else mean_now,
            f"#{tag}: too few scored posts ({n_now} in {window}, {n_base} in baseline; "
            f"need {rule.min_scored})",
            rule.min_z, None if math.isnan(mean_base) else mean_base,
            {"scored": n_now, "baseline_scored": n_base})
    shift = mean_now - mean_base
    z = float(t.z[i])
    summary = (
        f"#{tag}: mean sentiment {mean_now:+.2f} over {window} vs {mean_base:+.2f} "
        f"baseline ({shift:+.2f}, z={z:+.1f}, {n_now} scored posts)"
    )
    split = end - rule.window
    explanation = Explanation(
        observed=mean_now, observed_what=f"mean compound of {n_now} scored posts over {window}",
        expected=mean_base,
        expected_what=(f"mean compound of {n_base} scored posts; spread "
                       f"{math.sqrt(float(t.within[i])):.3f} per post, "
                       f"{math.sqrt(float(t.tau2[i])):.3f} between {window} windows"),
        baseline_from=end - history_span(rule), baseline_until=split,
        z=z, p_value=tail(z, rule.direction), params=rule_params(rule))
    return Finding(labels, bool(steps.active[i]), mean_now, summary, rule.min_z, mean_base,
                   {"shift": round(shift, 4), "z": round(z, 2), "scored": n_now,
                    "baseline_scored": n_base}, explanation.as_dict())


# ------------------------------------------------------------------ co-tags


def cotag_excluded(rule: EmergingCotagRule, config: RuleContext) -> set[str]:
    """Tags never reported as emerging: the followed ones and the rule's ``ignore`` list."""
    return (set(config.hashtags) | set(rule.tags)
            | {t.lstrip("#").casefold() for t in rule.ignore})


def _cotag(
    conn: Connection, rule: EmergingCotagRule, config: RuleContext, now: datetime
) -> list[Finding]:
    end = bucket_start(now)
    start = end - history_span(rule)
    excluded = cotag_excluded(rule, config)
    ends = np.array([grid_end(start, end)], dtype=np.int64)
    out: list[Finding] = []
    for tag in _tags(rule, config):
        # the window first (every co-tag), then the baseline of the candidates only
        recent = cotag_buckets(conn, tag, end - rule.window, end, min_posts=rule.min_posts)
        wanted = sorted(set(recent.pairs) - excluded)
        series = cotag_buckets(conn, tag, start, end, only=wanted)
        steps = cotag_steps(rule, series, ends, excluded)
        out.extend(cotag_findings(rule, tag, steps, 0, end))
    return out


def cotag_findings(rule: EmergingCotagRule, tag: str, steps: CotagSteps, i: int,
                   end: datetime) -> list[Finding]:
    """The findings (one per candidate) of step *i*: shared with the backtest."""
    ranked = sorted((j for j in range(len(steps.others)) if steps.candidate[j, i]),
                    key=lambda j: (-steps.posts[j, i], steps.others[j]))
    out = []
    window = format_duration(rule.window)
    for j in ranked:
        other, test = steps.others[j], steps.tests[j]
        n, total = int(steps.posts[j, i]), int(test.n_now[i])
        share = n / total if total else 0.0
        base_share = float(steps.base_share[j, i])
        z = float(test.z[i])
        summary = (f"#{other} is on {share:.0%} of #{tag} posts over {window} "
                   f"(was {base_share:.1%}, z={z:+.1f})")
        explanation = Explanation(
            observed=share, observed_what=f"share of {total} #{tag} posts over {window} "
                                          f"carrying #{other} ({n})",
            expected=base_share,
            expected_what=(f"share in the baseline ({int(test.n_base[i])} posts), spread "
                           f"{math.sqrt(float(test.tau2[i])):.3f} between {window} windows"),
            baseline_from=end - history_span(rule), baseline_until=end - rule.window,
            z=z, p_value=tail(z, "up"), params=rule_params(rule))
        out.append(Finding(
            {"tag": tag, "cotag": other}, bool(steps.active[j, i]), share, summary,
            rule.min_z, base_share,
            {"cotag": other, "share": round(share, 4), "posts": n, "tag_posts": total,
             "z": round(z, 2)}, explanation.as_dict()))
    return out


# ------------------------------------------------------------------ flatline


def _flatline(
    conn: Connection, rule: FlatlineRule, config: RuleContext, now: datetime
) -> list[Finding]:
    out: list[Finding] = []
    for row in read_status(conn, sources=rule.sources):
        if row.posts_collected < rule.min_collected:
            continue  # never yielded posts: nothing "normal" to miss
        tag = stream_tag(row.stream)
        if rule.tags and tag not in rule.tags:
            continue
        last_post = row.last_post_at
        last_ok = row.last_success_at
        quiet = (now - last_post).total_seconds() if last_post else float("inf")
        failing = (now - last_ok).total_seconds() if last_ok else float("inf")
        # either no post or no successful fetch for long enough: the stream is dead
        silent = max(quiet, failing)
        active = silent >= rule.silent_for.total_seconds()
        labels = {"source": row.source, "stream": row.stream}
        if tag is not None:
            labels["tag"] = tag
        why = "no successful fetch" if failing >= quiet else "no new posts"
        since = "ever" if silent == float("inf") else format_duration(
            timedelta(seconds=int(silent)))
        summary = f"{row.source} {row.stream}: {why} for {since}"
        annotations: dict[str, Annotation] = {
            "reason": why, "last_post_at": last_post.isoformat() if last_post else "never",
            "last_success_at": last_ok.isoformat() if last_ok else "never"}
        if row.failing and row.last_error:
            # the fetches themselves fail (e.g. every poll answers 503): say so and why,
            # not "no new posts", which reads as a quiet tag
            why = "every fetch failed"
            summary = f"{row.source} {row.stream}: {_failing_for(last_ok, now, row.last_error)}"
            annotations.update(reason=why, last_error=row.last_error[:300])
        out.append(Finding(
            labels, active, silent if silent != float("inf") else -1.0, summary,
            rule.silent_for.total_seconds(), None, annotations,
        ))
    return out


def _failing_for(last_ok: datetime | None, now: datetime, error: str) -> str:
    """``every fetch failed for 70s: HTTP 503 …`` (the error on one line, cut to 200)."""
    error = " ".join(error.split())
    if len(error) > 200:
        error = error[:199] + "…"
    if last_ok is None:
        return f"every fetch failed, none succeeded yet: {error}"
    seconds = max(int((now - last_ok).total_seconds()), 0)
    return f"every fetch failed for {format_duration(timedelta(seconds=seconds))}: {error}"
