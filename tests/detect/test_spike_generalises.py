"""The spike detector off its home ground: hourly steps, no season, small counts, drops.

Also checks that the NAB benchmark's fast pager is the service's lifecycle.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np

from benchmarks.lowcount import make, pages
from benchmarks.nab import Evidence
from benchmarks.nab import pages as fast_pages
from monitor.detect.lifecycle import AlertState, Timing, step
from monitor.detect.seasonal import SpikeDetector, SpikeParams
from monitor.detect.settings import SpikeRule

START = datetime(2026, 1, 5, tzinfo=UTC)


def test_an_hourly_series_is_judged_in_hours_not_five_minute_buckets() -> None:
    rng = random.Random(1)
    hour = timedelta(hours=1)
    detector = SpikeDetector()  # no step given: it is inferred
    verdicts = []
    for i in range(24 * 30):
        at = START + i * hour
        usual = 100 + 80 * math.sin(2 * math.pi * at.hour / 24)
        value = float(round(rng.gauss(usual, 5)))
        if 24 * 25 + 10 <= i < 24 * 25 + 13:
            value += 300  # a three-hour surge on day 25
        verdicts.append(detector.update(at, value))
    fired = [v.at for v in verdicts if v.is_spike]
    assert fired, "the surge must fire"
    assert min(fired) >= START + timedelta(days=25, hours=10)
    assert max(fired) <= START + timedelta(days=25, hours=16)
    # the daily rhythm was learnt from 24 points a day: the usual follows the hour
    late = [v for v in verdicts[24 * 20: 24 * 25] if v.expected is not None]
    assert all(v.seasonal for v in late)
    peak = [v.expected for v in late if v.at.hour == 6 and v.expected is not None]  # ~180
    trough = [v.expected for v in late if v.at.hour == 18 and v.expected is not None]  # ~20
    assert min(peak) > 3 * max(trough)


def test_a_series_without_season_is_judged_against_its_recent_level() -> None:
    rng = random.Random(2)
    step = timedelta(minutes=10)
    up = SpikeDetector()
    both = SpikeDetector(SpikeParams(two_sided=True))
    fired_up: list[int] = []
    fired_both: list[int] = []
    for i in range(6 * 24 * 10):
        level = 40.0 if i < 6 * 24 * 6 else 25.0  # a drop on day 6
        if 6 * 24 * 8 <= i < 6 * 24 * 8 + 6:
            level = 60.0  # an hour-long rise on day 8
        value = rng.gauss(level, 1.0)  # not counts: no Poisson floor, no count gates
        at = START + i * step
        if up.update(at, value).is_spike:
            fired_up.append(i)
        if both.update(at, value).is_spike:
            fired_both.append(i)
    drop, rise = 6 * 24 * 6, 6 * 24 * 8
    assert fired_up and all(rise <= i < rise + 12 for i in fired_up)  # rises only
    assert any(drop <= i < drop + 6 for i in fired_both)  # two-sided sees the drop too


def _rule_pages(rate: float, kind: str | None, seed: int) -> tuple[list[int], list[int]]:
    rule = SpikeRule(name="spike")
    timing = Timing(rule.for_, rule.repeat_interval, rule.resolve_after, rule.rearm_after)
    series = make(rate, kind, seed)
    from benchmarks.lowcount import ours

    return pages(series, ours, timing), series.events


def test_small_tags_quiet_when_nothing_happens_and_paged_on_a_surge() -> None:
    quiet, _ = _rule_pages(0.2, None, 11)
    assert len(quiet) <= 8  # at most one false page per tag-week over ~8 judged weeks
    # at 5 posts a bucket every 2-hour 3x surge pages (the count windows: 1 h and 2 h)
    rows, events = _rule_pages(5.0, "surge", 12)
    found = [e for e in events if any(e <= r < e + 24 + 12 for r in rows)]
    assert len(found) >= 0.9 * len(events)


def test_the_benchmark_pager_is_the_service_lifecycle() -> None:
    rng = np.random.default_rng(5)
    gaps = rng.choice([300.0, 300.0, 300.0, 600.0, 3600.0], size=3000)
    t = np.cumsum(gaps) + START.timestamp()
    ev = Evidence(t, *(np.zeros(3000) for _ in range(5)), np.ones(3000, dtype=bool))
    for density in (0.01, 0.1, 0.4):
        cond = rng.random(3000) < density
        for rearm, resolve in ((0.0, 3600.0), (6 * 3600.0, 3 * 3600.0), (86400.0, 900.0)):
            timing = Timing(timedelta(0), timedelta(hours=4), timedelta(seconds=resolve),
                            timedelta(seconds=rearm))
            state = AlertState()
            slow = []
            for i, (when, c) in enumerate(zip(t.tolist(), cond.tolist(), strict=True)):
                state, said = step(state, c, datetime.fromtimestamp(when, UTC), timing)
                if said == "firing":
                    slow.append(i)
            assert fast_pages(ev, cond, rearm, resolve) == slow


def test_two_windows_must_agree_a_lone_fifteen_minute_blip_does_not_page() -> None:
    """NAB's tweet series page on short bursts that nobody labelled: with ``agree`` 2 a
    15-minute blip (one window) stays quiet, while a rise held for an hour pages."""
    rng = np.random.default_rng(3)
    step_ = timedelta(minutes=5)
    blip, rise = 288 * 9, 288 * 11
    counts = rng.poisson(200.0, size=288 * 13).astype(float)
    counts[blip:blip + 3] = np.round(counts[blip:blip + 3] * 2.0)  # 15 minutes at 2x
    counts[rise:rise + 12] = np.round(counts[rise:rise + 12] * 2.0)  # an hour at 2x
    fired: dict[int, list[int]] = {}
    for agree in (1, 2):
        detector = SpikeDetector(SpikeParams(agree=agree, factor=1.5, surprise=0.0, min_z=4.0))
        fired[agree] = [i for i, n in enumerate(counts.tolist())
                        if detector.update(START + i * step_, n).is_spike]
    assert any(blip <= i < blip + 6 for i in fired[1])  # one window is enough for agree 1
    assert not any(blip <= i < blip + 12 for i in fired[2])
    assert any(rise <= i < rise + 12 for i in fired[2])
    assert not [i for i in fired[2] if not rise <= i < rise + 24]
