"""The streaming spike detector: a seasonal expectation, a noise model, and a tail probability.

The detector is fed one bucket at a time, oldest first, and judges each
bucket with data up to it only (no look-ahead), so the same class runs in the
service, in ``monitor backtest`` and in the NAB benchmark. Memory per series is
bounded (24 hour-of-day slots, 7 weekday factors, a capped history of scores)
and each update costs O(1).

It assumes neither a step nor a season:

- the step is inferred from the first timestamps (unless given), so 5-minute,
  10-minute and hourly series get the same memory in *time*;
- two expectations race: a flat one (a robust moving level) and a seasonal one
  (a robust level per hour of day, times a weekday factor for counts). Each
  keeps a running error and the one that has predicted better lately is used,
  so a series without a daily rhythm is judged against its recent level and
  one with a rhythm against the usual for this hour.

What is judged is the *level*, the mean of the last ``smooth`` buckets. Its
deviation from the expectation becomes a z: against the series' own recent
error (and, for counts, never less surprising than Poisson noise allows: a
variance-stabilised Poisson z on the summed buckets, which stays honest at 0.2
posts per bucket). Finally, as NAB's "anomaly likelihood" does, the z is
compared with the distribution of this series' own recent z values: a series
that is always jumpy needs a bigger jump. ``surprise`` is ``-log10`` of that
tail probability.

A bucket is a spike when every criterion is met: ``surprise``, ``min_z`` and,
for counts, ``factor`` (times the usual) and ``min_posts``. ``score`` maps the
weakest criterion to [0, 1] so that meeting it exactly gives 0.5. A series
with less than ``min_history`` of data is *young*: assessed but never fires.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

__all__ = ["SpikeAssessment", "SpikeDetector", "SpikeParams"]

_MEAN_ABS_TO_SIGMA = 1.2533  # sigma of a normal = 1.2533 x its mean absolute deviation
_LOG10 = math.log(10.0)
_MAX_SURPRISE = 30.0
# counts: a ratio of near-empty buckets (1 post vs 0.01 usual) must not look like 100x;
# small enough that a night-time rise at 3x half a post per bucket still reads ~2.5x
_RATIO_PAD = 0.1
_MIN_SCORES = 100  # deviations seen before their distribution is trusted


@dataclass(frozen=True, slots=True)
class SpikeParams:
    """What counts as a spike, in terms a person can check (defaults: see the README)."""

    # the same defaults as the spike rule's (chosen on NAB's 53 series, see the README)
    factor: float = 2.5  # counts: level at least this many times the usual
    min_posts: float = 1.0  # counts: level at least this many posts per bucket
    min_z: float = 5.0  # deviations above the usual, in this series' own noise
    surprise: float = 4.0  # -log10 tail probability of this z among recent z values
    smooth: int = 6  # buckets averaged into the level that is judged
    long: int = 24  # a second, longer window (buckets) for slow or faint rises; 0: off
    bucket: timedelta | None = None  # the step; None infers it from the timestamps
    baseline_days: float = 14.0  # memory of the seasonal (hour-of-day) expectation
    flat_hours: float = 24.0  # memory of the flat expectation
    history_days: float = 7.0  # memory of the z distribution behind ``surprise``
    min_history: timedelta = timedelta(hours=12)
    counts: bool | None = None  # values are post counts (count gates apply); None: infer
    two_sided: bool = False  # also judge drops (the spike rule does not: flatline does)
    # a level beyond everything seen so far by this fraction of the seen range is
    # unusual whatever the noise says (NAB's "spatial anomaly"); None: off
    novelty: float | None = 0.0


@dataclass(frozen=True, slots=True)
class SpikeAssessment:
    """The detector's judgement of one bucket."""

    at: datetime
    value: float  # posts in this bucket
    level: float  # smoothed posts per bucket
    expected: float | None  # the usual level now; None when young
    ratio: float | None  # (level + 0.1) / (expected + 0.1) for counts, level / expected otherwise
    z: float | None  # deviations above the usual (robust, Poisson-floored for counts)
    score: float  # anomaly score in [0, 1]; >= 0.5 means every parameter is met
    young: bool  # too little history to judge
    tail: float | None = None  # probability of a z this high among this series' recent ones
    surprise: float | None = None  # -log10(tail)
    seasonal: bool = False  # whether the hour-of-day expectation was used
    novel: float | None = None  # how far beyond the seen range, in units of the range
    deviation: float | None = None  # what min_z is compared with: z, or two-sided its size

    @property
    def is_spike(self) -> bool:
        return self.score >= 0.5


