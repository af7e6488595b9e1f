"""Trend summaries for people: per-tag totals and sparklines over a series."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.sparkline import sparkline
from monitor.store.queries import SeriesPoint

__all__ = ["TagSummary", "sparkline", "summarise"]

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
                    weights=[float(p.scored) for p in pts], reduce="mean",
                    low=-1.0, high=1.0,
                ),
            )
        )
    return out
