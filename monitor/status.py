"""``monitor run`` (the service) and ``monitor status`` (per-stream health).

``status`` reads ``stream_health`` (:func:`monitor.store.health.read_status`):
one row per stream with when it last worked, its last error, how many posts it
brought, how many it had to skip, how many fetches failed and how far it lags
behind the platform.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.cli import (
    ConfigOption,
    OutputFormat,
    emit_rows,
    fail,
    get_config,
    open_store,
    user_errors,
)
from monitor.config import Config
from monitor.store.db import redact_url
from monitor.store.health import StreamStatus, read_status

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


# ---------------------------------------------------------------------------- run


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z"


def configure_logging(level: str) -> None:
    """One line per event on stderr: ``2026-01-01T12:00:00Z INFO monitor.x: message``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UTCFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # third-party chatter: every job start and websocket handshake is not an event
    for name in ("apscheduler", "httpx", "httpcore", "websockets"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


async def run_service(config: Config, engine: Engine) -> None:
    """Run the service until SIGINT or SIGTERM; a second signal exits at once."""
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


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``status`` to the ``monitor`` command."""

    @app.command("run")
    @user_errors
    def run(config: ConfigOption = None) -> None:
        """Run the service: migrate the database, then collect until SIGINT/SIGTERM."""
        cfg = get_config(config)
        configure_logging(cfg.logging.level)
        engine = open_store(cfg, migrate_schema=True)
        try:
            asyncio.run(run_service(cfg, engine))
        finally:
            engine.dispose()

    @app.command("status")
    @user_errors
    def status(
        config: ConfigOption = None,
        fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="output format")] = (
            OutputFormat.table),
    ) -> None:
        """Per-stream health: last success, last error, posts, rejected, fetch errors, lag."""
        cfg = get_config(config)
        engine = open_store(cfg)
        try:
            rows = read_status(engine)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            fail(f"cannot read stream health from {redact_url(cfg.database.url)}: {reason} "
                 "(run `monitor init-db` first?)")
        finally:
            engine.dispose()
        if not rows and fmt is OutputFormat.table:
            typer.echo("no stream has run yet: start the service with `monitor run`", err=True)
            return
        emit_rows(status_rows(rows, fmt, datetime.now(UTC)), fmt, title="stream health",
                  columns=TABLE_COLUMNS if fmt is OutputFormat.table else COLUMNS)
