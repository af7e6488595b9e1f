"""The streaming spike detector: a seasonal expectation, a count model over several windows,
and a tail probability. Long because the detector's state and its one update are one unit.

The detector is fed one bucket at a time, oldest first, and judges each
bucket with data up to it only (no look-ahead), so the same class runs in the
service, in ``monitor backtest`` and in the NAB benchmark. Memory per series is
bounded (one slot per step of the day, 7 weekday factors, the last few hours of
buckets, a capped history of scores) and each update costs O(1).

It assumes neither a step nor a season:

- the step is inferred from the first timestamps (unless given), and the
  windows are given in time (15 minutes, 1, 2 and 6 hours), so 5-minute,
  10-minute and hourly series are judged over the same spans;
- two expectations race: a flat one (a robust moving level) and a seasonal one
  (a robust level per step of the day, times a weekday factor for counts).
  Each keeps a running error and the one that has predicted better lately is
  used, so a series without a daily rhythm is judged against its recent level
  and one with a rhythm against the usual for this time of day.

Every bucket gets its own expectation. For each window the posts in it are
compared with the sum of the expectations over it: the deviation becomes a z
against the window's own recent error and, for counts, never more surprising
than the count model allows: the exact Poisson tail ``P(X >= observed)`` of the
window's total (so 30 posts where 10 were expected is judged by its real tail
at 0.2 posts per bucket, and an over-dispersed busy tag by its own noise). A
short burst shows in the 15-minute window, a 3x surge of a small tag over two
hours in the 2-hour window, a slow doubling in the 6-hour one.

Finally, as NAB's "anomaly likelihood" does, the largest z is compared with the
distribution of this series' own recent largest z values: a series that is
always jumpy needs a bigger jump. ``surprise`` is ``-log10`` of that tail
probability.

A bucket is a spike when, in at least ``agree`` windows, every criterion is
met: ``min_z`` and ``surprise`` (or a level beyond all seen so far:
``novelty``) and, for counts, ``factor`` (times the usual) and ``min_posts``.
``score`` maps the weakest criterion of the ``agree``-th best window to [0, 1]
so that meeting it exactly gives 0.5. Asking two windows to agree is what
carries across NAB's families: a bursty tag's lone 15-minute blip shows in one
window only, a real rise at two time scales (``agree_z``: the other windows need
only that fraction of ``min_z``). A series with less than ``min_history`` of data
is *young*: assessed but never fires.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

__all__ = ["SpikeAssessment", "SpikeDetector", "SpikeParams", "poisson_tail"]

_MEAN_ABS_TO_SIGMA = 1.2533  # sigma of a normal = 1.2533 x its mean absolute deviation
_MAX_SURPRISE = 30.0
# counts: a ratio of near-empty buckets (1 post vs 0.01 usual) must not look like 100x;
# small enough that a night-time rise at 3x half a post per bucket still reads ~2.5x
_RATIO_PAD = 0.1
_MIN_SCORES = 100  # deviations seen before their distribution is trusted
_MAX_WINDOW = 2016  # buckets: a week of 5-minute buckets
_TWO_WEEKS = timedelta(days=14)
_ONE_WEEK = timedelta(days=7)
_NEXT_DAY = timedelta(hours=20)


@dataclass(frozen=True, slots=True)
class SpikeParams:
    """What counts as a spike, in terms a person can check (defaults: see the README)."""

    # the same defaults as the spike rule's (chosen on NAB's 53 series, see the README)
    factor: float = 2.0  # counts: posts in a window at least this many times the usual
    min_posts: float = 1.0  # counts: at least this many posts per bucket in that window
    min_z: float = 3.5  # deviations above the usual (count model / own noise)
    surprise: float = 0.0  # -log10 tail probability of this z among recent z values; 0: off
    smooth: int = 3  # buckets in the shortest window
    # the longer windows, in time (converted with the step; one bucket at least)
    windows: tuple[timedelta, ...] = (timedelta(hours=1), timedelta(hours=2), timedelta(hours=6))
    bucket: timedelta | None = None  # the step; None infers it from the timestamps
    baseline_days: float = 14.0  # memory of the seasonal (time-of-day) expectation
    flat_hours: float = 24.0  # memory of the flat expectation
    history_days: float = 7.0  # memory of the z distribution behind ``surprise``
    min_history: timedelta = timedelta(hours=48)
    counts: bool | None = None  # values are post counts (count gates apply); None: infer
    two_sided: bool = False  # also judge drops (the spike rule does not: flatline does)
    # a level beyond everything seen so far by this fraction of the seen range is
    # unusual whatever the noise says (NAB's "spatial anomaly"); None: off
    novelty: float | None = 0.0
    # windows that must each meet every criterion at once (capped at the windows there
    # are): a lone 15-minute blip of a bursty tag pages nobody, a rise seen at two
    # time scales does (chosen on NAB like the rest, see the README)
    agree: int = 2
    # the other agreeing windows need only this fraction of ``min_z`` (a small tag's
    # night-time surge is plain over two hours, borderline over one)
    agree_z: float = 0.75


@dataclass(frozen=True, slots=True)
class SpikeAssessment:
    """The detector's judgement of one bucket (numbers of its decisive window)."""

    at: datetime
    value: float  # posts in this bucket
    level: float  # posts per bucket over the decisive window
    expected: float | None  # the usual per bucket over that window; None when young
    ratio: float | None  # (level + 0.1) / (expected + 0.1) for counts, level / expected otherwise
    z: float | None  # deviations above the usual in that window (count model / own noise)
    score: float  # anomaly score in [0, 1]; >= 0.5 means every parameter is met
    young: bool  # too little history to judge
    tail: float | None = None  # probability of a z this high among this series' recent ones
    surprise: float | None = None  # -log10(tail)
    seasonal: bool = False  # whether the time-of-day expectation was used
    novel: float | None = None  # how far beyond the seen range, in units of the range
    deviation: float | None = None  # the largest z over the windows (two-sided: its size)
    window: int = 1  # buckets in the decisive window
    p_value: float | None = None  # the count model's (or normal) tail of that window's z

    @property
    def is_spike(self) -> bool:
        return self.score >= 0.5


