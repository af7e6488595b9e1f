"""The sentiment-shift and emerging co-tag conditions, at many instants at once.

A step is the end of a complete bucket: the rule evaluated "at" grid index
``e`` judges the window of buckets ``[e - window, e)`` against the baseline
blocks before it. :mod:`monitor.detect.rules` calls these with one step (the
instant the engine evaluates); :mod:`monitor.detect.backtest` with every step
of the replayed span. Sums are taken in fixed point (compound to 1e-4, its
squares to 1e-8, as VADER rounds to four decimals), so a window's sum does not
depend on where the grid starts and both callers decide identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from monitor.detect.settings import EmergingCotagRule, SentimentShiftRule
from monitor.detect.shifts import ShiftTest, block_sums, shift_test
from monitor.store.history import CotagSeries, ToneSeries
from monitor.store.schema import BUCKET_SECONDS

__all__ = ["CotagSteps", "ToneSteps", "cotag_steps", "history_span", "tone_steps"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_SCALE = 10_000.0


def _buckets(span: timedelta) -> int:
    return int(span.total_seconds()) // BUCKET_SECONDS


def history_span(rule: SentimentShiftRule | EmergingCotagRule) -> timedelta:
    """How far before an instant the rule reads: the window and every whole baseline block."""
    blocks = rule.baseline // rule.window
    return rule.window * (blocks + 1)


def _prefix(values: npt.NDArray[np.float64], scale: float) -> IntArray:
    fixed = np.rint(values * scale).astype(np.int64)
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(fixed)])


def _sums(prefix: IntArray, ends: IntArray, w: int, k: int, scale: float
          ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    recent, blocks = block_sums(prefix, ends, w, k)
    return recent.astype(np.float64) / scale, blocks.astype(np.float64) / scale


@dataclass(frozen=True, slots=True)
class ToneSteps:
    """The sentiment test at each step and whether the rule's condition holds."""

    test: ShiftTest
    active: BoolArray
    enough: BoolArray  # enough scored posts in the window and the baseline


def tone_steps(rule: SentimentShiftRule, series: ToneSeries, ends: IntArray) -> ToneSteps:
    """The sentiment-shift condition at grid indices *ends* of *series*."""
    w = _buckets(rule.window)
    k = int(rule.baseline // rule.window)
    n_now, n_blocks = _sums(_prefix(series.scored, 1.0), ends, w, k, 1.0)
    s_now, s_blocks = _sums(_prefix(series.compound_sum, _SCALE), ends, w, k, _SCALE)
    _, q_blocks = _sums(_prefix(series.compound_sq_sum, _SCALE**2), ends, w, k, _SCALE**2)
    test = shift_test(n_blocks, s_blocks, q_blocks, n_now, s_now)
    enough = (test.n_now >= rule.min_scored) & (test.n_base >= rule.min_scored)
    sign = {"both": None, "down": -1.0, "up": 1.0}[rule.direction]
    with np.errstate(invalid="ignore"):
        shift = np.nan_to_num(test.mean_now - test.mean_base, nan=0.0)
    if sign is None:
        z, size = np.abs(test.z), np.abs(shift)
    else:
        z, size = sign * test.z, sign * shift
    active = enough & (z >= rule.min_z) & (size >= rule.min_shift)
    return ToneSteps(test, active, enough)


@dataclass(frozen=True, slots=True)
class CotagSteps:
    """Per candidate tag, at each step: co-tagged posts, the test, candidacy and the condition."""

    others: list[str]
    posts: npt.NDArray[np.float64]  # (others, steps) co-tagged posts in the window
    candidate: BoolArray  # (others, steps) among the top max_candidates
    active: BoolArray  # (others, steps)
    tests: list[ShiftTest]  # one per other
    base_share: npt.NDArray[np.float64]  # (others, steps) raw baseline share


def cotag_steps(rule: EmergingCotagRule, series: CotagSeries, ends: IntArray,
                excluded: set[str]) -> CotagSteps:
    """The emerging co-tag condition for every other tag of *series* at grid indices *ends*.

    Candidates at a step are the other tags (not followed, not *excluded*)
    with at least ``min_posts`` co-tagged posts in the window, the
    ``max_candidates`` most frequent (ties by name), as the rule lists them.
    """
    w = _buckets(rule.window)
    k = int(rule.baseline // rule.window)
    others = sorted(t for t in series.pairs if t not in excluded)
    n_now, n_blocks = _sums(_prefix(series.totals, 1.0), ends, w, k, 1.0)
    steps = len(ends)
    posts = np.zeros((len(others), steps))
    blocks = []
    for i, other in enumerate(others):
        x_now, x_blocks = _sums(_prefix(series.pairs[other], 1.0), ends, w, k, 1.0)
        posts[i] = x_now
        blocks.append(x_blocks)
    eligible = posts >= rule.min_posts
    if others:
        # rank by posts (descending), then name: the order the rule lists candidates in
        key = -posts * (len(others) + 1) + np.arange(len(others))[:, None]
        order = np.argsort(key, axis=0, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(others))[:, None].repeat(steps, axis=1),
                          axis=0)
        candidate = eligible & (rank < rule.max_candidates)
    else:
        candidate = eligible
    active = np.zeros_like(candidate)
    tests: list[ShiftTest] = []
    base_share = np.zeros((len(others), steps))
    for i in range(len(others)):
        test = shift_test(n_blocks, blocks[i], blocks[i], n_now, posts[i], binary=True)
        tests.append(test)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(n_now > 0, posts[i] / np.maximum(n_now, 1.0), 0.0)
            raw = np.where(test.n_base > 0, blocks[i].sum(axis=1) / np.maximum(test.n_base, 1.0),
                           0.0)
        base_share[i] = raw
        active[i] = (candidate[i] & (test.z >= rule.min_z) & (share >= rule.min_share)
                     & (share >= rule.growth * raw))
    return CotagSteps(others, posts, candidate, active, tests, base_share)


def grid_end(start: datetime, end: datetime) -> int:
    """The grid index of instant *end* (a bucket boundary) on a grid starting at *start*."""
    return int((end - start).total_seconds()) // BUCKET_SECONDS
