"""Rule conditions: each kind reads the store at an instant and returns findings.

A :class:`Finding` is one alert candidate (its identifying labels, whether the
condition holds now, and the numbers behind it). Rules only read, through the
store's read functions (:mod:`monitor.store.windows`, :mod:`monitor.store.queries`,
:mod:`monitor.store.health`) on the engine's connection; the lifecycle and the
writes live in :mod:`monitor.detect.engine`. Every rule judges complete
buckets only: the bucket holding *now* is still filling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection

from monitor.detect.seasonal import SpikeDetector, SpikeParams
from monitor.detect.settings import (
    EmergingCotagRule,
    FlatlineRule,
    RuleConfig,
    RuleContext,
    SentimentShiftRule,
    SpikeRule,
)
from monitor.durations import format_duration
from monitor.store.buckets import bucket_start
from monitor.store.health import read_status
from monitor.store.queries import cotags
from monitor.store.schema import BUCKET_SECONDS
from monitor.store.windows import bucket_posts, first_bucket, window_totals

__all__ = ["Finding", "spike_params", "stream_tag"]

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


def spike_params(rule: SpikeRule) -> SpikeParams:
    """The detector parameters of a spike rule (shared with the NAB benchmark)."""
    return SpikeParams(
        factor=rule.factor,
        min_posts=rule.min_posts,
        min_z=rule.min_z,
        smooth=rule.smooth,
        bucket=BUCKET,
        baseline_days=rule.baseline_days,
        min_history=rule.min_history,
        rarity=rule.rarity,
        rarity_days=rule.rarity_days,
        rarity_margin=rule.rarity_margin,
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


def _spike(conn: Connection, rule: SpikeRule, config: RuleContext, now: datetime) -> list[Finding]:
    end = bucket_start(now)  # first bucket not yet complete
    history = timedelta(days=max(rule.baseline_days, rule.rarity_days)) + rule.smooth * BUCKET
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
            known = format_duration(end - first)
            out.append(Finding(
                labels, False, verdict.level,
                f"#{tag}: insufficient history ({known} of {format_duration(rule.min_history)})",
                annotations={"insufficient_history": f"{known} of data"},
            ))
            continue
        threshold = max(verdict.expected * rule.factor, rule.min_posts)
        ratio = verdict.ratio or 0.0
        summary = (
            f"#{tag}: {verdict.level:.1f} posts per 5 min, {ratio:.1f}x the usual "
            f"{verdict.expected:.1f} for this hour"
        )
        out.append(Finding(
            labels, verdict.is_spike, verdict.level, summary, threshold, verdict.expected,
            {"ratio": round(ratio, 3), "z": round(verdict.z or 0.0, 2),
             "score": round(verdict.score, 3), "bucket": verdict.at.isoformat()},
        ))
    return out


# ------------------------------------------------------------------ sentiment


def _sentiment(
    conn: Connection, rule: SentimentShiftRule, config: RuleContext, now: datetime
) -> list[Finding]:
    end = bucket_start(now)
    split = end - rule.window
    out: list[Finding] = []
    tags = _tags(rule, config)
    recent = window_totals(conn, tags, split, end)
    before = window_totals(conn, tags, split - rule.baseline, split)
    for tag in tags:
        n_now, mean_now = recent[tag].scored, recent[tag].mean_compound
        n_base, mean_base = before[tag].scored, before[tag].mean_compound
        labels = {"tag": tag}
        window = format_duration(rule.window)
        if mean_now is None or mean_base is None or min(n_now, n_base) < rule.min_scored:
            out.append(Finding(
                labels, False, mean_now or 0.0,
                f"#{tag}: too few scored posts ({n_now} in {window}, {n_base} in baseline; "
                f"need {rule.min_scored})",
                rule.threshold, mean_base, {"scored": n_now, "baseline_scored": n_base},
            ))
            continue
        shift = mean_now - mean_base
        active = {
            "both": abs(shift) >= rule.threshold,
            "down": -shift >= rule.threshold,
            "up": shift >= rule.threshold,
        }[rule.direction]
        summary = (
            f"#{tag}: mean sentiment {mean_now:+.2f} over {window} vs {mean_base:+.2f} "
            f"baseline ({shift:+.2f}, {n_now} scored posts)"
        )
        out.append(Finding(labels, active, mean_now, summary, rule.threshold, mean_base,
                           {"shift": round(shift, 4), "scored": n_now,
                            "baseline_scored": n_base}))
    return out


# ------------------------------------------------------------------ co-tags


def _cotag(
    conn: Connection, rule: EmergingCotagRule, config: RuleContext, now: datetime
) -> list[Finding]:
    end = bucket_start(now)
    split = end - rule.window
    followed = set(config.hashtags) | set(rule.tags)
    ignored = {t.lstrip("#").casefold() for t in rule.ignore}
    out: list[Finding] = []
    for tag in _tags(rule, config):
        found = cotags(conn, tag, split, end, 50 + len(followed), tone=False)
        candidates = [
            c for c in found
            if c.tag not in followed and c.tag not in ignored and c.posts >= rule.min_posts
        ][: rule.max_candidates]
        before = {c.tag: c.share for c in cotags(
            conn, tag, split - rule.baseline, split, None, only=[c.tag for c in candidates],
            tone=False)}
        for candidate in candidates:
            other, n, share, total = (candidate.tag, candidate.posts, candidate.share,
                                      candidate.tag_posts)
            base_share = before.get(other, 0.0)
            active = share >= rule.min_share and share >= rule.growth * base_share
            summary = (
                f"#{other} is on {share:.0%} of #{tag} posts over "
                f"{format_duration(rule.window)} (was {base_share:.1%})"
            )
            out.append(Finding(
                {"tag": tag, "cotag": other}, active, share, summary, rule.min_share,
                base_share, {"cotag": other, "share": round(share, 4), "posts": n,
                             "tag_posts": total},
            ))
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
        out.append(Finding(
            labels, active, silent if silent != float("inf") else -1.0,
            f"{row.source} {row.stream}: {why} for {since}",
            rule.silent_for.total_seconds(), None,
            {"reason": why, "last_post_at": last_post.isoformat() if last_post else "never",
             "last_success_at": last_ok.isoformat() if last_ok else "never"},
        ))
    return out

