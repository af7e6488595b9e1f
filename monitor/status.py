"""``monitor run`` (the service) and ``monitor status`` (per-stream health).

``status`` reads ``stream_health`` (:func:`monitor.store.health.read_status`):
one row per stream with when it last worked, its last error, how many posts it
brought, how many it had to skip, how many fetches failed and how far it lags
behind the platform (the deletion re-check is the ``recheck`` stream). Then
what is kept (:mod:`monitor.store.kept`): the oldest post, post with text,
post with an author pseudonym, deletion and bucket, each kind's retention
setting and the retention job's last run.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.cli import (
    ConfigOption,
    OutputFormat,
    console,
    emit_rows,
    fail,
    get_config,
    open_store,
    user_errors,
)
from monitor.config import Config
from monitor.durations import format_duration
from monitor.store.db import redact_url
from monitor.store.health import StreamStatus, read_status
from monitor.store.kept import JobRun, OldestRow

__all__ = ["StreamStatus", "configure_logging", "read_status", "register", "run_service"]

log = logging.getLogger("monitor.run")

# csv/json carry exact times; the table folds the error's age into the error column
COLUMNS = ("source", "stream", "last_success", "last_error_at", "last_error", "posts",
           "rejected", "fetch_errors", "lag")
TABLE_COLUMNS = ("source", "stream", "last_success", "last_error", "posts", "rejected",
                 "fetch_errors", "lag")


def _age(ts: datetime | None, now: datetime) -> str | None:
    if ts is None:
        return None
    return f"{_span((now - ts).total_seconds())} ago"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{(seconds % 86400) // 3600:02.0f}h"


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def status_rows(rows: list[StreamStatus], fmt: OutputFormat, now: datetime
                ) -> list[dict[str, Any]]:
    """Rows for emit_rows: ages for people (table), exact values for machines (csv/json)."""
    out: list[dict[str, Any]] = []
    for r in rows:
        if fmt is OutputFormat.table:
            error = r.last_error
            if error and len(error) > 200:
                error = error[:197] + "..."
            if error:
                error = f"{_age(r.last_error_at, now)}: {error}"
                if not r.failing:
                    error = f"(recovered) {error}"
            out.append({
                "source": r.source, "stream": r.stream,
                "last_success": _age(r.last_success_at, now) or "never",
                "last_error": error,
                "posts": r.posts_collected, "rejected": r.posts_rejected,
                "fetch_errors": r.fetch_errors,
                "lag": None if r.lag_seconds is None else _span(r.lag_seconds),
            })
        else:
            out.append({
                "source": r.source, "stream": r.stream,
                "last_success": _iso(r.last_success_at), "last_error_at": _iso(r.last_error_at),
                "last_error": r.last_error, "posts": r.posts_collected,
                "rejected": r.posts_rejected, "fetch_errors": r.fetch_errors,
                "lag": None if r.lag_seconds is None else round(r.lag_seconds, 3),
            })
    return out


def status_lines(rows: list[StreamStatus], now: datetime, width: int) -> list[str]:
    """The stream health table for a terminal *width* columns wide (80 and up).

    One line per stream with fixed numeric columns, and its last error on the
    lines below, wrapped and indented: an error is the longest thing here, and
    squeezed into a table column it made one stream 15 lines of 8 characters.
    """
    width = max(60, width)
    source_w = min(16, max([len("source"), *(len(r.source) for r in rows)]))
    numbers = f"{'last ok':>9} {'posts':>7} {'rej':>5} {'errs':>5} {'lag':>6}"
    stream_w = max(10, width - source_w - len(numbers) - 2)
    failing = sum(1 for r in rows if r.failing)
    out = [f"stream health: {len(rows)} stream{'s' if len(rows) != 1 else ''}, "
           f"{failing} failing",
           f"{'source':<{source_w}} {'stream':<{stream_w}} {numbers}"]
    for r in rows:
        lag = "–" if r.lag_seconds is None else _span(r.lag_seconds)
        ok = "never" if r.last_success_at is None else _span(
            (now - r.last_success_at).total_seconds())
        figures = (f"{ok:>9} {r.posts_collected:>7} {r.posts_rejected:>5} {r.fetch_errors:>5} "
                   f"{lag:>6}")
        if len(r.stream) > stream_w:
            # the whole name on a line of its own, the figures under their headings
            out.append(_fit(f"{r.source:<{source_w}} {r.stream}", width))
            out.append(f"{'':<{source_w + stream_w + 1}} {figures}")
        else:
            out.append(f"{_fit(r.source, source_w):<{source_w}} {r.stream:<{stream_w}} "
                       f"{figures}")
        if r.last_error:
            error = r.last_error
            label, sep, rest = error.partition(": ")
            if sep and label.replace(" ", "") == r.stream.replace(" ", ""):
                error = rest  # the stream is named on the line above
            head = "error" if r.failing else "recovered from error"
            out += textwrap.wrap(f"{head} {_age(r.last_error_at, now)}: {error}",
                                 width=width, initial_indent="    ", subsequent_indent="      ",
                                 break_on_hyphens=False)
    return [*out, ""]


def _fit(text: str, width: int) -> str:
    """*text* cut in the middle to *width*: stream names differ at both ends."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[:width - 1 - tail] + "…" + text[len(text) - tail:]


