"""Rule conditions: each kind reads the store at an instant and returns findings.

A :class:`Finding` is one alert candidate (its identifying labels, whether the
condition holds now, and the numbers behind it). Rules only read
(``tag_buckets``, ``post_tags``, ``stream_health``); the lifecycle and the
writes live in :mod:`monitor.detect.engine`. Every rule judges complete
buckets only: the bucket holding *now* is still filling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, select

from monitor.config import Config
from monitor.detect.seasonal import SpikeDetector, SpikeParams
from monitor.detect.settings import (
    EmergingCotagRule,
    FlatlineRule,
    RuleConfig,
    SentimentShiftRule,
    SpikeRule,
)
from monitor.durations import format_duration
from monitor.store.repository import bucket_start
from monitor.store.schema import BUCKET_SECONDS, post_tags, stream_health, tag_buckets

__all__ = ["Finding", "evaluate_rule", "spike_params", "stream_tag"]

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


def _tags(rule: RuleConfig, config: Config) -> list[str]:
    return list(rule.tags) if rule.tags else list(config.hashtags)


def stream_tag(stream: str) -> str | None:
    """The tag a stream follows ("host#metoo" → "metoo"); None for a firehose ("*")."""
    _, sep, tag = stream.rpartition("#")
    if not sep or tag in ("", "*"):
        return None
    return tag


# ------------------------------------------------------------------ spike


def _spike(conn: Connection, rule: SpikeRule, config: Config, now: datetime) -> list[Finding]:
    end = bucket_start(now)  # first bucket not yet complete
    history = timedelta(days=max(rule.baseline_days, rule.rarity_days)) + rule.smooth * BUCKET
    out: list[Finding] = []
    for tag in _tags(rule, config):
        tb = tag_buckets.c
        first = conn.execute(select(func.min(tb.bucket_start)).where(tb.tag == tag)).scalar()
        labels = {"tag": tag}
        if first is None or first >= end:
            out.append(Finding(labels, False, 0.0, f"#{tag}: no posts yet",
                               annotations={"insufficient_history": "no posts yet"}))
            continue
        start = max(first, end - history)
        counts = {
            row.bucket_start: float(row.posts)
            for row in conn.execute(
                select(tb.bucket_start, tb.posts).where(
                    tb.tag == tag, tb.bucket_start >= start, tb.bucket_start < end
                )
            )
        }
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


def _mean_compound(
    conn: Connection, tag: str, since: datetime, until: datetime
) -> tuple[int, float | None]:
    tb = tag_buckets.c
    row = conn.execute(
        select(func.coalesce(func.sum(tb.scored), 0), func.coalesce(func.sum(tb.compound_sum), 0.0))
        .where(tb.tag == tag, tb.bucket_start >= since, tb.bucket_start < until)
    ).one()
    scored = int(row[0])
    return scored, (float(row[1]) / scored if scored else None)


def _sentiment(
    conn: Connection, rule: SentimentShiftRule, config: Config, now: datetime
) -> list[Finding]:
    end = bucket_start(now)
    split = end - rule.window
    out: list[Finding] = []
    for tag in _tags(rule, config):
        n_now, mean_now = _mean_compound(conn, tag, split, end)
        n_base, mean_base = _mean_compound(conn, tag, split - rule.baseline, split)
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


def _cotag_counts(
    conn: Connection, tag: str, since: datetime, until: datetime, only: Sequence[str] | None,
    limit: int,
) -> tuple[int, dict[str, int]]:
    a = post_tags.alias("a")
    b = post_tags.alias("b")
    total = conn.execute(
        select(func.count()).select_from(a).where(
            a.c.tag == tag, a.c.created_at >= since, a.c.created_at < until
        )
    ).scalar_one()
    n = func.count().label("n")
    stmt = (
        select(b.c.tag, n)
        .select_from(a.join(b, and_(a.c.post_id == b.c.post_id, b.c.tag != a.c.tag)))
        .where(a.c.tag == tag, a.c.created_at >= since, a.c.created_at < until)
        .group_by(b.c.tag)
    )
    if only is not None:
        if not only:
            return int(total), {}
        stmt = stmt.where(b.c.tag.in_(list(only)))
    else:
        stmt = stmt.order_by(n.desc(), b.c.tag).limit(limit)
    return int(total), {row.tag: int(row.n) for row in conn.execute(stmt)}


def _cotag(
    conn: Connection, rule: EmergingCotagRule, config: Config, now: datetime
) -> list[Finding]:
    end = bucket_start(now)
    split = end - rule.window
    followed = set(config.hashtags) | set(rule.tags)
    ignored = {t.lstrip("#").casefold() for t in rule.ignore}
    out: list[Finding] = []
    for tag in _tags(rule, config):
        total, counts = _cotag_counts(conn, tag, split, end, None, 50 + len(followed))
        if total == 0:
            continue
        candidates = [
            (other, n) for other, n in counts.items()
            if other not in followed and other not in ignored and n >= rule.min_posts
        ][: rule.max_candidates]
        base_total, base_counts = _cotag_counts(
            conn, tag, split - rule.baseline, split, [c for c, _ in candidates], 0
        )
        for other, n in candidates:
            share = n / total
            base_share = base_counts.get(other, 0) / base_total if base_total else 0.0
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
    conn: Connection, rule: FlatlineRule, config: Config, now: datetime
) -> list[Finding]:
    h = stream_health.c
    stmt = select(h.source, h.stream, h.last_success_at, h.last_post_at, h.posts_collected)
    if rule.sources:
        stmt = stmt.where(h.source.in_(rule.sources))
    out: list[Finding] = []
    for row in conn.execute(stmt.order_by(h.source, h.stream)):
        if int(row.posts_collected or 0) < rule.min_collected:
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


def evaluate_rule(
    conn: Connection, rule: RuleConfig, config: Config, now: datetime
) -> list[Finding]:
    """The findings of one rule at *now* (UTC)."""
    if isinstance(rule, SpikeRule):
        return _spike(conn, rule, config, now)
    if isinstance(rule, SentimentShiftRule):
        return _sentiment(conn, rule, config, now)
    if isinstance(rule, EmergingCotagRule):
        return _cotag(conn, rule, config, now)
    return _flatline(conn, rule, config, now)
