"""The shift test behind the sentiment-shift and emerging co-tag rules.

Both rules ask the same question of a per-post quantity (a post's VADER
compound; whether a post of the tag also carries the co-tag, 0 or 1): is its
mean over the recent window further from the baseline mean than the data's
own variation explains? No fixed "0.25 sentiment points" threshold: the
answer is a z score whose spread comes from the baseline itself.

The baseline is cut into blocks as long as the window (168 one-hour blocks
for a 7-day baseline), so it shows two kinds of variation:

* between posts (``within``): a window of *n* posts has a mean that wobbles
  by ``within / n`` even when nothing changes — what dominates at 10 posts/h;
* between windows (``tau2``): hours differ for reasons no one would page
  about (a thread, the time of day) — what dominates at 200 posts/h, where an
  iid test would see "significant" shifts every hour.

``tau2`` is the method-of-moments (DerSimonian–Laird) estimate from the
spread of the block means. The null variance of (recent mean − baseline
mean) is ``within / n_now + within / N + tau2`` and ``z`` is the difference
over its square root.

Everything is vectorised over a leading "steps" axis so that the instant
check (one step) and the backtest (every step of 90 days at once) run the
very same arithmetic: the same inputs give the same z to the last bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ShiftTest", "block_sums", "shift_test", "tail"]

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# the smallest per-post variance a compound score is believed to have: a
# baseline where every post scored the same (a test fixture, a bot) must not
# make the smallest wobble infinitely significant
MIN_WITHIN = 1e-3
Z_CAP = 99.0  # JSON has no infinity


@dataclass(frozen=True, slots=True)
class ShiftTest:
    """Per step: the recent and baseline means, their counts, the spreads and z."""

    n_now: Array
    mean_now: Array  # NaN when n_now == 0
    n_base: Array
    mean_base: Array  # NaN when n_base == 0 (binary: the smoothed share)
    within: Array  # per-post variance
    tau2: Array  # between-window variance of window means
    sd: Array  # null standard deviation of (mean_now - mean_base)
    z: Array  # (mean_now - mean_base) / sd, capped at ±Z_CAP; 0 where undefined


def block_sums(prefix: npt.NDArray[Any], ends: IntArray, window: int, blocks: int
               ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Sums over the recent window and over each baseline block, from a prefix sum.

    ``prefix[i]`` is the sum of buckets ``[0, i)``; a step ending at bucket
    index ``e`` has its recent window ``[e - window, e)`` and baseline block
    ``k`` (1 = nearest) ``[e - window - k*window, e - window - (k-1)*window)``.
    Indices before the first bucket read as zero. Returns (recent (S,), blocks (S, K)).
    """
    hi = ends[:, None] - window * np.arange(1, blocks + 1)[None, :]
    lo = hi - window
    last = len(prefix) - 1
    recent = prefix[np.clip(ends, 0, last)] - prefix[np.clip(ends - window, 0, last)]
    return recent, prefix[np.clip(hi, 0, last)] - prefix[np.clip(lo, 0, last)]


def shift_test(
    n_blocks: Array, s_blocks: Array, q_blocks: Array,
    n_now: Array, s_now: Array, *, binary: bool = False,
) -> ShiftTest:
    """The z of the recent mean against the baseline blocks (see the module docstring).

    ``n``: posts, ``s``: sum of the quantity, ``q``: sum of its squares (for a
    0/1 quantity ``q == s``). With *binary*, the baseline share is smoothed
    (``(S + 0.5) / (N + 1)``) and the per-post variance is at least that
    share's binomial ``p (1 - p)``: a co-tag never seen before has a share of
    zero, but not a variance of zero.
    """
    n_blocks = np.asarray(n_blocks, dtype=np.float64)
    s_blocks = np.asarray(s_blocks, dtype=np.float64)
    q_blocks = np.asarray(q_blocks, dtype=np.float64)
    n_now = np.asarray(n_now, dtype=np.float64)
    s_now = np.asarray(s_now, dtype=np.float64)
    big_n = n_blocks.sum(axis=1)
    big_s = s_blocks.sum(axis=1)
    used = n_blocks > 0
    k_used = used.sum(axis=1).astype(np.float64)
    safe_n = np.where(used, n_blocks, 1.0)
    # sum over blocks of s_i^2 / n_i: the between-block part of the sum of squares
    s2n = np.where(used, s_blocks * s_blocks / safe_n, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if binary:
            mean_base = (big_s + 0.5) / (big_n + 1.0)
        else:
            mean_base = np.where(big_n > 0, big_s / np.maximum(big_n, 1.0), np.nan)
        within_ss = np.maximum(q_blocks.sum(axis=1) - s2n, 0.0)
        within = within_ss / np.maximum(big_n - k_used, 1.0)
        floor = mean_base * (1.0 - mean_base) if binary else np.full_like(big_n, MIN_WITHIN)
        within = np.maximum(within, floor)
        grand = big_s / np.maximum(big_n, 1.0)
        q_between = s2n - big_n * grand * grand  # sum n_i (m_i - grand)^2
        denom = big_n - (n_blocks * n_blocks).sum(axis=1) / np.maximum(big_n, 1.0)
        tau2 = np.where(denom > 0,
                        np.maximum(q_between - (k_used - 1.0) * within, 0.0)
                        / np.where(denom > 0, denom, 1.0), 0.0)
        mean_now = np.where(n_now > 0, s_now / np.maximum(n_now, 1.0), np.nan)
        var = within / np.maximum(n_now, 1.0) + within / np.maximum(big_n, 1.0) + tau2
        sd = np.sqrt(var)
        diff = mean_now - mean_base
        z = np.where((n_now > 0) & (big_n > 0) & (sd > 0), diff / np.where(sd > 0, sd, 1.0), 0.0)
    z = np.clip(np.nan_to_num(z, nan=0.0), -Z_CAP, Z_CAP)
    return ShiftTest(n_now, mean_now, big_n, mean_base, within, tau2, sd, z)


def tail(z: float, direction: str = "up") -> float:
    """The normal tail probability of *z*: one-sided for "up"/"down", two-sided for "both"."""
    if direction == "both":
        return math.erfc(abs(z) / math.sqrt(2.0))
    signed = z if direction == "up" else -z
    return 0.5 * math.erfc(signed / math.sqrt(2.0))
