"""One-line block charts (▁▂▃▄▅▆▇█) for the terminal and for plain-text email.

Shared by ``monitor trends`` and the alert emails so both draw the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = ["BARS", "sparkline"]

BARS = "▁▂▃▄▅▆▇█"

Reduce = Literal["sum", "max", "mean"]


def _resample(values: Sequence[float | None], weights: Sequence[float], width: int,
              reduce: Reduce) -> list[float | None]:
    """Squeeze a series into at most *width* cells: sums, maxima or weighted means."""
    n = len(values)
    if n <= width:
        return list(values)
    out: list[float | None] = []
    for cell in range(width):
        lo, hi = cell * n // width, (cell + 1) * n // width
        chunk = [(v, w) for v, w in zip(values[lo:hi], weights[lo:hi], strict=True)
                 if v is not None]
        if not chunk:
            out.append(None)
        elif reduce == "mean":
            total = sum(w for _, w in chunk)
            out.append(sum(v * w for v, w in chunk) / total if total else None)
        elif reduce == "max":
            out.append(max(v for v, _ in chunk))
        else:
            out.append(sum(v for v, _ in chunk))
    return out


def sparkline(values: Sequence[float | None], *, width: int = 48,
              weights: Sequence[float] | None = None, reduce: Reduce = "sum",
              low: float | None = None, high: float | None = None) -> str:
    """A one-line chart: ▁ lowest … █ highest; a space where there is no value.

    A series longer than *width* is squeezed cell by cell: ``sum`` for volumes,
    ``max`` to keep a one-hour spike a full block in a week-long line, ``mean``
    with *weights* (the scored counts) for a mean series. The scale runs from
    *low* (default: the smallest value) to *high* (default: the largest).
    """
    cells = _resample(values, weights or [1.0] * len(values), width, reduce)
    present = [v for v in cells if v is not None]
    if not present:
        return " " * len(cells)
    lo = min(present) if low is None else low
    hi = max(present) if high is None else high
    span = hi - lo
    out = []
    for v in cells:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(BARS[0] if hi == 0 else BARS[len(BARS) // 2])
        else:
            idx = round((min(max(v, lo), hi) - lo) / span * (len(BARS) - 1))
            out.append(BARS[idx])
    return "".join(out)