class _Stream:
    """A bounded window of numbers: running moments and ranks (O(log n) search per update).

    The ranks keep the tail honest where the normal approximation is not: a
    deviation that this series has already exceeded k times in the window is
    never called rarer than (k + 1) in (n + 1), however thin a normal tail says
    it is.
    """

    __slots__ = ("n", "ordered", "sq", "sum", "unranked", "values")

    def __init__(self, maxlen: int) -> None:
        self.values: deque[float] = deque(maxlen=maxlen)
        self.ordered: list[float] = []
        self.sum = 0.0
        self.sq = 0.0
        self.n = 0
        self.unranked = 0  # the oldest values held that are not in ``ordered``

    def push(self, x: float, ranked: bool = True) -> None:
        """Add *x*; an unranked one (the first, while the noise is still being learnt:
        wild) counts in the moments only, so it cannot make a week of real
        deviations look ordinary."""
        values = self.values
        ordered = self.ordered
        if len(values) == values.maxlen:
            old = values[0]
            self.sum -= old
            self.sq -= old * old
            if self.unranked:
                self.unranked -= 1
            else:
                del ordered[bisect_left(ordered, old)]
        values.append(x)
        if ranked:
            insort(ordered, x)
        else:
            self.unranked += 1
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

    def tail(self, x: float) -> float:
        """The larger of the normal tail of *x* and its rank among the values held."""
        mean, sd = self.mean_sd()
        u = (x - mean) / sd if sd > 0 else (0.0 if x <= mean else _MAX_SURPRISE)
        normal = 0.5 * math.erfc(u / math.sqrt(2.0))
        ordered = self.ordered
        above = len(ordered) - bisect_left(ordered, x)  # values at least as large
        return max(normal, above / (len(ordered) + 1.0))


