"""The volume lag between two hourly count series, and how sure it is.

Raw hourly counts of two hashtags correlate at almost every lag: both follow
the same day/night rhythm and both drift with platform activity, so a naive
cross-correlation peaks wherever the shared rhythm lines up and says nothing
about B answering A. Before correlating, each series is (:func:`prepare`)

1. put on a log scale (``log1p``), so one viral hour does not outweigh a month;
2. stripped of its usual level for that hour of the day: the mean of the same
   UTC hour over the ±3 days around it. A local profile removes the shared daily
   rhythm *and* a shared rise (two tags taking off together), where one
   profile over the whole range left a daily wave in both;
3. first-differenced, which removes what is left of slow trends and level
   shifts and turns "B is high after A is high" into "B moves after A moves";
4. divided by its own noise level over the ±24 hours around each point: on a
   log scale a quiet stretch is several times noisier than a busy one, and two
   tags that rise together would otherwise share that change of noise;
5. prewhitened (Box–Jenkins): an AR(p) model is fitted to A's series by least
   squares and the same filter is applied to both, so autocorrelation left in A
   cannot smear the peak over neighbouring lags.

The normalised cross-correlation ``r(k) = corr(a[t], b[t+k])`` is then computed
for ``k`` in ``[-max_lag, max_lag]`` hours (:func:`cross_correlation`). By
convention a positive lag ``k`` pairs A with B ``k`` hours *later*: a peak there
means B moves after A; a negative one, A after B.

Significance: the best of K = 2·max_lag + 1 lags is compared with what the
best lag reaches when the two series are unrelated *but keep their own
autocorrelation*. Each r(k) is taken as normal with the larger of two spreads:

- 1/√n, its spread when A is white (as after prewhitening);
- its spread over the rotations of B against A (every circular shift that keeps
  the compared lags clear of the real alignment): a rotated B keeps all of its
  autocorrelation, bursts and rhythm, only its alignment with A is broken. One
  FFT gives r at every shift, so this costs well under a millisecond.

and the best of the K lags is judged with Šidák's correction for K tries.
``band`` is the |r| the best lag of unrelated series passes 5 % of the time
(the chart's grey band), ``p_value`` the probability of a best lag at least
this strong. The per-lag band ``±1.96/√n`` used before let the best of 97
lags of two unrelated, autocorrelated tags pass almost every time.
(Taking the rotations' own distribution of the best lag instead would need
far more rotations than a range has hours: neighbouring rotations share all
but one of their lags, so 700 hours give only a handful of independent ones.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = ["ALPHA", "HOURS_PER_DAY", "Crosscorrelation", "FloatArray", "cross_correlation",
           "prepare"]

FloatArray = npt.NDArray[np.float64]

HOURS_PER_DAY = 24
ALPHA = 0.05  # the significance level of "significant" and of the band
MIN_SURROGATES = 100  # rotations needed before their spread is trusted
SCALE_HALF_WINDOW = 24  # hours either side over which the local noise level is measured
SEASON_HALF_DAYS = 3  # days either side whose same hour gives the usual level of an hour


@dataclass(frozen=True, slots=True)
class Crosscorrelation:
    """r for each lag in hours (B shifted against A); ``band``: the best lag's 95 % null."""

    lags: tuple[int, ...]
    r: tuple[float, ...]
    best_lag: int | None  # lag of the strongest r (positive: B later); None: not estimated
    best_r: float | None
    band: float
    n: int  # hours the correlation covers (the span where both tags have posts)
    p_value: float | None = None  # of a best lag this strong among unrelated series
    note: str | None = None  # why no lag was estimated (too little data), for people
    span_since: datetime | None = None  # the span correlated (relate() only)
    span_until: datetime | None = None
    active_a: int = 0  # hours with posts of A, of B, inside the span
    active_b: int = 0

    @property
    def significant(self) -> bool:
        return self.best_r is not None and abs(self.best_r) > self.band



