"""CLI commands of the read side: trends, top, cotags, relate, export.

Each command is a thin skin over a library function (monitor.store.queries,
monitor.analyse.*) and prints a Rich table, CSV or JSON with the same columns.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from monitor.cli import (
    ConfigOption,
    OutputFormat,
    console,
    emit_rows,
    fail,
    get_config,
    open_store,
)
from monitor.config import normalise_tag
from monitor.durations import parse_duration
from monitor.errors import InputError, MonitorError

__all__ = ["parse_when", "register", "relation_dict"]


def parse_when(value: str, now: datetime, option: str) -> datetime:
    """'7d' (that long before *now*), an ISO date or an ISO datetime (UTC if no zone)."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(option, f"expected a duration like '7d' or a date like "
                                 f"'2026-01-31', got {value!r}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _range(since: str, until: str | None) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    end = parse_when(until, now, "--until") if until else now
    start = parse_when(since, end, "--since")
    if start >= end:
        raise InputError("--since", f"expected a start before {end:%Y-%m-%d %H:%M}, got {since!r}")
    return start, end


def _step(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError:
        raise InputError("--step", f"expected a step like 5m, 1h or 1d, got {value!r}") from None


def _tags(raw: list[str], option: str) -> list[str]:
    out = []
    for value in raw:
        tag = normalise_tag(value)
        if not tag:
            raise InputError(option, f"expected a hashtag like 'metoo', got {value!r}")
        out.append(tag)
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


SinceOption = Annotated[str, typer.Option("--since", help="start: a duration back (7d) or a date")]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="end (default now): a duration back or a date")
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help="table, csv or json")]


def trends(
    tags: Annotated[list[str], typer.Argument(help="one or more tags, e.g. metoo notallmen")],
    since: SinceOption = "7d",
    until: UntilOption = None,
    step: Annotated[str, typer.Option("--step", help="5m, 1h, 1d (multiples of 5m)")] = "1h",
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
) -> None:
    """Volume and mean sentiment per tag per step, with sparklines."""
    from monitor.analyse.trends import summarise
    from monitor.store.queries import series

    cfg = get_config(config)
    try:
        start, end = _range(since, until)
        wanted = _tags(tags, "TAG")
        points = series(open_store(cfg), wanted, start, end, _step(step))
    except MonitorError as exc:
        fail(str(exc), 2 if isinstance(exc, InputError) else 1)
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
    summary = Table(title=f"{points[0].bucket:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC, "
                          f"step {step}" if points else "trends")
    for col in ("tag", "posts", "scored", "mean", "pos/neu/neg", "peak", "volume", "sentiment"):
        summary.add_column(col, justify="right" if col in ("posts", "scored", "mean") else "left",
                           no_wrap=col in ("volume", "sentiment"))
    for s in summarise(points, width=40):
        peak = f"{s.peak_posts} at {s.peak_bucket:%Y-%m-%d %H:%M}" if s.peak_bucket else "–"
        summary.add_row(s.tag, str(s.posts), str(s.scored), _fmt(s.mean_compound),
                        f"{s.positive}/{s.neutral}/{s.negative}", peak, s.volume_line,
                        s.sentiment_line)
    console.print(summary)
    # the per-step table lists steps where something happened; empty ones are counted
    busy = sorted({p.bucket for p in points if p.posts})
    steps = len({p.bucket for p in points})
    if not busy:
        console.print("no posts in this range", highlight=False)
        return
    detail = Table(title=f"{len(busy)} of {steps} steps with posts")
    detail.add_column("bucket (UTC)")
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
    try:
        start, end = _range(since, until)
        found = top_tags(open_store(cfg), start, end, limit, order=by.value, min_posts=min_posts)
    except MonitorError as exc:
        fail(str(exc), 2 if isinstance(exc, InputError) else 1)
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
    try:
        start, end = _range(since, until)
        (wanted,) = _tags([tag], "TAG")
        found = cotags(open_store(cfg), wanted, start, end, limit)
    except MonitorError as exc:
        fail(str(exc), 2 if isinstance(exc, InputError) else 1)
    rows: list[dict[str, Any]] = [
        {"tag": c.tag, "posts": c.posts,
         "share": f"{c.share * 100:.1f}%" if fmt is OutputFormat.table else c.share,
         "scored": c.scored, "mean_compound": c.mean_compound}
        for c in found
    ]
    emit_rows(rows, fmt, title=f"tags beside #{wanted}",
              columns=["tag", "posts", "share", "scored", "mean_compound"])


def relation_dict(rel: Any) -> dict[str, Any]:
    """A Relation as plain JSON-ready data (also what /api/relate returns)."""
    x = rel.xcorr

    def tone(t: Any) -> dict[str, Any]:
        return {"tag": t.tag, "other": t.other, "posts": t.posts, "with_other": t.with_other,
                "without_other": t.without_other, "mean_with": t.mean_with,
                "mean_without": t.mean_without, "scored_with": t.scored_with,
                "scored_without": t.scored_without, "difference": t.difference}

    return {
        "tag_a": rel.tag_a, "tag_b": rel.tag_b,
        "since": rel.since.isoformat(), "until": rel.until.isoformat(),
        "posts_a": rel.posts_a, "posts_b": rel.posts_b, "posts_both": rel.posts_both,
        "share_both": rel.share_both, "share_of_a": rel.share_of_a, "share_of_b": rel.share_of_b,
        "best_lag_hours": x.best_lag, "best_r": x.best_r, "noise_band": x.band,
        "significant": x.significant, "points": x.n,
        "lags": list(x.lags), "r": list(x.r),
        "tone_a": tone(rel.tone_a), "tone_b": tone(rel.tone_b),
    }