class SpikeDetector:
    """Feed buckets oldest first with :meth:`update`; each call returns an assessment.

    After each update, :attr:`window_z`, :attr:`window_level` and
    :attr:`window_expected` hold every window's numbers (the benchmark re-applies
    the gates on them); :attr:`window_sizes` are the windows in buckets.
    """

    def __init__(self, params: SpikeParams | None = None) -> None:
        self.params = params or SpikeParams()
        p = self.params
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._deltas: list[float] = []
        self._step = p.bucket.total_seconds() if p.bucket else 0.0
        self._counts = p.counts is not False  # every value so far a non-negative integer
        self._flat: float | None = None
        self._flat_err = 0.0
        self._flat_n = 1
        self._slot: list[float | None] = []
        self._slot_days: list[int] = []
        self._slot_n: list[int] = []
        self._slot_seen: list[datetime | None] = []
        self._slot_seconds = 0.0
        self._season_err = 0.0
        self._wk_obs = [0.0] * 7  # EWMA per weekday of posts and of the time-of-day usual
        self._wk_exp = [0.0] * 7
        self._drift = 0.0  # EWMA of the signed residual over hours: a lasting shift
        self._point_spread = 0.0  # EWMA of |normalised residual| of single buckets
        self._zs: _Stream | None = None
        self._lo = math.inf
        self._hi = -math.inf
        self._n = 0  # buckets seen
        self._obs: list[float] = []  # ring buffers of the last buckets and their expectations
        self._exp: list[float] = []
        self.window_sizes: list[int] = []
        self._sum_obs: list[float] = []
        self._sum_exp: list[float] = []
        self._spread: list[float] = []  # per window: EWMA of |normalised residual|
        self.window_z: list[float] = []
        self.window_level: list[float] = []
        self.window_expected: list[float] = []
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
            self._slot_n = [0] * n_slots
            self._slot_seen = [None] * n_slots
            self._slot_seconds = 86400.0 / n_slots
        self._a_slot = 1.0 / max(p.baseline_days, 1.0)
        self._a_flat = 1.0 / max(p.flat_hours * per_hour, 1.0)
        self._a_err = 1.0 / max(2.0 * per_day, 2.0)  # which expectation won lately: two days
        self._a_spread = 1.0 / max(3.0 * per_day, 2.0)
        self._a_week = 1.0 / max(per_day, 2.0)
        self._a_drift = 1.0 / max(6.0 * per_hour, 2.0)
        sizes = {max(1, min(_MAX_WINDOW, p.smooth))}
        sizes.update(max(1, min(_MAX_WINDOW, round(w.total_seconds() / step))) for w in p.windows)
        ordered = sorted(sizes)
        if ordered != self.window_sizes:
            self._resize(ordered)
        size = max(int(p.history_days * per_day), 50)
        if self._zs is None:
            self._zs = _Stream(size)
        elif self._zs.values.maxlen != size:
            previous = self._zs
            self._zs = _Stream(size)
            for i, z in enumerate(previous.values):
                self._zs.push(z, ranked=i >= previous.unranked)

    def _resize(self, sizes: list[int]) -> None:
        """New windows (the step was learnt): keep the buckets already seen."""
        ring = len(self._obs)
        kept = min(self._n, ring)
        old_obs = [self._obs[(self._n - kept + i) % ring] for i in range(kept)] if ring else []
        old_exp = [self._exp[(self._n - kept + i) % ring] for i in range(kept)] if ring else []
        spreads = dict(zip(self.window_sizes, self._spread, strict=True))
        self.window_sizes = sizes
        ring = sizes[-1] + 1
        self._obs = [0.0] * ring
        self._exp = [0.0] * ring
        old_obs, old_exp = old_obs[-ring + 1:], old_exp[-ring + 1:]
        start = self._n - len(old_obs)
        for i, (o, e) in enumerate(zip(old_obs, old_exp, strict=True)):
            self._obs[(start + i) % ring] = o
            self._exp[(start + i) % ring] = e
        self._spread = [spreads.get(w, 0.0) for w in sizes]
        self._recount()
        self.window_z = [0.0] * len(sizes)
        self.window_level = [0.0] * len(sizes)
        self.window_expected = [0.0] * len(sizes)

    def _recount(self) -> None:
        """The window sums added afresh (after a resize, and now and then: float drift)."""
        ring = len(self._obs)
        self._sum_obs = []
        self._sum_exp = []
        for w in self.window_sizes:
            k = min(w, self._n)
            idx = [(self._n - 1 - j) % ring for j in range(k)]
            self._sum_obs.append(math.fsum(self._obs[i] for i in idx))
            self._sum_exp.append(math.fsum(self._exp[i] for i in idx))

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
        n_slots = len(self._slot)
        hour = int((at.hour * 3600 + at.minute * 60 + at.second) // self._slot_seconds) % n_slots
        weekday = at.weekday()
        elapsed = at - self._first

        # -- this bucket's expectation, before learning from it
        flat = self._flat if self._flat is not None else value
        slot = self._slot[hour]
        # the usual for this time of day: this slot and its two neighbours (less noise)
        total_near, known = 0.0, 0
        for v in (self._slot[hour - 1], slot, self._slot[(hour + 1) % n_slots]):
            if v is not None:
                total_near += v
                known += 1
        usual = total_near / known if known else None
        week = 1.0
        if counts and elapsed >= _TWO_WEEKS:
            week = (self._wk_obs[weekday] + _RATIO_PAD) / (self._wk_exp[weekday] + _RATIO_PAD)
            week = max(0.5, min(2.0, week))
        seasonal_ok = usual is not None and self._slot_days[hour] >= 2
        seasonal = seasonal_ok and self._season_err < self._flat_err
        expected = usual * week if seasonal and usual is not None else flat
        expected = max(expected, 0.0) if counts else expected

        # -- the windows: posts against the sum of their buckets' expectations
        n = self._n
        ring = len(self._obs)
        sizes = self.window_sizes
        slot_i = n % ring
        for j, w in enumerate(sizes):
            if n >= w:
                leaving = (n - w) % ring
                self._sum_obs[j] -= self._obs[leaving]
                self._sum_exp[j] -= self._exp[leaving]
            self._sum_obs[j] += value
            self._sum_exp[j] += expected
        self._obs[slot_i] = value
        self._exp[slot_i] = expected
        self._n = n = n + 1
        if n % 4096 == 0:
            self._recount()
        zs_list = self.window_z
        levels = self.window_level
        exps = self.window_expected
        a_spread = self._a_spread
        sided = p.two_sided
        raw = -_MAX_SURPRISE
        sum_obs = self._sum_obs
        sum_exp = self._sum_exp
        spreads = self._spread
        sqrt = math.sqrt
        # the hot loop of the service and the benchmarks: conditionals, not min()/max()
        for j, w in enumerate(sizes):
            k = w if n >= w else n
            total = sum_obs[j]
            lam = sum_exp[j]
            if lam < 0.0 and counts:
                lam = 0.0  # float drift of the running sum
            level = total / k
            mean_exp = lam / k
            resid = (level - mean_exp) / sqrt(mean_exp + 1.0) if counts else level - mean_exp
            spread = spreads[j]
            if spread > 0:
                z = resid / (spread * _MEAN_ABS_TO_SIGMA)
            else:
                z = 0.0 if resid == 0 else math.copysign(_MAX_SURPRISE, resid)
            if counts:
                if z > 2.0:  # below, the count model cannot make it any more surprising
                    pz = _poisson_z(total, lam)
                    if pz < z:
                        z = pz
                elif z < 0.0:
                    pz = 2.0 * (sqrt(total + 0.375) - sqrt(lam + 0.375))
                    if pz > z:
                        z = pz
            if z > _MAX_SURPRISE:
                z = _MAX_SURPRISE
            elif z < -_MAX_SURPRISE:
                z = -_MAX_SURPRISE
            zs_list[j] = z
            levels[j] = level
            exps[j] = mean_exp
            dev = -z if sided and z < 0 else z
            if dev > raw:
                raw = dev
            err = resid if resid >= 0 else -resid
            if spread == 0.0:
                spreads[j] = err
            else:
                cap = 4.0 * spread
                spreads[j] = spread + a_spread * ((err if err < cap else cap) - spread)

        zs = self._zs
        assert zs is not None
        young = elapsed < p.min_history or len(zs.values) < _MIN_SCORES
        short = levels[0]
        best = 0
        score = 0.0
        tail: float | None = None
        surprise: float | None = None
        novel: float | None = None
        if not young:
            tail = zs.tail(raw)
            surprise = min(_MAX_SURPRISE, -math.log10(tail) if tail > 0 else _MAX_SURPRISE)
            span = self._hi - self._lo
            if span > 0:
                novel = (short - self._hi) / span
                if sided:
                    novel = max(novel, (self._lo - short) / span)
            best, score = _judge(zs_list, levels, exps, surprise, novel, counts, p)
        if len(zs.values) >= _MIN_SCORES:
            # winsorised: a past burst must not make the next one look ordinary for a week
            mean, sd = zs.mean_sd()
            zs.push(max(mean - 3.0 * sd, min(raw, mean + 3.0 * sd)))
        else:
            zs.push(raw, ranked=False)
        self._lo = min(self._lo, short)
        self._hi = max(self._hi, short)

        # -- learn: robust (clipped) updates, so one burst barely moves the usual
        norm = math.sqrt(max(expected, 0.0) + 1.0) if counts else 1.0
        point = (value - expected) / norm
        spread = self._point_spread * _MEAN_ABS_TO_SIGMA
        # a lasting shift (hours on one side) is the new normal: let the usual follow it
        # (each bucket counted at most 4 deviations: a two-hour burst is no new normal)
        wide = 4.0 * max(spread, 1e-9) * norm
        self._drift += self._a_drift * (max(-wide, min(wide, value - expected)) - self._drift)
        clip = wide + abs(self._drift)
        if self._flat is None:
            self._flat = value
        else:
            self._flat_err += self._a_err * (abs(value - flat) - self._flat_err)
            self._flat_n += 1
            # a plain mean until the memory is full: a first empty bucket is no usual
            a_flat = max(self._a_flat, 1.0 / self._flat_n)
            self._flat += a_flat * max(-clip, min(clip, value - flat))
        base = value / week
        if slot is None:
            self._slot[hour] = base
            self._slot_days[hour] = 1
            self._slot_n[hour] = 1
            self._slot_seen[hour] = at
        else:
            assert usual is not None
            self._season_err += self._a_err * (abs(value - usual * week) - self._season_err)
            self._slot_n[hour] += 1
            a_slot = max(self._a_slot, 1.0 / self._slot_n[hour])
            self._slot[hour] = slot + a_slot * max(-clip, min(clip, base - slot))
            seen = self._slot_seen[hour]
            if seen is not None and at - seen >= _NEXT_DAY:
                self._slot_days[hour] += 1
                self._slot_seen[hour] = at
            if counts and elapsed >= _ONE_WEEK:
                a = self._a_week
                capped = min(value, usual + clip)
                self._wk_obs[weekday] += a * (capped - self._wk_obs[weekday])
                self._wk_exp[weekday] += a * (usual - self._wk_exp[weekday])
        err = abs(point)
        if self._point_spread == 0.0:
            self._point_spread = err
        else:
            self._point_spread += a_spread * (min(err, 4.0 * self._point_spread)
                                              - self._point_spread)
        if not seasonal_ok:
            # until the seasonal expectation may compete, it must not look better than flat
            self._season_err = self._flat_err + 1e-12
        if young:
            return SpikeAssessment(at, value, short, None, None, None, 0.0, True,
                                   seasonal=seasonal, window=sizes[0])
        if score < 0.5:
            best = 0  # no window fires: report the shortest (the usual right now)
        level, exp_out, z_out = levels[best], exps[best], zs_list[best]
        if counts:
            ratio: float | None = (level + _RATIO_PAD) / (exp_out + _RATIO_PAD)
        else:
            ratio = level / exp_out if exp_out > 0 else None
        p_value = _normal_tail(abs(z_out))
        return SpikeAssessment(at, value, level, exp_out, ratio, z_out, score, False, tail,
                               surprise, seasonal, novel, raw, sizes[best], p_value)


_NORMAL = NormalDist()


def _normal_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def poisson_tail(total: float, lam: float) -> float:
    """``P(X >= total)`` for X ~ Poisson(*lam*) (summed until the terms vanish)."""
    k = round(total)
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    term = math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))
    tail = 0.0
    j = k
    while term > 1e-12 * tail and j < k + 400:
        tail += term
        j += 1
        term *= lam / j
    return min(tail, 1.0)


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
    tail = poisson_tail(total, max(lam, 1e-3))
    if tail >= 0.5:
        return 0.0
    return -_NORMAL.inv_cdf(max(tail, 1e-300))