KEPT_COLUMNS = ("kind", "oldest", "kept_for", "last_run", "changed", "last_error")


def kept_rows(oldest: list[OldestRow], runs: list[JobRun], cfg: Config, fmt: OutputFormat,
              now: datetime) -> list[dict[str, Any]]:
    """One row per kind of data: its oldest row, how long it is kept (the setting)
    and, for the kinds the retention job handles, that job's last run."""
    privacy = cfg.privacy
    retention = privacy.retention
    setting: dict[str, str] = {
        "posts": _keep_for(retention.posts),
        "text": _keep_for(retention.text) if privacy.store_text else
        f"not stored (retention {_keep_for(retention.text)})",
        "authors": _keep_for(retention.authors) if privacy.authors != "drop" else
        f"not stored (retention {_keep_for(retention.authors)})",
        "deletions": "forever (platform, key, time only)",
        "buckets": f"forever (counts; deletions: {privacy.deletions})",
        "forgotten": "forever (keyed pseudonym only; changed = later posts dropped)",
    }
    by_kind = {run.kind: run for run in runs}
    table = fmt is OutputFormat.table
    out: list[dict[str, Any]] = []
    for row in oldest:
        run = by_kind.get(row.kind)
        when = run.last_run_at if run else None
        out.append({
            "kind": row.kind,
            "oldest": (_age(row.oldest, now) or "none") if table else _iso(row.oldest),
            "kept_for": setting.get(row.kind, ""),
            # only posts, text and authors have a retention job
            "last_run": _iso(when) if not table else _age(when, now) or (
                "never" if row.kind in ("posts", "text", "authors") else None),
            "changed": run.last_changed if run else None,
            "last_error": run.last_error if run else None,
        })
    return out


def _keep_for(age: timedelta | None) -> str:
    return "forever" if age is None else format_duration(age)