def describe_lag(tag_a: str, tag_b: str, lag: int | None, r: float | None,
                 significant: bool) -> str:
    """One sentence for people: who follows whom, by how long, and how sure."""
    if lag is None or r is None:
        return f"#{tag_a} and #{tag_b}: no volume movement to compare"
    if not significant:
        return (f"#{tag_a} and #{tag_b}: no lag stands out from noise "
                f"(strongest r={r:+.2f} at {lag:+d} h)")
    direction = "rises" if r > 0 else "falls"
    if lag == 0:
        return f"#{tag_b} moves with #{tag_a} in the same hour (r={r:+.2f})"
    if lag > 0:
        return f"#{tag_b} {direction} {lag} h after #{tag_a} moves (r={r:+.2f})"
    return f"#{tag_a} {direction} {-lag} h after #{tag_b} moves (r={r:+.2f})"


def relate_command(
    tag_a: Annotated[str, typer.Argument(help="first tag (the one that may lead)")],
    tag_b: Annotated[str, typer.Argument(help="second tag (the one that may answer)")],
    since: SinceOption = "90d",
    until: UntilOption = None,
    max_lag: Annotated[int, typer.Option("--max-lag", help="hours either way")] = 48,
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
) -> None:
    """The counter-movement view: lag, co-occurrence and tone of two tags."""
    from monitor.analyse.relate import relate
    from monitor.analyse.trends import sparkline

    cfg = get_config(config)
    try:
        start, end = _range(since, until)
        a, b = _tags([tag_a, tag_b], "TAG")
        rel = relate(open_store(cfg), a, b, start, end, max_lag=max_lag)
    except MonitorError as exc:
        fail(str(exc), 2 if isinstance(exc, InputError) else 1)
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
                  f" UTC, {x.n} hourly points", highlight=False)
    console.print(describe_lag(a, b, x.best_lag, x.best_r, x.significant), highlight=False)
    line = sparkline(list(x.r), width=len(x.r), low=-1.0, high=1.0)
    console.print(
        f"cross-correlation, lag {x.lags[0]:+d} h … {x.lags[-1]:+d} h "
        f"(noise band ±{x.band:.2f}):\n  {line}",
        highlight=False,
    )
    console.print(
        f"posts: #{a} {rel.posts_a}, #{b} {rel.posts_b}, both {rel.posts_both} "
        f"({rel.share_both * 100:.1f}% of posts with either; {rel.share_of_a * 100:.1f}% of "
        f"#{a}, {rel.share_of_b * 100:.1f}% of #{b})", highlight=False,
    )
    tone = Table(title="mean sentiment (VADER compound) with and without the other tag")
    for col in ("tag", "posts", "with other", "mean with", "without other", "mean without",
                "difference"):
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


def export_command(
    kind: Annotated[ExportKind, typer.Argument(help="posts or series")],
    out: Annotated[str, typer.Option("--out", "-o", help="output file ('-' for stdout)")],
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag (repeatable)")] = None,
    since: SinceOption = "30d",
    until: UntilOption = None,
    step: Annotated[str, typer.Option("--step", help="series step: 5m, 1h, 1d")] = "1h",
    fmt: Annotated[ExportFormatOpt, typer.Option("--format", "-f")] = ExportFormatOpt.csv,
    config: ConfigOption = None,
) -> None:
    """Export posts or series as CSV, JSON Lines or Parquet (privacy settings apply)."""
    from monitor.analyse.export import export_posts, export_series

    cfg = get_config(config)
    try:
        start, end = _range(since, until)
        tags = _tags(tag or [], "--tag")
        engine = open_store(cfg)
        if kind is ExportKind.posts:
            summary = export_posts(engine, cfg, out, fmt.value, tags=tags, since=start, until=end)
        else:
            summary = export_series(engine, out, fmt.value, tags=tags, since=start, until=end,
                                    step=_step(step))
    except MonitorError as exc:
        fail(str(exc), 2 if isinstance(exc, InputError) else 1)
    except OSError as exc:
        fail(f"{out}: {exc.strerror or exc}", 1)
    if out != "-":
        console.print(f"{out}: {summary.rows} rows ({', '.join(summary.columns)})",
                      highlight=False)


def register(app: typer.Typer) -> None:
    """Add the read-side commands to the ``monitor`` app (idempotent)."""
    known = {c.name for c in app.registered_commands}
    for name, fn in (("trends", trends), ("top", top), ("cotags", cotags_command),
                     ("relate", relate_command), ("export", export_command)):
        if name not in known:
            app.command(name)(fn)
