"""CLI commands of detection: ``monitor alerts``, ``evaluate``, ``backtest`` and ``silence``.

Thin skins over :mod:`monitor.detect.engine` and :mod:`monitor.detect.silences`;
user mistakes become one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from monitor.analyse.timerange import parse_range
from monitor.arguments import duration_arg, tag_args
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
from monitor.errors import InputError

__all__ = ["register"]

_PLAIN: dict[str, Any] = {"highlight": False, "soft_wrap": True, "markup": False}
FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help="table, csv or json")]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _labels(labels: dict[str, str] | Any) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(dict(labels).items()))


def _now(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(at)
    except ValueError:
        raise InputError("--at", f"expected an ISO-8601 time like 2026-01-31T12:00Z, got {at!r}") \
            from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _duration(option: str, value: str) -> timedelta:
    return duration_arg(value, option)


def _silence_warnings(cfg: Config, matchers: dict[str, str]) -> list[str]:
    """What in *matchers* no configured rule can produce: such a silence mutes nothing."""
    if not cfg.rules:
        return ["no rules are configured, so this silence matches no alert"]
    names = sorted(r.name for r in cfg.rules)
    tags = set(cfg.hashtags) | {t for r in cfg.rules for t in r.tags}
    static: dict[str, set[str]] = {}
    for r in cfg.rules:
        for key, value in r.labels.items():
            static.setdefault(key, set()).add(value)
    sources = {s.type for s in cfg.sources}
    known = {"rule", "tag", "cotag", "source", "stream", *static}
    out = []
    for key, value in matchers.items():
        if key not in known:
            out.append(f"no rule gives its alerts a label {key!r} (labels: "
                       f"{', '.join(sorted(known))})")
        elif key == "rule" and value not in names:
            out.append(f"no configured rule is named {value!r} (rules: {', '.join(names)})")
        elif key == "tag" and value not in tags:
            out.append(f"no rule watches the tag {value!r} (followed: "
                       f"{', '.join(sorted(tags))})")
        elif key == "source" and sources and value not in sources:
            out.append(f"no configured source is {value!r} (sources: "
                       f"{', '.join(sorted(sources))})")
        elif key in static and value not in static[key]:
            out.append(f"no rule has the label {key}={value!r} (values: "
                       f"{', '.join(sorted(static[key]))})")
    return out


@user_errors
def alerts_command(
    show_all: Annotated[bool, typer.Option("--all", help="every alert ever raised")] = False,
    recent: Annotated[str, typer.Option("--recent", help="show alerts resolved within")] = "24h",
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
) -> None:
    """Firing and pending alerts, and those resolved recently."""
    from monitor.detect.explain import one_line
    from monitor.store.alerts import list_alerts

    cfg = get_config(config)
    window = _duration("--recent", recent)
    rows = list_alerts(open_store(cfg), datetime.now(UTC), recent=window, include_all=show_all)
    out = [
        {"id": a.id, "state": a.state, "rule": a.rule, "labels": _labels(a.labels),
         "since": _when(a.active_since), "fired": _when(a.fired_at),
         "resolved": _when(a.resolved_at), "summary": a.summary,
         # observed vs expected (baseline window), z, p: why it fires
         "why": one_line((a.annotations or {}).get("explanation")),
         "explanation": (a.annotations or {}).get("explanation")}
        for a in rows
    ]
    if not out and fmt is OutputFormat.table:
        console.print("no firing, pending or recently resolved alerts", **_PLAIN)
        return
    columns = ["id", "state", "rule", "labels", "since", "fired", "resolved", "summary", "why"]
    if fmt is OutputFormat.json:
        columns.append("explanation")  # the whole record, parameters included
    emit_rows(out if fmt is OutputFormat.json else
              [{k: v for k, v in r.items() if k != "explanation"} for r in out],
              fmt, title="alerts", columns=columns)


@user_errors
def evaluate_command(
    at: Annotated[str | None, typer.Option("--at", help="evaluate at this UTC time")] = None,
    config: ConfigOption = None,
) -> None:
    """Evaluate every rule once now (or --at), store state and queue notifications."""
    from monitor.detect.engine import evaluate

    cfg = get_config(config)
    if not cfg.rules:
        fail("no rules configured (add a `rules:` list to the config file)", 2)
    report = evaluate(open_store(cfg), cfg, _now(at))
    for o in report.outcomes:
        extra = f" [{o.announced}]" if o.announced else ""
        muted = f" ({o.muted})" if o.muted else ""
        console.print(f"{o.state:<8} {o.rule} {_labels(o.labels)}{muted}{extra}: {o.summary}",
                      **_PLAIN)
    console.print(f"{len(report.outcomes)} alerts evaluated, {len(report.firing)} firing, "
                  f"{len(report.announcements)} queued for notification", **_PLAIN)


@user_errors
def backtest_command(
    since: Annotated[str, typer.Option("--since", help="replay this far back, e.g. 90d")] = "30d",
    until: Annotated[str | None, typer.Option("--until", help="end (UTC ISO time); now")] = None,
    rule: Annotated[list[str] | None, typer.Option("--rule", help="only this rule (repeatable)")
                    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="only this tag (repeatable)")
                   ] = None,
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
) -> None:
    """Replay the rules over stored history: when each would have fired and resolved.

    Uses the real lifecycle (for, resolve_after, repeat_interval) but sends
    nothing and writes nothing. Ends with alerts per week per rule and tag.
    """
    from monitor.detect.backtest import backtest
    from monitor.detect.explain import one_line

    cfg = get_config(config)
    if not cfg.rules:
        fail("no rules configured (add a `rules:` list to the config file)", 2)
    names = {r.name for r in cfg.rules}
    for name in rule or []:
        if name not in names:
            raise InputError("--rule", f"no rule named {name!r}; configured: "
                                       f"{', '.join(sorted(names))}")
    start, end = parse_range(since, until)
    result = backtest(open_store(cfg), cfg, start, end, rules=rule or None,
                      tags=tag_args(tag, "--tag") if tag else None)
    episodes = [
        {"rule": a.rule, "labels": _labels(a.labels), "fired": _when(a.fired_at),
         "resolved": _when(a.resolved_at) or "still firing",
         "notifications": len(a.announcements), "summary": a.summary,
         "why": one_line(a.explanation)}
        for a in result.alerts
    ]
    summary = result.summary()
    if fmt is OutputFormat.json:
        import json
        import sys

        sys.stdout.write(json.dumps({
            "since": start.isoformat(), "until": end.isoformat(), "steps": result.steps,
            "alerts": [{**e, "explanation": a.explanation}
                       for e, a in zip(episodes, result.alerts, strict=True)],
            "summary": summary, "skipped": result.skipped,
        }, default=str, ensure_ascii=False, indent=1) + "\n")
        return
    if fmt is OutputFormat.csv:
        emit_rows(episodes, fmt, columns=["rule", "labels", "fired", "resolved",
                                          "notifications", "summary", "why"])
        return
    if episodes:
        emit_rows(episodes, fmt, title=f"would have fired ({_when(start)} to {_when(end)})",
                  columns=["rule", "labels", "fired", "resolved", "notifications", "summary",
                           "why"])
    else:
        console.print(f"no rule would have fired from {_when(start)} to {_when(end)}",
                      **_PLAIN)
    emit_rows(summary, fmt, title="per rule and tag",
              columns=["rule", "tag", "alerts", "pages", "per_week", "firing_hours"])
    for name, why in result.skipped.items():
        console.print(f"{name}: {why}", **_PLAIN)


silence_app = typer.Typer(help="Mute matching alerts for a while without losing their state.",
                          no_args_is_help=True)


@silence_app.command("add")
@user_errors
def silence_add(
    matchers: Annotated[list[str], typer.Argument(help="key=value, e.g. rule=spike tag=metoo")],
    duration: Annotated[str, typer.Option("--for", help="how long, e.g. 2h")] = "2h",
    comment: Annotated[str, typer.Option("--comment", help="why (shown in silence list)")] = "",
    config: ConfigOption = None,
) -> None:
    """Add a silence: `monitor silence add rule=spike tag=metoo --for 2h --comment "..."`."""
    from monitor.detect.silences import add_silence, parse_matchers

    cfg = get_config(config)
    parsed = parse_matchers(matchers)
    length = _duration("--for", duration)
    for warning in _silence_warnings(cfg, parsed):
        # added all the same (the rule may come later), but say it mutes nothing today
        err_console.print(f"warning: silence {_labels(parsed)}: {warning}", **_PLAIN)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    s = add_silence(open_store(cfg), parsed, length, now=datetime.now(UTC), comment=comment,
                    created_by=user)
    console.print(f"silence {s.id}: {_labels(s.matchers)} until {_when(s.ends_at)}", **_PLAIN)


@silence_app.command("list")
@user_errors
def silence_list(
    show_all: Annotated[bool, typer.Option("--all", help="include expired silences")] = False,
    fmt: FormatOption = OutputFormat.table,
    config: ConfigOption = None,
) -> None:
    """Silences in force (with --all, expired ones too)."""
    from monitor.detect.silences import list_silences

    cfg = get_config(config)
    now = datetime.now(UTC)
    rows = list_silences(open_store(cfg), now, include_expired=show_all)
    out = [
        {"id": s.id, "matchers": _labels(s.matchers), "starts": _when(s.starts_at),
         "ends": _when(s.ends_at), "active": s.active(now), "comment": s.comment,
         "by": s.created_by}
        for s in rows
    ]
    if not out and fmt is OutputFormat.table:
        console.print("no silences in force", **_PLAIN)
        return
    emit_rows(out, fmt, title="silences",
              columns=["id", "matchers", "starts", "ends", "active", "comment", "by"])


@silence_app.command("expire")
# "no such silence" is an InputError but names a missing record, not a bad argument
@user_errors(input_code=1)
def silence_expire(
    silence_id: Annotated[int, typer.Argument(help="the id shown by `monitor silence list`")],
    config: ConfigOption = None,
) -> None:
    """End a silence now."""
    from monitor.detect.silences import expire_silence

    cfg = get_config(config)
    s = expire_silence(open_store(cfg), silence_id, datetime.now(UTC))
    console.print(f"silence {s.id} expired at {_when(s.ends_at)}", **_PLAIN)


def register(app: typer.Typer) -> None:
    """Add `alerts`, `evaluate`, `backtest` and `silence` to the ``monitor`` app (idempotent)."""
    known = {c.name for c in app.registered_commands}
    if "alerts" not in known:
        app.command("alerts")(alerts_command)
    if "evaluate" not in known:
        app.command("evaluate")(evaluate_command)
    if "backtest" not in known:
        app.command("backtest")(backtest_command)
    if "silence" not in {g.name for g in app.registered_groups}:
        app.add_typer(silence_app, name="silence")