def _deseasonalise(values: FloatArray, first_hour: int, days: int = SEASON_HALF_DAYS
                   ) -> FloatArray:
    """*values* minus the mean of the same UTC hour of day over the ±*days* around it
    (itself left out).

    A local profile, not one over the whole range: when a tag grows from 3 to 40
    posts/h its daily swing on the log scale changes, and a single profile would
    leave a daily wave in both tags that rises and falls together.
    """
    n = values.size
    pad = first_hour % HOURS_PER_DAY  # column h of the grid holds UTC hour h
    rows = -(-(pad + n) // HOURS_PER_DAY)
    flat = np.full(rows * HOURS_PER_DAY, np.nan)
    flat[pad:pad + n] = values
    grid = flat.reshape(rows, HOURS_PER_DAY)
    seen = ~np.isnan(grid)
    filled = np.where(seen, grid, 0.0)
    sums = np.vstack([np.zeros((1, HOURS_PER_DAY)), np.cumsum(filled, axis=0)])
    counts = np.vstack([np.zeros((1, HOURS_PER_DAY)), np.cumsum(seen, axis=0)])
    day = np.arange(rows)
    lo, hi = np.maximum(day - days, 0), np.minimum(day + days + 1, rows)
    around = sums[hi] - sums[lo] - filled
    count = counts[hi] - counts[lo] - seen
    profile = np.divide(around, count, out=np.zeros_like(around), where=count > 0)
    return np.asarray(values - profile.reshape(-1)[pad:pad + n], dtype=np.float64)


def _ar_coefficients(x: FloatArray, order: int) -> FloatArray:
    """Least-squares AR(order) coefficients of a zero-mean series."""
    if order <= 0 or x.size <= order * 4:
        return np.zeros(0)
    rows = np.column_stack([x[order - k - 1 : x.size - k - 1] for k in range(order)])
    target = x[order:]
    coef, *_ = np.linalg.lstsq(rows, target, rcond=None)
    return np.asarray(coef, dtype=np.float64)


def _ar_filter(x: FloatArray, coef: FloatArray) -> FloatArray:
    order = coef.size
    if order == 0:
        return x
    predicted = np.zeros(x.size - order)
    for k in range(order):
        predicted += coef[k] * x[order - k - 1 : x.size - k - 1]
    return np.asarray(x[order:] - predicted, dtype=np.float64)


def prepare(a: Sequence[float] | FloatArray, b: Sequence[float] | FloatArray, first_hour: int = 0,
            ar_order: int = 6) -> tuple[FloatArray, FloatArray]:
    """Turn two aligned hourly count series into the prewhitened pair that is correlated.

    *first_hour* is the UTC hour of day of the first point (for the daily profile).
    """
    xa = np.log1p(np.asarray(a, dtype=np.float64))
    xb = np.log1p(np.asarray(b, dtype=np.float64))
    if xa.size >= 2 * HOURS_PER_DAY:
        xa, xb = _deseasonalise(xa, first_hour), _deseasonalise(xb, first_hour)
    da, db = np.diff(xa), np.diff(xb)
    da, db = _local_scale(da - da.mean()), _local_scale(db - db.mean())
    coef = _ar_coefficients(da, ar_order)
    return _ar_filter(da, coef), _ar_filter(db, coef)


def _local_scale(x: FloatArray, half: int = SCALE_HALF_WINDOW) -> FloatArray:
    """*x* divided by its root mean square over the surrounding ±*half* hours.

    On a log scale a quiet stretch (3 posts/h) is several times noisier than a busy one
    (40 posts/h). Two tags that rise together share that change of noise, and the
    correlation of their noisy stretches would then count several times over, so the
    best of many lags beats the null far more often than 5 %.
    """
    if x.size < 2 * half + 1:
        return x
    squares = np.concatenate(([0.0], np.cumsum(x * x)))
    idx = np.arange(x.size)
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, x.size)
    rms = np.sqrt((squares[hi] - squares[lo]) / (hi - lo))
    floor = max(float(np.sqrt(squares[-1] / x.size)) * 1e-3, 1e-12)
    return np.asarray(x / np.maximum(rms, floor), dtype=np.float64)


def cross_correlation(a: FloatArray, b: FloatArray, max_lag: int) -> Crosscorrelation:
    """Normalised r(k) = corr(a[t], b[t+k]) for |k| <= max_lag (the standard biased estimator),
    with the best lag judged against the nulls described in the module docstring."""
    n = int(min(a.size, b.size))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    # beyond a third of the points a lag compares too few hours to mean anything
    max_lag = max(0, min(max_lag, n // 3))
    lags = list(range(-max_lag, max_lag + 1))
    if denom == 0.0 or n < 3:
        # one series is flat: nothing moves, so nothing can follow
        return Crosscorrelation(tuple(lags), tuple(0.0 for _ in lags), None, None,
                                _sidak_band(n, len(lags)), n)
    # every lag at once: the linear cross-correlation by FFT (zero-padded past 2n, so
    # nothing wraps); c[k] = sum_t a[t] b[t + k], negative lags at the end
    size = 1 << (2 * n - 1).bit_length()
    linear = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size) / denom
    values = [float(linear[k]) for k in lags]  # k < 0 indexes from the end
    best = max(range(len(lags)), key=lambda i: (abs(values[i]), -abs(lags[i])))
    # B rotated by s against A is the lag s plus the lag s - n: the circular correlation
    circular = linear[:n].copy()
    circular[1:] += linear[size - n + 1 :]
    band, p_value = _null(circular, n, max_lag, abs(values[best]))
    return Crosscorrelation(tuple(lags), tuple(values), lags[best], values[best], band, n,
                            p_value)


def _sidak_band(n: int, k: int, sd: float | None = None) -> float:
    """|r| the best of *k* independent N(0, sd²) correlations (sd 1/√n by default) exceeds
    with probability ALPHA."""
    if n <= 0:
        return 1.0
    sd = sd if sd is not None else 1.0 / math.sqrt(n)
    per_lag = -math.expm1(math.log1p(-ALPHA) / max(k, 1))  # Šidák: 1 - (1 - ALPHA)^(1/k)
    return min(1.0, NormalDist().inv_cdf(1.0 - per_lag / 2.0) * sd)


def _sidak_p(r: float, sd: float, k: int) -> float:
    per_lag = math.erfc(abs(r) / (sd * math.sqrt(2.0)))
    if per_lag >= 1.0:
        return 1.0
    return -math.expm1(k * math.log1p(-per_lag))


def _null(circular: FloatArray, n: int, max_lag: int, observed: float) -> tuple[float, float]:
    """(band, p) of the best |r| over 2·max_lag + 1 lags for unrelated series.

    Each r(k) is taken as normal with the larger of two spreads: 1/√n (what it has
    when A is white, as after prewhitening) and its spread over the rotations of B
    against A that keep clear of the compared lags (*circular*: r at every rotation;
    what it has with everything each series really carries: leftover
    autocorrelation, bursts, a noise level both tags change at the same time). The
    best of the K lags is then judged with Šidák's correction for K tries.
    """
    k = 2 * max_lag + 1
    sd = 1.0 / math.sqrt(n)
    if n - k >= MIN_SURROGATES:
        rotated = circular[max_lag + 1 : n - max_lag]
        sd = max(sd, float(np.sqrt(np.mean(rotated * rotated))))
    return _sidak_band(n, k, sd), _sidak_p(observed, sd, k)