class _Stream:
    """Running moments of a bounded window of numbers (O(1) per update)."""

    __slots__ = ("n", "sq", "sum", "values")

    def __init__(self, maxlen: int) -> None:
        self.values: deque[float] = deque(maxlen=maxlen)
        self.sum = 0.0
        self.sq = 0.0
        self.n = 0

    def push(self, x: float) -> None:
        values = self.values
        if len(values) == values.maxlen:
            old = values[0]
            self.sum -= old
            self.sq -= old * old
        values.append(x)
        self.sum += x
        self.sq += x * x
        self.n += 1
        if self.n % 4096 == 0:  # re-add now and then: float drift in long streams
            self.sum = math.fsum(values)
            self.sq = math.fsum(v * v for v in values)

    def mean_sd(self) -> tuple[float, float]:
        k = len(self.values)
        mean = self.sum / k
        var = max(self.sq / k - mean * mean, 0.0)
        return mean, math.sqrt(var)


class SpikeDetector:
    """Feed buckets oldest first with :meth:`update`; each call returns an assessment."""

    def __init__(self, params: SpikeParams | None = None) -> None:
        self.params = params or SpikeParams()
        p = self.params
        self._window: deque[float] = deque(maxlen=p.smooth)
        self._window_sum = 0.0
        self._long: deque[float] = deque(maxlen=max(p.long, 1))
        self._long_sum = 0.0
        self._long_spread = 0.0
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._deltas: list[float] = []
        self._step = p.bucket.total_seconds() if p.bucket else 0.0
        self._counts = p.counts is not False  # every value so far a non-negative integer
        self._flat: float | None = None
        self._flat_err = 0.0
        self._slot: list[float | None] = []
        self._slot_days: list[int] = []
        self._slot_seen: list[datetime | None] = []
        self._slot_seconds = 0.0
        self._season_err = 0.0
        self._weekday = [0.0] * 7  # EWMA of log(level+1) - log(slot+1): weekday factor
        self._spread = 0.0  # EWMA of |normalised residual| of the expectation in use
        self._drift = 0.0  # EWMA of the signed residual over hours: a lasting shift
        self._point_spread = 0.0  # the same for single buckets (two-sided judging)
        self._point_dev: deque[float] = deque(maxlen=p.smooth)
        self._point_dev_sum = 0.0
        self._zs: _Stream | None = None
        self._lo = math.inf
        self._hi = -math.inf
        self._configure(self._step or 300.0)

    @property
    def counts(self) -> bool:
        """Whether every value so far was a non-negative integer (the count gates apply)."""
        return self._counts

    def _configure(self, step: float) -> None:
        p = self.params
        per_hour = max(3600.0 / step, 1e-3)
        per_day = 24.0 * per_hour
        self._per_day = per_day
        # one slot per step of the day (at most 288: 5 minutes), each visited once a day
        n_slots = max(1, min(288, round(per_day)))
        if n_slots != len(self._slot):
            self._slot = [None] * n_slots
            self._slot_days = [0] * n_slots
            self._slot_seen = [None] * n_slots
            self._slot_seconds = 86400.0 / n_slots
        self._a_slot = 1.0 / max(p.baseline_days, 1.0)
        self._a_flat = 1.0 / max(p.flat_hours * per_hour, 1.0)
        self._a_err = 1.0 / max(2.0 * per_day, 2.0)  # which expectation won lately: two days
        self._a_spread = 1.0 / max(3.0 * per_day, 2.0)
        self._a_week = 1.0 / max(3.0 * per_day, 2.0)
        self._a_drift = 1.0 / max(6.0 * per_hour, 2.0)
        size = max(int(p.history_days * per_day), 50)
        if self._zs is None:
            self._zs = _Stream(size)
        elif self._zs.values.maxlen != size:
            previous = self._zs
            self._zs = _Stream(size)
            for z in previous.values:
                self._zs.push(z)

    def _learn_step(self, at: datetime) -> None:
        if self._last is not None and len(self._deltas) < 12:
            delta = (at - self._last).total_seconds()
            if delta > 0:
                self._deltas.append(delta)
                ordered = sorted(self._deltas)
                self._configure(ordered[len(ordered) // 2])
        self._last = at

    def update(self, at: datetime, value: float) -> SpikeAssessment:
        """Judge the bucket starting at *at* holding *value*, then learn from it."""
        p = self.params
        if self._first is None:
            self._first = at
        if not self._step:
            self._learn_step(at)
        if self._counts and p.counts is None and (value < 0 or value != int(value)):
            self._counts = False
        counts = self._counts
        window = self._window
        if len(window) == window.maxlen:
            self._window_sum -= window[0]
        window.append(value)
        self._window_sum += value
        level = self._window_sum / len(window)
        n_slots = len(self._slot)
        hour = int((at.hour * 3600 + at.minute * 60 + at.second) // self._slot_seconds) % n_slots
        weekday = at.weekday()

        # -- the two expectations, before learning from this bucket
        flat = self._flat if self._flat is not None else level
        slot = self._slot[hour]
        # the usual for this time of day: this slot and its two neighbours (less noise)
        near = [v for v in (self._slot[hour - 1], slot, self._slot[(hour + 1) % n_slots])
                if v is not None]
        usual = sum(near) / len(near) if near else None
        elapsed = at - self._first
        use_week = counts and elapsed >= timedelta(days=14)
        week = math.exp(self._weekday[weekday]) if use_week else 1.0
        seasonal_ok = usual is not None and self._slot_days[hour] >= 2
        seasonal = seasonal_ok and self._season_err < self._flat_err
        expected = usual * week if seasonal and usual is not None else flat
        norm = math.sqrt(max(expected, 0.0) + 1.0) if counts else 1.0
        resid = (level - expected) / norm

        young = elapsed < p.min_history or self._zs is None or len(self._zs.values) < _MIN_SCORES
        exp_out: float | None = None
        ratio: float | None = None
        z: float | None = None
        tail: float | None = None
        surprise: float | None = None
        novel: float | None = None
        score = 0.0
        spread = self._spread * _MEAN_ABS_TO_SIGMA
        # a z the distribution learns from even while young
        if spread > 0:
            z_now = resid / spread
        else:
            z_now = 0.0 if resid == 0 else math.copysign(_MAX_SURPRISE, resid)
        if counts:
            # variance-stabilised Poisson deviation of the summed buckets (Anscombe)
            k = len(window)
            z_pois = _poisson_z(self._window_sum, k * max(expected, 0.0))
            z_now = min(z_now, z_pois) if z_now >= 0 else max(z_now, z_pois)
        z_now = max(-_MAX_SURPRISE, min(_MAX_SURPRISE, z_now))
        judged_level = level
        if p.long > p.smooth:
            # the same test over the longer window: a 2-hour rise at 3x one post per
            # bucket is too faint for 15 minutes but plain over two hours
            lw = self._long
            if len(lw) == lw.maxlen:
                self._long_sum -= lw[0]
            lw.append(value)
            self._long_sum += value
            long_level = self._long_sum / len(lw)
            long_resid = (long_level - expected) / norm
            long_spread = self._long_spread * _MEAN_ABS_TO_SIGMA
            z_long = long_resid / long_spread if long_spread > 0 else 0.0
            if counts:
                z_long = min(z_long, _poisson_z(self._long_sum, len(lw) * max(expected, 0.0)))
            z_long = min(_MAX_SURPRISE, z_long)
            err_long = abs(long_resid)
            if self._long_spread == 0.0:
                self._long_spread = err_long
            else:
                self._long_spread += self._a_spread * (
                    min(err_long, 4.0 * self._long_spread) - self._long_spread)
            z_now = max(z_now, z_long)
            # the rise is judged by the larger of the two ratios (a short burst or a slow climb)
            judged_level = max(level, long_level)
        raw = z_now
        if p.two_sided:
            # NAB-style: how far off the recent buckets were, whichever way (a level
            # shift, a drop or a burst of noise all raise it)
            point = (value - expected) / norm
            pz = abs(point) / (self._point_spread * _MEAN_ABS_TO_SIGMA) if self._point_spread > 0 \
                else (0.0 if point == 0 else _MAX_SURPRISE)
            pz = min(pz, _MAX_SURPRISE)
            devs = self._point_dev
            if len(devs) == devs.maxlen:
                self._point_dev_sum -= devs[0]
            devs.append(pz)
            self._point_dev_sum += pz
            raw = max(abs(z_now), self._point_dev_sum / len(devs))
            perr = abs(point)
            if self._point_spread == 0.0:
                self._point_spread = perr
            else:
                self._point_spread += self._a_spread * (
                    min(perr, 4.0 * self._point_spread) - self._point_spread)
        zs = self._zs
        assert zs is not None
        if not young:
            exp_out = expected
            if counts:
                ratio = (judged_level + _RATIO_PAD) / (expected + _RATIO_PAD)
            else:
                ratio = judged_level / expected if expected > 0 else None
            z = z_now
            mean, sd = zs.mean_sd()
            u = (raw - mean) / sd if sd > 0 else (0.0 if raw <= mean else _MAX_SURPRISE)
            tail = 0.5 * math.erfc(u / math.sqrt(2.0))
            surprise = min(_MAX_SURPRISE, -math.log10(tail) if tail > 0 else _MAX_SURPRISE)
            span = self._hi - self._lo
            if span > 0:
                novel = (level - self._hi) / span
                if p.two_sided:
                    novel = max(novel, (self._lo - level) / span)
            score = _score(raw, surprise, novel, ratio, level, expected, counts, p)
        if len(zs.values) >= _MIN_SCORES:
            # winsorised: a past burst must not make the next one look ordinary for a week
            mean, sd = zs.mean_sd()
            zs.push(max(mean - 3.0 * sd, min(raw, mean + 3.0 * sd)))
        else:
            zs.push(raw)
        self._lo = min(self._lo, level)
        self._hi = max(self._hi, level)

        # -- learn: robust (clipped) updates, so one burst barely moves the usual
        # a lasting shift (hours on one side) is the new normal: let the usual follow it
        self._drift += self._a_drift * (level - expected - self._drift)
        clip = 4.0 * max(spread, 1e-9) * norm + abs(self._drift)
        if self._flat is None:
            self._flat = level
        else:
            self._flat_err += self._a_err * (abs(level - flat) - self._flat_err)
            self._flat += self._a_flat * max(-clip, min(clip, level - flat))
        base = level / week
        if slot is None:
            self._slot[hour] = base
            self._slot_days[hour] = 1
            self._slot_seen[hour] = at
        else:
            assert usual is not None
            self._season_err += self._a_err * (abs(level - usual * week) - self._season_err)
            self._slot[hour] = slot + self._a_slot * max(-clip, min(clip, base - slot))
            seen = self._slot_seen[hour]
            if seen is not None and at - seen >= timedelta(hours=20):
                self._slot_days[hour] += 1
                self._slot_seen[hour] = at
            if counts and elapsed >= timedelta(days=7):
                gap = math.log(level + 1.0) - math.log(usual + 1.0)
                gap = max(-0.7, min(0.7, gap))
                self._weekday[weekday] += self._a_week * (gap - self._weekday[weekday])
        err = abs(resid)
        if self._spread == 0.0:
            self._spread = err
        else:
            self._spread += self._a_spread * (min(err, 4.0 * self._spread) - self._spread)
        if not seasonal_ok:
            # until the seasonal expectation may compete, it must not look better than flat
            self._season_err = self._flat_err + 1e-12
        return SpikeAssessment(at, value, level, exp_out, ratio, z, score, young, tail, surprise,
                               seasonal, novel, raw if not young else None)


_NORMAL = NormalDist()


def _poisson_z(total: float, lam: float) -> float:
    """How surprising *total* posts are when *lam* are expected, as a normal z.

    Above ~30 expected posts the variance-stabilised (Anscombe) difference is
    accurate; below, its tail is far too light (3 posts where 0.3 are usual is
    rarer than it says at one end and commoner at the other), so the exact
    Poisson tail ``P(X >= total)`` is turned into the z with the same tail.
    """
    anscombe = 2.0 * (math.sqrt(total + 0.375) - math.sqrt(lam + 0.375))
    if lam >= 30.0 or total <= lam:
        return anscombe
    k = round(total)
    lam = max(lam, 1e-3)
    term = math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))
    tail = 0.0
    j = k
    while term > 1e-12 * tail and j < k + 400:
        tail += term
        j += 1
        term *= lam / j
    if tail >= 0.5:
        return 0.0
    return -_NORMAL.inv_cdf(max(tail, 1e-300))


def _score(raw: float, surprise: float, novel: float | None, ratio: float | None,
           level: float, expected: float, counts: bool, p: SpikeParams) -> float:
    """Map the evidence to [0, 1] so that exactly meeting every parameter gives 0.5.

    The weakest criterion decides: a spike must be unusual for this series (a
    large and rare deviation, or a level beyond all seen so far) and, for
    counts, large relative to the usual and big enough to matter.
    """
    if raw <= 0.0:
        return 0.0
    unusual = min(raw / p.min_z if p.min_z > 0 else math.inf,
                  surprise / p.surprise if p.surprise > 0 else math.inf)
    if p.novelty is not None and novel is not None and novel >= p.novelty:
        unusual = max(unusual, 1.0)
    strengths = [unusual]
    if counts:
        if ratio is None or ratio <= 0:
            return 0.0
        change = abs(math.log(ratio)) if p.two_sided else math.log(ratio)
        if change <= 0:
            return 0.0
        strengths.append(change / math.log(max(p.factor, 1.0001)))
        if p.min_posts > 0:
            big = max(level, expected) if p.two_sided else level
            strengths.append(big / p.min_posts)
    weakest = min(strengths)
    if weakest == math.inf:
        return 1.0
    # logistic in log-strength: 1x → 0.5, 2x → ~0.94
    return 1.0 / (1.0 + math.exp(-4.0 * math.log(max(weakest, 1e-9))))
