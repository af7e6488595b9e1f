"""What a young tag lacks before the spike rule judges it, in words.

The spike detector (:class:`monitor.detect.seasonal.SpikeDetector`) stays
*young* (assesses, never fires) until it has both ``min_history`` of data and
enough buckets to learn the tag's own noise. "insufficient history (195m of
1h)" read as a contradiction: 195 minutes is more than an hour. This module
asks the detector itself how much longer it stays young (a copy is fed empty
buckets until it is not), so the sentence stays right whatever the detector's
warm-up rules are, and says what is missing and how long until it is there.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

from monitor.detect.seasonal import SpikeDetector

__all__ = ["history_to_go", "young_summary"]


def _human(delta: timedelta) -> str:
    """``1d 21h 5m``: days, hours and minutes, zeros left out (``0m`` for nothing)."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (mins, "m")) if n]
    return " ".join(parts) or "0m"


def history_to_go(detector: SpikeDetector, next_at: datetime, step: timedelta,
                  value: float, limit: timedelta) -> timedelta | None:
    """How long *detector* stays young if buckets keep coming from *next_at*; None if
    still young after *limit*. The detector itself is left untouched."""
    probe = copy.deepcopy(detector)
    at = next_at
    while at - next_at <= limit:
        if not probe.update(at, value).young:
            return at - next_at
        at += step
    return None


def young_summary(tag: str, detector: SpikeDetector, *, first: datetime, end: datetime,
                  step: timedelta, min_history: timedelta, value: float = 0.0
                  ) -> tuple[str, str]:
    """(summary, annotation) for a tag the spike rule cannot judge yet, e.g.
    ``#metoo: insufficient history: has 3h 15m of posts, needs 4h 10m to learn its usual
    level and its own noise (min_history 1h); judged in 1h``."""
    known = end - first
    has = _human(known)
    floor = _human(min_history)
    to_go = history_to_go(detector, end, step, value, min_history + timedelta(days=2))
    if to_go is None:
        return (f"#{tag}: insufficient history: has {has} of posts, needs more than "
                f"{_human(min_history + timedelta(days=2))} (min_history {floor})",
                f"{has} of data")
    needs = known + to_go  # history before the first bucket that is judged
    wait = _human(to_go + step)  # that bucket is judged once it is complete
    if needs <= min_history + step:
        why = "(the rule's min_history)"
    else:
        why = f"to learn its usual level and its own noise (min_history {floor})"
    return (f"#{tag}: insufficient history: has {has} of posts, needs {_human(needs)} {why}; "
            f"judged in {wait}", f"{has} of data, judged in {wait}")
