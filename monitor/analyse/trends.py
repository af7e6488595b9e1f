"""Trend summaries for people: per-tag totals and sparklines over a series."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.store.queries import SeriesPoint

__all__ = ["TagSummary", "sparkline", "summarise"]

BARS = "▁▂▃▄▅▆▇█"


def _resample(values: Sequence[float | None], weights: Sequence[float], width: int,
              *, mean: bool) -> list[float | None]:
    """Squeeze a series into at most *width* cells (sums, or weighted means)."""
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
        elif mean:
            total = sum(w for _, w in chunk)
            out.append(sum(v * w for v, w in chunk) / total if total else None)
        else:
            out.append(sum(v for v, _ in chunk))
    return out


def sparkline(values: Sequence[float | None], *, width: int = 48,
              weights: Sequence[float] | None = None, mean: bool = False,
              low: float | None = None, high: float | None = None) -> str:
    """A one-line chart: ▁ lowest … █ highest; a space where there is no value.

    Volumes scale from 0 to their maximum; pass ``mean=True`` with *weights* (the
    scored counts) to squeeze a mean series correctly.
    """
    cells = _resample(values, weights or [1.0] * len(values), width, mean=mean)
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


@dataclass(frozen=True, slots=True)
class TagSummary:
    """One tag over a whole series."""

    tag: str
    posts: int
    scored: int
    mean_compound: float | None
    positive: int
    neutral: int
    negative: int
    peak_bucket: datetime | None
    peak_posts: int
    volume_line: str
    sentiment_line: str


def summarise(points: Sequence[SeriesPoint], width: int = 48) -> list[TagSummary]:
    """Totals, peak and sparklines per tag, in the order the tags appear."""
    by_tag: dict[str, list[SeriesPoint]] = {}
    for p in points:
        by_tag.setdefault(p.tag, []).append(p)
    out = []
    for tag, pts in by_tag.items():
        posts = sum(p.posts for p in pts)
        scored = sum(p.scored for p in pts)
        csum = sum(p.mean_compound * p.scored for p in pts if p.mean_compound is not None)
        peak = max(pts, key=lambda p: p.posts)
        out.append(
            TagSummary(
                tag=tag,
                posts=posts,
                scored=scored,
                mean_compound=csum / scored if scored else None,
                positive=sum(p.positive for p in pts),
                neutral=sum(p.neutral for p in pts),
                negative=sum(p.negative for p in pts),
                peak_bucket=peak.bucket if peak.posts else None,
                peak_posts=peak.posts,
                volume_line=sparkline([float(p.posts) for p in pts], width=width, low=0.0),
                sentiment_line=sparkline(
                    [p.mean_compound for p in pts], width=width,
                    weights=[float(p.scored) for p in pts], mean=True,
                    low=-1.0, high=1.0,
                ),
            )
        )
    return out
