"""CLI commands of the read side: trends, top, cotags, relate, export.

Each command is a thin skin over a library function (monitor.store.queries,
monitor.analyse.*) and prints a Rich table, CSV or JSON with the same columns.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import Engine

from monitor.analyse.plot import PlotResult
from monitor.analyse.timerange import parse_range, parse_step
from monitor.arguments import known_tags, tag_arg
from monitor.cli import (
    ConfigOption,
    OutputFormat,
    console,
    emit_rows,
    err_console,
    fail,
    get_config,
    open_store,
    user_errors,
)
from monitor.config import Config
from monitor.errors import ConfigError

__all__ = ["register"]

# plain one-line output: no colour guessing, no re-wrapping when piped
_PLAIN: dict[str, Any] = {"highlight": False, "soft_wrap": True}


def _range(since: str, until: str | None) -> tuple[datetime, datetime]:
    return parse_range(since, until)


def _step(value: str) -> timedelta:
    return parse_step(value)


def _tags(raw: list[str], option: str) -> list[str]:
    # as the config checks hashtags: 'bad tag' is a mistake, not the tag 'bad'
    return [tag_arg(value, option) for value in raw]


def _known(engine: Engine, cfg: Config, tags: list[str], option: str) -> None:
    """A tag neither followed nor ever seen gets a hint, not an empty table (exit 2)."""
    known_tags(engine, cfg.hashtags, tags, option,
               lambda line: err_console.print(line, **_PLAIN, markup=False))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def _plotted(result: PlotResult) -> None:
    # on stderr: stdout stays the table, CSV or JSON asked for
    marks = len(result.alerts_marked)
    err_console.print(f"{result.path}: {result.width}x{result.height} PNG, "
                      f"{marks} alert{'' if marks == 1 else 's'} marked", **_PLAIN)


SinceOption = Annotated[str, typer.Option("--since", help="start: a duration back (7d) or a date")]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="end (default now): a duration back or a date")
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help="table, csv or json")]
PlotOption = Annotated[
    Path | None,
    typer.Option("--plot", help="also write a PNG: volume and tone, alerts marked (charts extra)"),
]


@user_errors
def trends(
    tags: Annotated[list[str], typer.Argument(help="one or more tags, e.g. metoo notallmen")],
    since: SinceOption = "7d",
    until: UntilOption = None,
    step: Annotated[str, typer.Option("--step", help="5m, 1h, 1d (multiples of 5m)")] = "1h",
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
    plot: PlotOption = None,
) -> None:
    """Volume and mean sentiment per tag per step, with sparklines (--plot: a PNG too)."""
    from monitor.analyse.trends import summarise
    from monitor.store.queries import series

    cfg = get_config(config)
    start, end = _range(since, until)
    wanted = _tags(tags, "TAG")
    engine = open_store(cfg)
    _known(engine, cfg, wanted, "TAG")
    points = series(engine, wanted, start, end, _step(step))
    if plot is not None:
        from monitor.analyse.plot import trends_plot

        _plotted(trends_plot(engine, plot, points, wanted, start, end, step))
    rows = [
        {"tag": p.tag, "bucket": p.bucket.isoformat(), "posts": p.posts, "scored": p.scored,
         "mean_compound": p.mean_compound, "positive": p.positive, "neutral": p.neutral,
         "negative": p.negative}
        for p in points
    ]
    if fmt is not OutputFormat.table:
        emit_rows(rows, fmt, columns=["tag", "bucket", "posts", "scored", "mean_compound",
                                      "positive", "neutral", "negative"])
        return
    title = (f"{points[0].bucket:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC, step {step}"
             if points else "trends")
    summary = Table(title=title)
    for col in ("tag", "posts", "scored", "mean", "pos/neu/neg", "peak"):
        summary.add_column(col, justify="right" if col in ("posts", "scored", "mean") else "left")
    width = max(16, min(72, console.width - 14))
    summaries = summarise(points, width=width)
    for s in summaries:
        peak = f"{s.peak_posts} at {s.peak_bucket:%Y-%m-%d %H:%M}" if s.peak_bucket else "–"
        summary.add_row(s.tag, str(s.posts), str(s.scored), _fmt(s.mean_compound),
                        f"{s.positive}/{s.neutral}/{s.negative}", peak)
    console.print(summary)
    # sparklines on their own lines so a narrow terminal does not crush the table
    for s in summaries:
        console.print(f"[bold]#{s.tag}[/]", **_PLAIN)
        console.print(f"  volume    {s.volume_line}", **_PLAIN, markup=False)
        console.print(f"  sentiment {s.sentiment_line}  (▁ −1 … █ +1)", **_PLAIN,
                      markup=False)
    # the per-step table lists steps where something happened; empty ones are counted
    busy = sorted({p.bucket for p in points if p.posts})
    steps = len({p.bucket for p in points})
    if not busy:
        console.print("no posts in this range", **_PLAIN)
        return
    detail = Table(title=f"{len(busy)} of {steps} steps with posts")
    detail.add_column("bucket (UTC)", no_wrap=True)
    for tag in wanted:
        detail.add_column(f"{tag} posts", justify="right")
        detail.add_column(f"{tag} mean", justify="right")
    index = {(p.tag, p.bucket): p for p in points}
    for when in busy:
        cells = [f"{when:%Y-%m-%d %H:%M}"]
        for tag in wanted:
            p = index[(tag, when)]
            cells += [str(p.posts), _fmt(p.mean_compound)]
        detail.add_row(*cells)
    console.print(detail)


class RankBy(StrEnum):
    volume = "volume"
    growth = "growth"


@user_errors
def top(
    since: SinceOption = "24h",
    until: UntilOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    by: Annotated[RankBy, typer.Option("--by", help="rank by volume or growth")] = RankBy.volume,
    min_posts: Annotated[int, typer.Option("--min-posts", help="growth ranking floor")] = 5,
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
) -> None:
    """Tags by volume (or growth) against the equal period before."""
    from monitor.store.queries import top_tags

    cfg = get_config(config)
    start, end = _range(since, until)
    found = top_tags(open_store(cfg), start, end, limit, order=by.value, min_posts=min_posts)
    rows = [{"tag": t.tag, "posts": t.posts, "previous": t.previous, "growth": t.growth,
             "scored": t.scored, "mean_compound": t.mean_compound} for t in found]
    if fmt is OutputFormat.table:
        for row in rows:
            g = row["growth"]
            row["growth"] = "new" if g is None else f"{g * 100:+.0f}%"
        emit_rows(rows, fmt, title=f"top tags by {by.value}: {start:%Y-%m-%d %H:%M} → "
                                   f"{end:%Y-%m-%d %H:%M} UTC vs the period before",
                  columns=["tag", "posts", "previous", "growth", "scored", "mean_compound"])
        return
    emit_rows(rows, fmt, columns=["tag", "posts", "previous", "growth", "scored",
                                  "mean_compound"])


@user_errors
def cotags_command(
    tag: Annotated[str, typer.Argument(help="the tag whose companions to list")],
    since: SinceOption = "30d",
    until: UntilOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
) -> None:
    """Tags that appear on the same posts as TAG: counts, share and mean sentiment."""
    from monitor.store.queries import cotags

    cfg = get_config(config)
    start, end = _range(since, until)
    (wanted,) = _tags([tag], "TAG")
    engine = open_store(cfg)
    _known(engine, cfg, [wanted], "TAG")
    found = cotags(engine, wanted, start, end, limit)
    rows: list[dict[str, Any]] = [
        {"tag": c.tag, "posts": c.posts,
         "share": f"{c.share * 100:.1f}%" if fmt is OutputFormat.table else c.share,
         "scored": c.scored, "mean_compound": c.mean_compound}
        for c in found
    ]
    emit_rows(rows, fmt, title=f"tags beside #{wanted}",
              columns=["tag", "posts", "share", "scored", "mean_compound"])


@user_errors
def relate_command(
    tag_a: Annotated[str, typer.Argument(help="first tag (the one that may lead)")],
    tag_b: Annotated[str, typer.Argument(help="second tag (the one that may answer)")],
    since: SinceOption = "90d",
    until: UntilOption = None,
    max_lag: Annotated[int, typer.Option("--max-lag", help="hours either way")] = 48,
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
    plot: PlotOption = None,
) -> None:
    """The counter-movement view: lag, co-occurrence and tone of two tags."""
    from monitor.analyse.relate import describe_relation, lag_convention, relate, relation_dict
    from monitor.analyse.trends import sparkline

    cfg = get_config(config)
    start, end = _range(since, until)
    a, b = _tags([tag_a, tag_b], "TAG")
    engine = open_store(cfg)
    _known(engine, cfg, [a, b], "TAG")
    rel = relate(engine, a, b, start, end, max_lag=max_lag)
    if plot is not None:
        from monitor.analyse.plot import relate_plot

        x = rel.xcorr
        _plotted(relate_plot(engine, plot, a, b, rel.since, rel.until, (x.lags, x.r, x.band)))
    data = relation_dict(rel)
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    if fmt is OutputFormat.csv:
        emit_rows([{"lag_hours": k, "r": r} for k, r in zip(data["lags"], data["r"], strict=True)],
                  fmt, columns=["lag_hours", "r"])
        return
    x = rel.xcorr
    console.print(f"[bold]#{a} ↔ #{b}[/]  {rel.since:%Y-%m-%d %H:%M} → {rel.until:%Y-%m-%d %H:%M}"
                  " UTC", **_PLAIN)
    if x.span_since is not None and x.span_until is not None and x.n:
        console.print(f"both tags have posts from {x.span_since:%Y-%m-%d %H:%M} to "
                      f"{x.span_until:%Y-%m-%d %H:%M} UTC: {x.n} hours, #{a} in {x.active_a} "
                      f"of them, #{b} in {x.active_b}", **_PLAIN)
    console.print(describe_relation(rel), **_PLAIN, markup=False)
    if x.lags:
        scale = max([abs(v) for v in x.r] + [x.band, 0.05])
        half = len(x.lags) // 2
        console.print(f"cross-correlation r by lag (bars scaled to ±{scale:.2f}; the best lag of "
                      f"unrelated series passes ±{x.band:.2f} 5% of the time):", **_PLAIN)
        for lo, hi in ((0, half + 1), (half, len(x.lags))):
            line = sparkline(list(x.r[lo:hi]), width=hi - lo, low=-scale, high=scale)
            console.print(f"  {x.lags[lo]:+4d} h {line} {x.lags[hi - 1]:+d} h", **_PLAIN,
                          markup=False)
        strongest = sorted(range(len(x.r)), key=lambda i: -abs(x.r[i]))[:5]
        console.print("  strongest: " + ", ".join(f"{x.lags[i]:+d} h r={x.r[i]:+.2f}"
                                                  for i in strongest), **_PLAIN)
        console.print(lag_convention(a, b), **_PLAIN, markup=False)
    console.print(
        f"posts: #{a} {rel.posts_a}, #{b} {rel.posts_b}, both {rel.posts_both} "
        f"({rel.share_both * 100:.1f}% of posts with either; {rel.share_of_a * 100:.1f}% of "
        f"#{a}, {rel.share_of_b * 100:.1f}% of #{b})", **_PLAIN,
    )
    tone = Table(title="mean sentiment (VADER compound) with and without the other tag")
    for col in ("tag", "posts", "with", "mean with", "without", "mean w/o", "diff"):
        tone.add_column(col, justify="left" if col == "tag" else "right")
    for t in (rel.tone_a, rel.tone_b):
        tone.add_row(f"#{t.tag}", str(t.posts), str(t.with_other), _fmt(t.mean_with),
                     str(t.without_other), _fmt(t.mean_without), _fmt(t.difference))
    console.print(tone)


class ExportKind(StrEnum):
    posts = "posts"
    series = "series"


class ExportFormatOpt(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


@user_errors
def export_command(
    kind: Annotated[ExportKind, typer.Argument(help="posts or series")],
    out: Annotated[str, typer.Option("--out", "-o", help="output file ('-' for stdout)")],
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag (repeatable)")] = None,
    since: SinceOption = "30d",
    until: UntilOption = None,
    step: Annotated[str, typer.Option("--step", help="series step: 5m, 1h, 1d")] = "1h",
    fmt: Annotated[ExportFormatOpt | None, typer.Option(
        "--format", "-f", help="default: from the --out extension (.csv, .jsonl, .parquet; "
                               "csv for '-')")] = None,
    config: ConfigOption = None,
) -> None:
    """Export posts or series as CSV, JSON Lines or Parquet (privacy settings apply).

    Without --tag, posts of every tag, and the series of the followed tags."""
    from monitor.analyse.export import export_posts, export_series, format_for

    cfg = get_config(config)
    start, end = _range(since, until)
    tags = _tags(tag or [], "--tag")
    # before the database is opened: a wrong name costs nothing
    chosen = format_for(out, fmt.value if fmt is not None else None)
    engine = open_store(cfg)
    if tags:
        _known(engine, cfg, tags, "--tag")
    try:
        if kind is ExportKind.posts:
            summary = export_posts(engine, cfg, out, chosen, tags=tags, since=start, until=end)
        else:
            summary = export_series(engine, out, chosen, tags=tags, since=start, until=end,
                                    step=_step(step), config=cfg)
    except OSError as exc:
        fail(f"{out}: {exc.strerror or exc}", 1)
    if out != "-":
        console.print(f"{out}: {summary.rows} rows ({', '.join(summary.columns)})",
                      **_PLAIN)


@user_errors
def web_command(
    host: Annotated[str | None, typer.Option("--host", help="default: web.host")] = None,
    port: Annotated[int | None, typer.Option("--port", help="default: web.port")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the read-only dashboard, JSON API and /metrics on their own (no collection)."""
    import asyncio

    from pydantic import ValidationError

    from monitor.web.server import serve
    from monitor.web.settings import WebSettings

    cfg = get_config(config)
    try:
        web = WebSettings(**{**cfg.web.model_dump(),
                             **({"host": host} if host else {}),
                             **({"port": port} if port is not None else {})})
    except ValidationError as exc:
        problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ConfigError("--host/--port", "web", problem) from None
    engine = open_store(cfg)
    # said once the port is bound: a port in use is one error line, not a false promise
    asyncio.run(serve(engine, cfg.model_copy(update={"web": web}), embedded=False,
                      announce=lambda url: console.print(f"dashboard on {url} (Ctrl-C to stop)",
                                                         **_PLAIN)))


def register(app: typer.Typer) -> None:
    """Add the read-side commands to the ``monitor`` app (idempotent)."""
    known = {c.name for c in app.registered_commands}
    for name, fn in (("trends", trends), ("top", top), ("cotags", cotags_command),
                     ("relate", relate_command), ("export", export_command),
                     ("web", web_command)):
        if name not in known:
            app.command(name)(fn)