# ---------------------------------------------------------------------------- run


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record, so a command
    run in-process (tests, embedding) never logs into a stream closed since."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str) -> None:
    """One line per event on stderr: ``2026-01-01T12:00:00Z INFO monitor.x: message``.

    Calling it again replaces only the handler it installed before; handlers that
    others put on the root logger (a test's log capture) stay.
    """
    handler = _StderrHandler()
    handler.setFormatter(_UTCFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _StderrHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # third-party chatter: every job start and websocket handshake is not an event
    for name in ("apscheduler", "httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


async def run_service(config: Config, engine: Engine,
                      on_stopped: Callable[[], None] | None = None) -> None:
    """Run the service until SIGINT or SIGTERM; a second signal exits at once.
    *on_stopped* is called once the service has stopped (``monitor run``: the exit
    watchdog)."""
    from monitor.wiring import build_service  # the service pulls in every stage

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    first_signal: list[float] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            # `timeout`, shells and process managers often deliver one stop to the
            # whole process group twice in a burst: only a later signal means "now"
            if time.monotonic() - first_signal[0] < 1.0:
                return
            log.warning("%s again: exiting now without waiting", name)
            os._exit(130)
        first_signal.append(time.monotonic())
        log.info("%s received: stopping (send it again to exit at once)", name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await build_service(config, engine).run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if on_stopped is not None:
            on_stopped()


EXIT_WATCHDOG = 5.0  # seconds from "stopped" to the process's exit, at most


def _exit_watchdog(after: float) -> None:
    """Exit *after* s from now if the process is still there (the service has stopped).

    Everything is committed by then; what is left is ``asyncio.run``'s final
    cancellation, the default executor's threads and the interpreter's own exit,
    all unbounded: a library task or thread that never ends (a lost cancellation in
    a connection pool) would keep a stopped process alive forever. The stacks of
    every thread go to stderr first, so the cause can be found.
    """
    def fire() -> None:
        log.warning("still running %.0fs after stopping: exiting now (threads: %s)", after,
                    ", ".join(t.name for t in threading.enumerate()))
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(0)

    timer = threading.Timer(after, fire)
    timer.daemon = True  # a process that exits on its own does not wait for it
    timer.start()


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``status`` to the ``monitor`` command."""

    @app.command("run")
    @user_errors
    def run(config: ConfigOption = None) -> None:
        """Run the service: migrate the database, then collect until SIGINT/SIGTERM."""
        from monitor.locks import exclusive_run

        cfg = get_config(config)
        configure_logging(cfg.logging.level)
        # one service per SQLite database (a second would send every alert twice)
        with exclusive_run(cfg.database.url):
            engine = open_store(cfg, migrate_schema=True)
            try:
                asyncio.run(run_service(cfg, engine,
                                        on_stopped=lambda: _exit_watchdog(EXIT_WATCHDOG)))
            finally:
                engine.dispose()

    @app.command("status")
    @user_errors
    def status(
        config: ConfigOption = None,
        fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="output format")] = (
            OutputFormat.table),
        kept: Annotated[bool, typer.Option(
            "--kept", help="csv/json: what is kept (oldest rows, retention runs) instead of "
                           "the streams; the table shows both")] = False,
        cluster: Annotated[bool, typer.Option(
            "--cluster", help="csv/json: the processes sharing this PostgreSQL database, what "
                              "each holds and when it last renewed (the table shows them "
                              "too)")] = False,
    ) -> None:
        """Per-stream health (last success, last error, posts, rejected, fetch errors, lag),
        then what is kept: the oldest row of each kind and the retention job's last run."""
        from monitor.cluster.status import CLUSTER_COLUMNS, cluster_rows
        from monitor.store.kept import oldest_rows, retention_runs

        cfg = get_config(config)
        engine = open_store(cfg)
        try:
            rows = read_status(engine)
            kept_table = (kept_rows(oldest_rows(engine), retention_runs(engine), cfg, fmt,
                                    datetime.now(UTC))
                          if kept or fmt is OutputFormat.table else [])
            members = (cluster_rows(engine, cfg.cluster, fmt.value)
                       if cluster or fmt is OutputFormat.table else [])
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            fail(f"cannot read stream health from {redact_url(cfg.database.url)}: {reason} "
                 "(run `monitor init-db` first?)")
        finally:
            engine.dispose()
        if cluster and fmt is not OutputFormat.table:
            emit_rows(members, fmt, columns=CLUSTER_COLUMNS)
            return
        if kept and fmt is not OutputFormat.table:
            emit_rows(kept_table, fmt, columns=KEPT_COLUMNS)
            return
        if not rows and fmt is OutputFormat.table:
            typer.echo("no stream has run yet: start the service with `monitor run`", err=True)
        elif fmt is OutputFormat.table:
            for line in status_lines(rows, datetime.now(UTC), console.width):
                console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            emit_rows(status_rows(rows, fmt, datetime.now(UTC)), fmt, columns=COLUMNS)
        if fmt is OutputFormat.table:
            emit_rows(kept_table, fmt, title="what is kept", columns=KEPT_COLUMNS)
            if members:  # PostgreSQL: who holds what (issue 14)
                emit_rows(members, fmt, title="cluster", columns=CLUSTER_COLUMNS)
