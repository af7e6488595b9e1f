"""Sentiment-shift and emerging co-tag rules on synthetic tags with injected shifts.

    python -m benchmarks.shifts [--weeks 2] [--tags 4] [--trials 10] [--seed 100]

Each synthetic tag has a daily volume cycle around a mean of 10, 50 or 200
scored posts per hour. Post sentiment is VADER-like (a third exactly 0, the
rest spread with sd 0.45 around a mean that drifts hour to hour, sd 0.05),
so an iid test would see "shifts" every day at 200 posts/h. Co-tags: 30
background tags with Zipf shares (30% of posts in all), plus one-person
threads: about once a day a never-seen tag rides 1–20 consecutive posts
(geometric, mean 4).

Reported, with the rules' shipped defaults and config.yaml's timing (the
sentiment rule ``for: 15m``): false alarms per tag-week on event-free series,
and the smallest injected shift found within 2 hours in at least 90% of
trials — a drop of the observed mean compound lasting 3 hours; a new co-tag appearing
on a share of the tag's posts. The defaults were chosen on seeds 0–99; this
run uses seeds from ``--seed`` (100 by default), so the figures are
out-of-sample in the seed (same generator: not out-of-distribution).
Last line: one flat JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from monitor.detect.lifecycle import AlertState, Timing, step
from monitor.detect.settings import EmergingCotagRule, SentimentShiftRule
from monitor.detect.shiftrules import cotag_steps, history_span, tone_steps
from monitor.durations import format_duration as fd
from monitor.store.history import CotagSeries, ToneSeries

BUCKET = timedelta(minutes=5)
PER_HOUR = 12
START = datetime(2026, 1, 5, tzinfo=UTC)
RATES = (10, 50, 200)
DROPS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8)
SHARES = (0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4)
DETECT_WITHIN = timedelta(hours=2)
ZERO_SHARE = 1 / 3


def _volume(rng: np.random.Generator, rate: float, buckets: int) -> np.ndarray:
    hour = (np.arange(buckets) % (24 * PER_HOUR)) / PER_HOUR
    shape = 0.35 + 0.65 * (0.5 - 0.5 * np.cos(2 * np.pi * (hour - 8) / 24)) ** 2
    shape /= shape.mean()
    return rng.poisson(rate / PER_HOUR * shape).astype(np.float64)


@dataclass
class Tone:
    scored: np.ndarray
    csum: np.ndarray
    csq: np.ndarray


def tone_series(rng: np.random.Generator, rate: float, buckets: int,
                drop: float = 0.0, at: int = 0, length: int = 0) -> Tone:
    n = _volume(rng, rate, buckets)
    hours = buckets // PER_HOUR + 1
    drift = np.zeros(hours)
    for h in range(1, hours):  # AR(1) hour-to-hour drift of the mean, sd about 0.05
        drift[h] = 0.8 * drift[h - 1] + rng.normal(0, 0.03)
    mean = 0.1 + np.repeat(drift, PER_HOUR)[:buckets]
    # a third of the posts score exactly 0, so the latent mean moves by drop / (2/3)
    # for the observed mean compound to move by `drop`
    mean[at:at + length] -= drop / (1 - ZERO_SHARE)
    counts = n.astype(np.int64)
    owner = np.repeat(np.arange(buckets), counts)
    values = rng.normal(mean[owner], 0.45)
    values[rng.random(len(values)) < ZERO_SHARE] = 0.0
    values = np.round(np.clip(values, -1.0, 1.0), 4)
    return Tone(n, np.bincount(owner, values, buckets), np.bincount(owner, values**2, buckets))


def cotag_series(rng: np.random.Generator, rate: float, buckets: int, share: float = 0.0,
                 at: int = 0) -> CotagSeries:
    n = _volume(rng, rate, buckets)
    counts = n.astype(np.int64)
    total = int(counts.sum())
    owner = np.repeat(np.arange(buckets), counts)
    pairs: dict[str, np.ndarray] = {}
    zipf = 1.0 / np.arange(1, 31)
    zipf *= 0.30 / zipf.sum()
    for j, p in enumerate(zipf):
        hit = rng.random(total) < p
        pairs[f"bg{j}"] = np.bincount(owner[hit], minlength=buckets).astype(np.float64)
    days = buckets // (24 * PER_HOUR)
    for k in range(rng.poisson(days)):  # one-person threads with a never-seen tag
        if total == 0:
            break
        first = int(rng.integers(0, total))
        length = int(min(20, rng.geometric(0.25)))
        hit = owner[first:first + length]
        pairs[f"thread{k}"] = np.bincount(hit, minlength=buckets).astype(np.float64)
    if share > 0:
        hit = (owner >= at) & (rng.random(total) < share)
        pairs["emerging"] = np.bincount(owner[hit], minlength=buckets).astype(np.float64)
    return CotagSeries("tag", START, n, {k: v for k, v in pairs.items() if v.sum() > 0})


def _fires(active: np.ndarray, timing: Timing, first: int = 0) -> list[int]:
    """Step indices at which the lifecycle starts firing."""
    state = AlertState()
    out = []
    for i in range(first, len(active)):
        now = START + i * BUCKET
        state, _ = step(state, bool(active[i]), now, timing)
        if state.state == "firing" and state.fired_at == now:
            out.append(i)
    return out


TONE_TIMING = Timing(timedelta(minutes=15), timedelta(hours=12), timedelta(hours=1))
COTAG_TIMING = Timing(timedelta(0), timedelta(hours=24), timedelta(hours=6))


def tone_false_alarms(rule: SentimentShiftRule, rate: float, weeks: int, tags: int,
                      seed: int) -> float:
    warm = int(history_span(rule) / BUCKET)
    buckets = warm + weeks * 7 * 24 * PER_HOUR
    alarms = 0
    for t in range(tags):
        rng = np.random.default_rng(seed + t)
        s = tone_series(rng, rate, buckets)
        series = ToneSeries("tag", START, s.scored, s.scored, s.csum, s.csq)
        ends = np.arange(buckets + 1, dtype=np.int64)
        active = tone_steps(rule, series, ends).active
        alarms += len(_fires(active, TONE_TIMING, warm))
    return alarms / (weeks * tags)


def cotag_false_alarms(rule: EmergingCotagRule, rate: float, weeks: int, tags: int,
                       seed: int) -> float:
    warm = int(history_span(rule) / BUCKET)
    buckets = warm + weeks * 7 * 24 * PER_HOUR
    alarms = 0
    for t in range(tags):
        rng = np.random.default_rng(seed + 50 + t)
        series = cotag_series(rng, rate, buckets)
        steps = cotag_steps(rule, series, np.arange(buckets + 1, dtype=np.int64), set())
        for j in range(len(steps.others)):
            if steps.active[j].any():
                alarms += len(_fires(steps.active[j], COTAG_TIMING, warm))
    return alarms / (weeks * tags)


def _found_within(active: np.ndarray, onset: int, timing: Timing) -> bool:
    horizon = onset + int(DETECT_WITHIN / BUCKET)
    return any(onset < i <= horizon for i in _fires(active[: horizon + 1], timing, onset))


def smallest_drop(rule: SentimentShiftRule, rate: float, trials: int, seed: int) -> float | None:
    warm = int(history_span(rule) / BUCKET)
    onset = warm + 24 * PER_HOUR
    buckets = onset + 4 * PER_HOUR
    ends = np.arange(buckets + 1, dtype=np.int64)
    for drop in DROPS:
        found = 0
        for t in range(trials):
            rng = np.random.default_rng(seed + 1000 + t)
            s = tone_series(rng, rate, buckets, drop, onset, 3 * PER_HOUR)
            series = ToneSeries("tag", START, s.scored, s.scored, s.csum, s.csq)
            found += _found_within(tone_steps(rule, series, ends).active, onset, TONE_TIMING)
        if found >= 0.9 * trials:
            return drop
    return None


def smallest_share(rule: EmergingCotagRule, rate: float, trials: int, seed: int) -> float | None:
    warm = int(history_span(rule) / BUCKET)
    onset = warm + 24 * PER_HOUR
    buckets = onset + 3 * PER_HOUR
    ends = np.arange(buckets + 1, dtype=np.int64)
    for share in SHARES:
        found = 0
        for t in range(trials):
            rng = np.random.default_rng(seed + 2000 + t)
            series = cotag_series(rng, rate, buckets, share, onset)
            steps = cotag_steps(rule, series, ends, set())
            if "emerging" in steps.others:
                j = steps.others.index("emerging")
                found += _found_within(steps.active[j], onset, COTAG_TIMING)
        if found >= 0.9 * trials:
            return share
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weeks", type=int, default=2)
    parser.add_argument("--tags", type=int, default=4)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    tone, cotag = SentimentShiftRule(name="tone"), EmergingCotagRule(name="cotag")
    print(f"sentiment_shift: window {fd(tone.window)}, baseline {fd(tone.baseline)}, "
          f"min_z {tone.min_z}, min_scored {tone.min_scored}; for 15m")
    print(f"emerging_cotag: window {fd(cotag.window)}, baseline {fd(cotag.baseline)}, "
          f"min_z {cotag.min_z}, min_posts {cotag.min_posts}, min_share {cotag.min_share}")
    print(f"{args.tags} tags x {args.weeks} weeks per rate for false alarms; "
          f"{args.trials} trials per size; seeds from {args.seed} (defaults chosen on 0-99)")
    out: dict[str, float] = {}
    started = time.perf_counter()
    for rate in RATES:
        fa_t = tone_false_alarms(tone, rate, args.weeks, args.tags, args.seed)
        fa_c = cotag_false_alarms(cotag, rate, args.weeks, args.tags, args.seed)
        drop = smallest_drop(tone, rate, args.trials, args.seed)
        share = smallest_share(cotag, rate, args.trials, args.seed)
        print(f"{rate:>4} posts/h  sentiment: {fa_t:.2f} false alarms/tag-week, smallest drop "
              f"found within 2h: {'none up to 0.8' if drop is None else f'-{drop:.2f}'}   "
              f"co-tag: {fa_c:.2f} false alarms/tag-week, smallest share found within 2h: "
              f"{'none up to 40%' if share is None else f'{share:.0%}'}")
        out[f"sentiment_false_alarms_per_tag_week_{rate}"] = round(fa_t, 3)
        out[f"sentiment_smallest_drop_2h_{rate}"] = -1.0 if drop is None else drop
        out[f"cotag_false_alarms_per_tag_week_{rate}"] = round(fa_c, 3)
        out[f"cotag_smallest_share_2h_{rate}"] = -1.0 if share is None else share
    # reference in the same run: what a fixed 0.25 shift threshold (the old rule) gives
    old = SentimentShiftRule(name="old", min_z=0.001, min_shift=0.25, min_scored=30)
    for rate in RATES:
        fa = tone_false_alarms(old, rate, args.weeks, args.tags, args.seed)
        print(f"reference (old fixed 0.25 threshold, min_scored 30) at {rate} posts/h: "
              f"{fa:.2f} false alarms/tag-week")
        out[f"fixed_threshold_false_alarms_per_tag_week_{rate}"] = round(fa, 3)
    out["seconds"] = round(time.perf_counter() - started, 1)
    print("(-1 in the JSON: not found within 2h at any size tried)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

