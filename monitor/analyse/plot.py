"""PNG plots for ``monitor trends --plot`` and ``monitor relate --plot``.

Volume (posts per step) above tone (mean VADER compound, −1…+1), one colour per
tag, with the alerts of those tags in the range marked where they fired (a
dashed line, the rule's name beside it). ``relate`` adds a third panel: the
cross-correlation by lag.

Needs matplotlib, the ``charts`` extra; without it a :class:`MissingExtra`
says which extra to install (one line from the CLI). Drawn on a bare Figure
with the Agg canvas (no pyplot state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.errors import InputError, MissingExtra
from monitor.store.alerts import AlertRow, recent_alerts
from monitor.store.queries import SeriesPoint, series
from monitor.store.reading import Reader

__all__ = ["PlotResult", "alerts_in_range", "plot_series", "relate_plot", "trends_plot"]

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


@dataclass(frozen=True, slots=True)
class PlotResult:
    """What was drawn: the file, its size in pixels, and the alerts marked on it."""

    path: Path
    width: int
    height: int
    tags: tuple[str, ...]
    alerts_marked: tuple[tuple[str, str, datetime], ...]  # (rule, tag, when)


def alerts_in_range(rows: Sequence[AlertRow], tags: Sequence[str], since: datetime,
                    until: datetime) -> list[tuple[AlertRow, datetime]]:
    """The alerts of *tags* that fired (else became active) within [since, until]."""
    out = []
    for row in rows:
        when = row.fired_at or row.active_since
        if when is None or not since <= when <= until:
            continue
        if row.labels.get("tag") in tags:
            out.append((row, when))
    return sorted(out, key=lambda item: item[1])


def _days(ts: datetime) -> float:
    return ts.timestamp() / 86400.0  # matplotlib's date unit (days since 1970 UTC)


def plot_series(
    out: Path,
    points: Sequence[SeriesPoint],
    tags: Sequence[str],
    alerts: Sequence[tuple[AlertRow, datetime]],
    *,
    title: str,
    step_label: str,
    xcorr: tuple[Sequence[int], Sequence[float], float] | None = None,
) -> PlotResult:
    """Write the PNG to *out*; *xcorr* = (lags, r, noise band) adds the lag panel."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtra("--plot", "matplotlib", "charts") from None

    panels = 3 if xcorr is not None else 2
    fig = Figure(figsize=(10.0, 2.6 * panels + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    volume, tone = axes[0], axes[1]
    colour = {tag: _COLOURS[i % len(_COLOURS)] for i, tag in enumerate(tags)}
    for tag in tags:
        pts = [p for p in points if p.tag == tag]
        xs = [_days(p.bucket) for p in pts]
        volume.plot(xs, [p.posts for p in pts], color=colour[tag], linewidth=1.3,
                    drawstyle="steps-post", label=f"#{tag}")
        scored = [(x, p.mean_compound) for x, p in zip(xs, pts, strict=True)
                  if p.mean_compound is not None]
        if scored:
            tone.plot([x for x, _ in scored], [v for _, v in scored], color=colour[tag],
                      linewidth=1.0, marker=".", markersize=3, label=f"#{tag}")
    marked = []
    for row, when in alerts:
        tag = row.labels.get("tag", "")
        for ax in (volume, tone):
            ax.axvline(_days(when), color=colour.get(tag, "#555555"), linestyle="--",
                       linewidth=1.0, alpha=0.9)
        volume.annotate(f"⚠ {row.rule}", xy=(_days(when), 1.0), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=7,
                        color=colour.get(tag, "#555555"))
        marked.append((row.rule, tag, when))
    volume.set_ylim(bottom=0)
    volume.set_ylabel(f"posts / {step_label}", fontsize=8)
    volume.set_title(title, fontsize=10, loc="left")
    tone.set_ylim(-1.05, 1.05)
    tone.axhline(0, color="#bbbbbb", linewidth=0.8)
    tone.set_ylabel("mean tone (VADER)", fontsize=8)
    for ax in (volume, tone):
        if points:
            locator = AutoDateLocator(minticks=3, maxticks=10)  # type: ignore[no-untyped-call]
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(
                ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        if tags and points:
            ax.legend(fontsize=7, loc="upper left")
        _tidy(ax)
    if not points:
        volume.text(0.5, 0.5, "no data in this range", ha="center", va="center",
                    transform=volume.transAxes, color="#7f8c8d")
    if xcorr is not None:
        lags, r, band = xcorr
        lag_ax = axes[2]
        lag_ax.bar(list(lags), list(r), color="#34495e", width=0.8)
        lag_ax.axhspan(-band, band, color="#95a5a6", alpha=0.2, linewidth=0)
        lag_ax.axvline(0, color="#bbbbbb", linewidth=0.8)
        lag_ax.set_xlabel("lag in hours (sign convention: see `monitor relate`); "
                          "grey band: noise", fontsize=8)
        lag_ax.set_ylabel("r", fontsize=8)
        _tidy(lag_ax)
    fig.tight_layout()
    try:
        fig.savefig(out, format="png")
    except OSError as exc:
        raise InputError("--plot", f"{out}: cannot write: {exc.strerror or exc}") from None
    width, height = (int(v) for v in fig.canvas.get_width_height())
    return PlotResult(out, width, height, tuple(tags), tuple(marked))


def _tidy(ax: Any) -> None:
    ax.tick_params(labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#ecf0f1", linewidth=0.8)


def trends_plot(db: Reader, out: Path, points: Sequence[SeriesPoint], tags: Sequence[str],
                since: datetime, until: datetime, step_label: str) -> PlotResult:
    """``monitor trends --plot``: the series already read, and the alerts of those tags."""
    marks = alerts_in_range(recent_alerts(db), tags, since, until)
    return plot_series(out, points, tags, marks, step_label=step_label,
                       title=f"{', '.join('#' + t for t in tags)} — {since:%Y-%m-%d %H:%M} → "
                             f"{until:%Y-%m-%d %H:%M} UTC, per {step_label}")


def relate_plot(db: Reader, out: Path, tag_a: str, tag_b: str, since: datetime,
                until: datetime, xcorr: tuple[Sequence[int], Sequence[float], float]
                ) -> PlotResult:
    """``monitor relate --plot``: both tags hourly, their alerts, and r by lag."""
    points = series(db, [tag_a, tag_b], since, until, timedelta(hours=1))
    marks = alerts_in_range(recent_alerts(db), [tag_a, tag_b], since, until)
    return plot_series(out, points, [tag_a, tag_b], marks, step_label="hour", xcorr=xcorr,
                       title=f"#{tag_a} ↔ #{tag_b} — {since:%Y-%m-%d %H:%M} → "
                             f"{until:%Y-%m-%d %H:%M} UTC")
