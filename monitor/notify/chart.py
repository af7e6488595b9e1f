"""The inline PNG chart and the text sparkline of a tag's recent volume.

The chart needs matplotlib, the ``charts`` extra. Without it
:func:`render_chart` returns None (logged once) and alert emails go out with
the text sparkline alone.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from monitor.errors import MissingExtra
from monitor.sparkline import BARS
from monitor.sparkline import sparkline as _sparkline

if TYPE_CHECKING:  # matplotlib is the optional `charts` extra
    from matplotlib.figure import Figure

__all__ = ["SPARK_CHARS", "chart_figure", "charts_available", "render_chart", "sparkline"]

log = logging.getLogger("monitor.notify")

SPARK_CHARS = BARS


def sparkline(values: Sequence[float], width: int = 72) -> str:
    """Posts per hour from zero to the top; each squeezed cell shows its maximum,
    so a one-hour spike stays a full block however long the series."""
    return _sparkline(values, width=width, reduce="max", low=0.0)


def _days(ts: datetime) -> float:
    # matplotlib's date axis unit: days since its default epoch, 1970-01-01 UTC
    return ts.timestamp() / 86400.0


@functools.cache
def charts_available() -> bool:
    """Whether matplotlib imports; the first miss is logged, once per process."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("%s; alert emails go out without the chart",
                    MissingExtra("the email chart", "matplotlib", "charts"))
        return False
    return True


def render_chart(
    times: Sequence[datetime],
    posts_per_hour: Sequence[float],
    *,
    tag: str,
    active_since: datetime | None = None,
    firing: bool = True,
    partial_until: datetime | None = None,
) -> bytes | None:
    """A 700×220 PNG: posts per hour, the alert's active period shaded.

    With *partial_until* the last point is the running hour, counted up to that
    instant: drawn hatched and labelled "partial". Uses the Agg canvas on a bare
    Figure (no pyplot state), so it is safe in a worker thread. None when
    matplotlib (the ``charts`` extra) is not installed.
    """
    if not charts_available():
        return None
    fig = chart_figure(times, posts_per_hour, tag=tag, active_since=active_since,
                       firing=firing, partial_until=partial_until)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def chart_figure(
    times: Sequence[datetime],
    posts_per_hour: Sequence[float],
    *,
    tag: str,
    active_since: datetime | None = None,
    firing: bool = True,
    partial_until: datetime | None = None,
) -> Figure:
    """The Figure :func:`render_chart` draws (matplotlib must be installed)."""
    # imported here, not at the top: the package works without the charts extra
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 2.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colour = "#c0392b" if firing else "#2c7a4b"
    if times:
        # each value covers its whole hour: draw steps up to the end of the last hour
        xs = [_days(t) for t in times] + [_days(times[-1]) + 1 / 24]
        if partial_until is not None:
            xs[-1] = max(_days(partial_until), xs[-2] + 1 / 1440)  # ends where counting ended
        ys = [*posts_per_hour, posts_per_hour[-1]]
        ax.plot(xs, ys, color="#34495e", linewidth=1.4, drawstyle="steps-post")
        ax.fill_between(xs, ys, color="#34495e", alpha=0.08, step="post")
        if partial_until is not None:
            # the running hour: its posts so far, hatched, so it does not read as complete
            ax.fill_between(xs[-2:], [ys[-2]] * 2, color="none", edgecolor="#34495e",
                            hatch="////", linewidth=0, label="partial hour")
            ax.annotate(f"partial hour\n(to {partial_until:%H:%M})", (xs[-2], ys[-2]),
                        xytext=(-4, -2), textcoords="offset points", ha="right", va="top",
                        fontsize=7, color="#34495e")
        if active_since is not None and active_since >= times[0]:
            start = min(_days(active_since), xs[-1])
            ax.axvspan(start, xs[-1], color=colour, alpha=0.12, linewidth=0)
            ax.axvline(start, color=colour, linewidth=1, linestyle="--")
        locator = AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    else:
        ax.text(0.5, 0.5, "no data in this period", ha="center", va="center",
                transform=ax.transAxes, color="#7f8c8d")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("posts / hour", fontsize=8)
    ax.set_title(f"#{tag} — posts per hour (UTC)", fontsize=9, loc="left")
    ax.tick_params(labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#ecf0f1", linewidth=0.8)
    fig.tight_layout()
    return fig