def _judge(zs: list[float], levels: list[float], exps: list[float], surprise: float,
           novel: float | None, counts: bool, p: SpikeParams) -> tuple[int, float]:
    """(decisive window, score): the window whose weakest criterion is strongest, and
    the score of the ``agree``-th strongest (all of them must meet every criterion).

    A spike must be unusual for this series (a large and rare deviation, or a
    level beyond all seen so far) and, for counts, large relative to the usual
    and big enough to matter, all in the same window. Meeting every criterion
    exactly gives 0.5.
    """
    rare = surprise / p.surprise if p.surprise > 0 else math.inf
    # beyond the seen range (sensor-like series only: for counts the count model judges;
    # a small tag's 15-minute record is a few posts, not news)
    is_novel = (not counts and p.novelty is not None and novel is not None
                and novel >= p.novelty)
    log_factor = math.log(p.factor if p.factor > 1.0001 else 1.0001)
    min_z = p.min_z
    min_posts = p.min_posts
    sided = p.two_sided
    soft = p.agree_z if 0.0 < p.agree_z < 1.0 else 1.0
    best, best_strength = 0, -math.inf
    strengths: list[float] = []  # per window, its weakest criterion with min_z * agree_z
    for j, z in enumerate(zs):
        dev = -z if sided and z < 0 else z
        if dev <= 0.0:
            continue
        large = dev / min_z if min_z > 0 else math.inf
        if is_novel and large < 1.0:  # beyond the seen range: large enough, if also rare
            large = 1.0
        weakest = large if large < rare else rare
        agreeing = large / soft if large / soft < rare else rare
        if counts:
            level, usual = levels[j], exps[j]
            change = math.log((level + _RATIO_PAD) / (usual + _RATIO_PAD))
            if sided and change < 0:
                change = -change
            if change <= 0:
                continue
            strength = change / log_factor
            if strength < weakest:
                weakest = strength
            if strength < agreeing:
                agreeing = strength
            if min_posts > 0:
                big = level if not sided or level >= usual else usual
                if big / min_posts < weakest:
                    weakest = big / min_posts
                if big / min_posts < agreeing:
                    agreeing = big / min_posts
        strengths.append(agreeing)
        if weakest > best_strength:
            best, best_strength = j, weakest
    agree = p.agree if p.agree < len(zs) else len(zs)
    if len(strengths) < agree or best_strength == -math.inf:
        return (best if strengths else max(range(len(zs)), key=lambda j: zs[j])), 0.0
    if agree > 1:
        # the best window meets every criterion, and agree - 1 others the softer z
        strengths.sort(reverse=True)
        if strengths[agree - 1] < best_strength:
            best_strength = strengths[agree - 1]
    if best_strength == math.inf:
        return best, 1.0
    # logistic in log-strength: 1x → 0.5, 2x → ~0.94
    return best, 1.0 / (1.0 + math.exp(-4.0 * math.log(max(best_strength, 1e-9))))
