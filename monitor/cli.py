"""The ``monitor`` command: a thin skin over the library.

Every command takes ``--config FILE``; user mistakes become one line on stderr
and a non-zero exit status (2 for bad configuration or arguments), never a
traceback.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from monitor.config import Config, load_config
from monitor.errors import ConfigError, InputError, MonitorError
from monitor.sources.files import PRESETS, parse_mapping
from monitor.store.db import make_engine, migrate

__all__ = ["ConfigOption", "OutputFormat", "app", "emit_rows", "fail", "main", "open_store"]

app = typer.Typer(
    name="monitor",
    help="Follow hashtags, score sentiment, keep time series in SQL, raise trend alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="config file (default: config.yaml or $MONITOR_CONFIG)"),
]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def get_config(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc), 2)


def open_store(config: Config, *, upgrade: bool = True) -> Any:
    """An engine on the configured database, migrated to the latest schema."""
    engine = make_engine(config.database.url, echo=config.database.echo)
    if upgrade:
        migrate(engine)
    return engine


def emit_rows(
    rows: Sequence[dict[str, Any]],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    columns: Sequence[str] | None = None,
) -> None:
    """Print rows as a Rich table, CSV or JSON (the same columns in every format)."""
    cols = list(columns) if columns else (list(rows[0].keys()) if rows else [])
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(list(rows), default=str, ensure_ascii=False, indent=1) + "\n")
        return
    if fmt is OutputFormat.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
        sys.stdout.write(buf.getvalue())
        return
    table = Table(title=title)
    for col in cols:
        table.add_column(col, justify="right" if rows and _numeric(rows[0].get(col)) else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in cols))
    console.print(table)


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@app.command("check-config")
def check_config(
    file: Annotated[Path | None, typer.Argument(help="config file to check")] = None,
    config: ConfigOption = None,
) -> None:
    """Validate a config file; exit 2 with one line naming the problem."""
    cfg = get_config(file or config)
    sources = len(cfg.sources)
    where = cfg.database.url.split("@")[-1]
    console.print(
        f"ok: {file or config or 'config.yaml'}: {len(cfg.hashtags)} hashtags, "
        f"{sources} source{'s' if sources != 1 else ''}, database {where}",
        highlight=False,
        soft_wrap=True,
    )


@app.command("init-db")
def init_db(config: ConfigOption = None) -> None:
    """Create or upgrade the database schema (alembic upgrade heads)."""
    cfg = get_config(config)
    try:
        open_store(cfg)
    except MonitorError as exc:
        fail(str(exc))
    console.print("database is at the latest schema", highlight=False)


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="JSONL or CSV file (optionally .gz)")],
    platform: Annotated[str, typer.Option("--platform", "-p", help="platform name, e.g. twitter")],
    preset: Annotated[
        str, typer.Option(help="column mapping preset: " + ", ".join(sorted(PRESETS)))
    ] = "native",
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="FIELD=COLUMN, e.g. author=user.screen_name (repeatable)"),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="tag every imported post with TAG")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Import historical posts; resumable, malformed lines reported as FILE:LINE: reason."""
    from monitor.importer import import_file
    from monitor.tags import normalise_tag

    cfg = get_config(config)
    if preset not in PRESETS:
        fail(f"--preset: expected one of {', '.join(sorted(PRESETS))}, got {preset!r}", 2)
    if not file.is_file():
        fail(f"{file}: file not found", 2)
    try:
        mapping = {**PRESETS[preset], **parse_mapping(map_ or [])}
        engine = open_store(cfg)
        summary = import_file(
            engine,
            cfg,
            file,
            platform.strip().lower(),
            mapping=mapping,
            default_tags=tuple(normalise_tag(t) for t in tag or []),
            on_reject=lambda r: err_console.print(
                str(r), highlight=False, markup=False, soft_wrap=True
            ),
        )
    except MonitorError as exc:
        fail(str(exc), 2 if isinstance(exc, InputError) else 1)
    resumed = f" (resumed after line {summary.skipped_lines})" if summary.skipped_lines else ""
    console.print(
        f"{file}: {summary.stored} stored, {summary.duplicates} duplicates, "
        f"{summary.rejected} rejected{resumed}",
        highlight=False,
    )


# Command modules of later stages register themselves here (each defines register(app)).
_COMMAND_MODULES: tuple[str, ...] = (
    "monitor.analyse.commands",
    "monitor.status",
    "monitor.notify.commands",
    "monitor.detect.commands",
)


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``monitor`` console script."""
    _register_all()
    try:
        app(args=list(argv) if argv is not None else None, standalone_mode=True)
    except MonitorError as exc:
        # raised outside a command's own handling: still one line, no traceback
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
