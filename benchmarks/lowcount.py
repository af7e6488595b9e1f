"""The spike rule on small hashtags: seeded synthetic counts at 0.2 to 50 posts per bucket.

NAB counts stock-ticker tweets, hundreds per 5-minute bucket; an open-platform
hashtag often sees 0-10. Each series here is two months of 5-minute Poisson
counts around a daily and weekly season (quiet nights, busy evenings, calmer
weekends) at a mean of 0.2, 1, 5 or 50 posts per bucket, with one kind of
event injected every three days after the first two weeks:

- ``burst``: 15 minutes at 10x the usual;
- ``surge``: 2 hours at 3x;
- ``doubling``: 6 hours at 2x;
- ``drop``: 3 hours at zero (an outage: the flatline rule's case, so a spike page
  there is counted as a false alarm and reported separately).

Every rule runs through the service's alert lifecycle with the spike rule's
timing (``resolve_after``, ``rearm_after``), and a page counts for an event when
it comes between its start and one hour after its end; any other page is a
false alarm. Three rules:

- ``ours``: the service's spike rule (:class:`~monitor.detect.seasonal.SpikeDetector`
  with the default :class:`~monitor.detect.settings.SpikeRule` parameters);
- ``k_baseline``: the last 15 minutes hold at least ``k`` (3) times the usual
  for this time of day (the mean of the same 5-minute slot and its neighbours
  over the previous 14 days), and at least one post;
- ``poisson``: the last 15 minutes are improbable under Poisson noise around
  that usual, ``P(X >= observed) < 1e-4``.

Run: ``.venv/bin/python -m benchmarks.lowcount [--seeds 2]``. Figures: recall
per event kind, precision, median delay (minutes) and false alarms per
tag-week on event-free series, per rate and rule. The last line is one JSON
object (``<rule>_<figure>_r<rate>``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from monitor.detect.lifecycle import AlertState, Timing, step
from monitor.detect.rules import spike_params
from monitor.detect.seasonal import SpikeDetector, SpikeParams
from monitor.detect.settings import SpikeRule

BUCKET = timedelta(minutes=5)
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
DAYS = 60
PER_DAY = 288
RATES = (0.2, 1.0, 5.0, 50.0)
EVENTS = {  # kind: (buckets, multiplier)
    "burst": (3, 10.0),
    "surge": (24, 3.0),
    "doubling": (72, 2.0),
    "drop": (36, 0.0),
}
GRACE = 12  # buckets after an event's end in which a page still counts for it
K = 3.0
POISSON_P = 1e-4


def profile() -> np.ndarray:
    """Relative rate per bucket of the two months, mean 1: daily and weekly season."""
    i = np.arange(DAYS * PER_DAY)
    hour = (i % PER_DAY) / 12.0
    daily = 0.25 + 0.75 * (0.5 - 0.5 * np.cos(2 * np.pi * (hour - 8) / 24)) ** 2
    weekday = (i // PER_DAY) % 7  # START is a Monday
    weekly = np.where(weekday >= 5, 0.7, 1.0)
    shape = daily * weekly
    return np.asarray(shape / shape.mean())


@dataclass(frozen=True, slots=True)
class Series:
    rate: float
    kind: str | None  # None: event-free
    counts: list[float]
    events: list[int]  # first bucket of each event


def make(rate: float, kind: str | None, seed: int) -> Series:
    rng = np.random.default_rng([seed, int(rate * 10), list(EVENTS).index(kind) + 1 if kind else 0])
    lam = rate * profile()
    events: list[int] = []
    if kind is not None:
        length, mult = EVENTS[kind]
        first = 14 * PER_DAY
        while first + length + GRACE < len(lam):
            # a random time of day, so events fall at night as well as in the evening
            at = first + int(rng.integers(0, PER_DAY))
            if at + length + GRACE >= len(lam):
                break
            lam[at:at + length] *= mult
            events.append(at)
            first += 3 * PER_DAY
    return Series(rate, kind, rng.poisson(lam).astype(float).tolist(), events)


Rule = Callable[[], Callable[[datetime, float], bool]]


def ours() -> Callable[[datetime, float], bool]:
    detector = SpikeDetector(spike_params(SpikeRule(name="spike")))
    return lambda at, n: detector.update(at, n).is_spike


def _poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    term = math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))
    total = 0.0
    j = k
    while term > 1e-17 * max(total, 1e-300) and j < k + 2000:
        total += term
        j += 1
        term *= lam / j
    return min(1.0, total)


class _Seasonal:
    """The usual per 5-minute slot: the mean over the previous 14 days of it and its neighbours."""

    def __init__(self) -> None:
        self.slots: list[deque[float]] = [deque(maxlen=14) for _ in range(PER_DAY)]
        self.recent: deque[float] = deque(maxlen=3)
        self.i = 0

    def step(self, n: float) -> tuple[float, float | None]:
        slot = self.i % PER_DAY
        self.recent.append(n)
        near = [self.slots[(slot + d) % PER_DAY] for d in (-1, 0, 1)]
        known = sum(len(q) for q in near)
        usual = sum(sum(q) for q in near) / known if known >= 21 else None
        self.slots[slot].append(n)
        self.i += 1
        return sum(self.recent), (3 * usual if usual is not None else None)


def k_baseline() -> Callable[[datetime, float], bool]:
    s = _Seasonal()

    def judge(at: datetime, n: float) -> bool:
        total, usual = s.step(n)
        return usual is not None and total >= 1 and total >= K * max(usual, 1e-9)

    return judge


def poisson() -> Callable[[datetime, float], bool]:
    s = _Seasonal()

    def judge(at: datetime, n: float) -> bool:
        total, usual = s.step(n)
        return usual is not None and _poisson_sf(int(total), max(usual, 0.05)) < POISSON_P

    return judge


def pages(series: Series, rule: Rule, timing: Timing) -> list[int]:
    judge = rule()
    state = AlertState()
    out = []
    for i, n in enumerate(series.counts):
        at = START + i * BUCKET
        state, said = step(state, judge(at, n), at, timing)
        if said == "firing":
            out.append(i)
    return out


@dataclass(slots=True)
class Tally:
    found: int = 0
    events: int = 0
    delays: list[float] | None = None
    true_pages: int = 0
    pages: int = 0

    def add(self, series: Series, rows: Sequence[int]) -> None:
        if self.delays is None:
            self.delays = []
        length = EVENTS[series.kind][0] if series.kind else 0
        hit = set()
        for r in rows:
            owner = next((e for e in series.events if e <= r < e + length + GRACE), None)
            self.pages += 1
            if owner is None:
                continue
            self.true_pages += 1
            if owner not in hit:
                hit.add(owner)
                self.delays.append((r - owner) * 5.0)
        self.found += len(hit)
        self.events += len(series.events)


# meets_targets (the NAB search's filter) looks at seeds 0-3 (two seeds let a setting
# pass by luck: 2.5x factor passed on 0-1 and found 81% of held-out surges); the report
# scores others
TUNING_SEEDS = 4
SURGE_MARGIN = 0.05  # the filter asks 95% surge recall of its seeds: 90% held out
HELD_OUT_SEED = 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="series per rate and event kind")
    parser.add_argument("--first-seed", type=int, default=HELD_OUT_SEED,
                        help=f"first seed of the scored series (default {HELD_OUT_SEED}: held out; "
                        "the defaults were chosen to pass on seeds 0-3: those are in-sample)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        print("error: --seeds: expected at least 1", file=sys.stderr)
        return 2
    rule = SpikeRule(name="spike")
    timing = Timing(rule.for_, rule.repeat_interval, rule.resolve_after, rule.rearm_after)
    rules: dict[str, Rule] = {"ours": ours, "k_baseline": k_baseline, "poisson": poisson}
    judged_weeks = (DAYS - rule.min_history.total_seconds() / 86400) / 7
    result: dict[str, float] = {}
    started = time.perf_counter()
    sample = ("in-sample: the defaults were chosen to pass on seeds 0-3"
              if args.first_seed < TUNING_SEEDS else "held-out seeds")
    print(f"seeds {args.first_seed}..{args.first_seed + args.seeds - 1} ({sample})")
    print(f"{DAYS} days of 5-minute buckets per series, {args.seeds} series per rate and kind; "
          f"events every 3 days from day 14; timing: resolve_after {rule.resolve_after}, "
          f"rearm_after {rule.rearm_after}")
    print(f"{'rate':>5} {'rule':<11} {'FA/week':>8} " + " ".join(
        f"{k + ' rec':>12}" for k in EVENTS if k != "drop") + f" {'precision':>9} "
        f"{'med delay':>9} {'drop pages':>10}")
    for rate in RATES:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        quiet = [make(rate, None, seed) for seed in seeds]
        eventful = {k: [make(rate, k, seed) for seed in seeds] for k in EVENTS}
        for name, make_rule in rules.items():
            false_alarms = sum(len(pages(s, make_rule, timing)) for s in quiet)
            fa_week = false_alarms / (judged_weeks * len(quiet))
            tallies = {}
            for kind, group in eventful.items():
                tally = Tally()
                for s in group:
                    tally.add(s, pages(s, make_rule, timing))
                tallies[kind] = tally
            spikes = [tallies[k] for k in EVENTS if k != "drop"]
            true_pages = sum(t.true_pages for t in spikes)
            all_pages = sum(t.pages for t in spikes)
            precision = true_pages / all_pages if all_pages else 1.0
            delays = [d for t in spikes for d in (t.delays or [])]
            delay = statistics.median(delays) if delays else float("nan")
            drop_pages = tallies["drop"].true_pages  # pages during an outage (or 1 h after)
            recalls = {k: tallies[k].found / max(tallies[k].events, 1) for k in EVENTS}
            print(f"{rate:>5} {name:<11} {fa_week:>8.2f} " + " ".join(
                f"{recalls[k]:>12.0%}" for k in EVENTS if k != "drop")
                + f" {precision:>9.0%} {delay:>9.0f} {drop_pages:>10}")
            tag = f"r{rate:g}"
            result[f"{name}_fa_week_{tag}"] = round(fa_week, 3)
            for k in EVENTS:
                if k != "drop":
                    result[f"{name}_recall_{k}_{tag}"] = round(recalls[k], 3)
            result[f"{name}_precision_{tag}"] = round(precision, 3)
            result[f"{name}_median_delay_min_{tag}"] = round(delay, 1) if delays else -1.0
            result[f"{name}_drop_pages_{tag}"] = drop_pages
    fa_ok = all(result[f"ours_fa_week_r{r:g}"] <= 1.0 for r in RATES)
    surge_ok = all(result[f"ours_recall_surge_r{r:g}"] >= 0.9 for r in RATES if r >= 1)
    print(f"targets: <= 1 false alarm per tag-week at every rate: {'met' if fa_ok else 'NOT met'}; "
          f"surge recall >= 90% at rate >= 1: {'met' if surge_ok else 'NOT met'} "
          f"({time.perf_counter() - started:.0f} s)")
    result["targets_met"] = 1.0 if fa_ok and surge_ok else 0.0
    result["in_sample"] = 1.0 if args.first_seed < TUNING_SEEDS else 0.0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def meets_targets(params: SpikeParams, timing: Timing,
                  seeds: Sequence[int] = tuple(range(TUNING_SEEDS))) -> bool:
    """Whether a spike setting meets the low-volume targets on this benchmark's series.

    At most one false alarm per tag-week on event-free series at every rate, and at
    least 90% of 2-hour 3x surges paged at a rate of 1 or more, with a margin: 95%
    on these seeds (64 surges), because a setting that passed 90% here found 28 of
    32 surges (87.5%) on the held-out seeds. The NAB search keeps the shipped
    defaults to settings that pass (a product requirement, not a fit).
    The likeliest failures are checked first, so most settings are rejected fast.
    """
    weeks = (DAYS - params.min_history.total_seconds() / 86400) / 7

    def rule() -> Callable[[datetime, float], bool]:
        detector = SpikeDetector(params)
        return lambda at, n: detector.update(at, n).is_spike

    def surge_ok(rate: float) -> bool:
        tally = Tally()
        for seed in seeds:
            series = make(rate, "surge", seed)
            tally.add(series, pages(series, rule, timing))
        return tally.found >= (0.9 + SURGE_MARGIN) * tally.events

    def quiet_ok(rate: float) -> bool:
        alarms = sum(len(pages(make(rate, None, seed), rule, timing)) for seed in seeds)
        return alarms <= weeks * len(seeds)

    checks: list[Callable[[], bool]] = [
        lambda: surge_ok(1.0), lambda: quiet_ok(0.2), lambda: quiet_ok(1.0),
        lambda: surge_ok(5.0), lambda: surge_ok(50.0), lambda: quiet_ok(5.0),
        lambda: quiet_ok(50.0)]
    return all(check() for check in checks)
