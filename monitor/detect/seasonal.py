"""The streaming spike detector: volume against a robust seasonal baseline.

Posting follows the hour of day and the day of week, so "usual" means "usual
for this hour": a flat mean would flag every evening. The detector is fed one
bucket at a time, oldest first, and judges each bucket with data up to it only
(no look-ahead), so the same class runs in the service and in the NAB
benchmark.

For each bucket it compares a short smoothed level (the mean of the last
``smooth`` buckets) with the median of the smoothed levels seen at the same
hour of day over the last ``baseline_days`` days, scaled by a day-of-week
factor once several weeks are known. Medians and the median absolute
deviation keep one past burst from inflating the baseline. A series with less
than ``min_history`` of data is *young*: it is assessed but never fires.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["SpikeAssessment", "SpikeDetector", "SpikeParams"]

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, slots=True)
class SpikeParams:
    """What counts as a spike, in terms a person can check.

    A bucket is a spike when its smoothed volume is at least ``factor`` times
    the usual for this hour (and weekday), at least ``min_posts`` posts per
    bucket, and ``min_z`` robust standard deviations above the usual.
    """

    factor: float = 4.0
    min_posts: float = 1.0
    min_z: float = 6.0
    smooth: int = 6  # buckets averaged into the level that is judged
    bucket: timedelta = timedelta(minutes=5)
    baseline_days: int = 14
    min_history: timedelta = timedelta(days=2)
    # a spike must also stand out against this series' own recent surprises:
    # its ratio must reach this quantile of the ratios of the last `rarity_days`
    rarity: float = 0.995
    rarity_days: int = 14
    rarity_margin: float = 1.3  # ... and exceed that quantile by this factor


@dataclass(frozen=True, slots=True)
class SpikeAssessment:
    """The detector's judgement of one bucket."""

    at: datetime
    value: float  # posts in this bucket
    level: float  # smoothed posts per bucket
    expected: float | None  # usual smoothed posts per bucket for this hour; None when young
    ratio: float | None  # level / expected
    z: float | None  # robust deviations above the usual
    score: float  # anomaly score in [0, 1]; >= 0.5 means the parameters are met
    young: bool  # too little history to judge

    @property
    def is_spike(self) -> bool:
        return self.score >= 0.5


class SpikeDetector:
    """Feed buckets oldest first with :meth:`update`; each call returns an assessment."""

    def __init__(self, params: SpikeParams | None = None) -> None:
        self.params = params or SpikeParams()
        p = self.params
        per_day = max(1, round(86400 / p.bucket.total_seconds()))
        self._per_hour = max(1, per_day // 24)
        keep = p.baseline_days * self._per_hour
        # smoothed levels seen at each hour of day (recent days only)
        self._by_hour: list[deque[float]] = [deque(maxlen=keep) for _ in range(24)]
        # daily totals by weekday, for the day-of-week factor
        self._day_totals: list[deque[float]] = [deque(maxlen=6) for _ in range(7)]
        self._recent_days: deque[float] = deque(maxlen=28)
        self._window: deque[float] = deque(maxlen=p.smooth)
        self._ratios_max = p.rarity_days * per_day
        self._ratios: deque[float] = deque(maxlen=self._ratios_max)
        self._sorted_cache: list[float] = []
        self._since_sort = 0
        self._first: datetime | None = None
        self._day: datetime | None = None
        self._day_values: list[list[float]] = [[] for _ in range(24)]

    def _close_day(self, new_day: datetime) -> None:
        if self._day is not None:
            # a day's level relative to the hour-of-day baseline, as the median over
            # its hours: a burst of a few hours does not make "Tuesdays" busy
            ratios = []
            for hour, values in enumerate(self._day_values):
                if len(values) < self._per_hour // 2 or not self._by_hour[hour]:
                    continue
                usual = statistics.median(self._by_hour[hour])
                if usual > 0:
                    ratios.append(statistics.median(values) / usual)
            if len(ratios) >= 12:
                relative = statistics.median(ratios)
                self._day_totals[self._day.weekday()].append(relative)
                self._recent_days.append(relative)
        self._day = new_day
        self._day_values = [[] for _ in range(24)]

    def _weekday_factor(self, weekday: int) -> float:
        totals = self._day_totals[weekday]
        if len(totals) < 2 or len(self._recent_days) < 14:
            return 1.0
        overall = statistics.median(self._recent_days)
        if overall <= 0:
            return 1.0
        factor = statistics.median(totals) / overall
        # a weekday is quieter or busier, but not by an order of magnitude
        return min(2.0, max(0.5, factor))

    def _rarity_score(self, ratio: float) -> float:
        # re-sorting every bucket is wasteful; an hour-old order is close enough
        if self._since_sort >= 12 or not self._sorted_cache:
            self._sorted_cache = sorted(self._ratios)
            self._since_sort = 0
        self._since_sort += 1
        pos = min(len(self._sorted_cache) - 1, int(self.params.rarity * len(self._sorted_cache)))
        ref = self._sorted_cache[pos]
        if ref <= 0:
            return 1.0
        ref *= self.params.rarity_margin
        strength = math.log(ratio) / math.log(max(ref, 1.0001)) if ratio > 1 else 0.0
        return 1.0 / (1.0 + math.exp(-4.0 * math.log(max(strength, 1e-9))))

    def update(self, at: datetime, value: float) -> SpikeAssessment:
        """Judge the bucket starting at *at* holding *value* posts, then learn from it."""
        p = self.params
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        if self._first is None:
            self._first = at
        if self._day != day:
            self._close_day(day)
        self._day_values[at.hour].append(value)
        self._window.append(value)
        level = sum(self._window) / len(self._window)
        slot = self._by_hour[at.hour]
        young = at - self._first < p.min_history or len(slot) < 2 * self._per_hour
        expected: float | None = None
        ratio: float | None = None
        z: float | None = None
        score = 0.0
        if not young:
            hist = list(slot)
            med = statistics.median(hist)
            mad = statistics.median(abs(h - med) for h in hist)
            expected = med * self._weekday_factor(at.weekday())
            # counts are at least Poisson-noisy: never trust a spread below that
            spread = max(_MAD_TO_SIGMA * mad, math.sqrt(max(expected, 1.0) / p.smooth))
            ratio = (level + 1.0) / (expected + 1.0)
            z = (level - expected) / spread
            score = _score(ratio, z, level, p)
            if p.rarity > 0 and score > 0 and len(self._ratios) >= self._ratios_max // 2:
                score = min(score, self._rarity_score(ratio))
            self._ratios.append(ratio)
        slot.append(level)
        return SpikeAssessment(at, value, level, expected, ratio, z, score, young)


def _score(ratio: float, z: float, level: float, p: SpikeParams) -> float:
    """Map the evidence to [0, 1] so that exactly meeting every parameter gives 0.5.

    The weakest of the three criteria decides (a spike must be large relative
    to the usual, unusual given the noise, and big enough to matter).
    """
    if ratio <= 1.0 or z <= 0.0:
        return 0.0
    strengths = [math.log(ratio) / math.log(max(p.factor, 1.0001)), z / p.min_z]
    if p.min_posts > 0:
        strengths.append(level / p.min_posts)
    weakest = min(strengths)
    # logistic in log-strength: 1x → 0.5, 2x → ~0.94
    return 1.0 / (1.0 + math.exp(-4.0 * math.log(max(weakest, 1e-9))))
