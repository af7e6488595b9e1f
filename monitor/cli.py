"""The ``monitor`` command: a thin skin over the library.

Every command takes ``--config FILE``; user mistakes become one line on stderr
and a non-zero exit status (2 for bad configuration or arguments), never a
traceback. That translation lives in one place, :func:`user_errors`, which every
command (here and in the command modules) is wrapped in.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar, overload

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from monitor.config import Config, load_config, validation_problem
from monitor.errors import ConfigError, InputError, MonitorError
from monitor.sources.file_lines import MAX_LINE_CHARS
from monitor.sources.files import PRESETS, ReadOptions, parse_mapping
from monitor.store.db import check_schema, make_engine, migrate

__all__ = ["ConfigOption", "OutputFormat", "app", "emit_rows", "exit_code", "fail",
           "open_store", "run", "user_errors", "validation_error"]

P = ParamSpec("P")
R = TypeVar("R")

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


def _version(value: bool) -> None:
    if value:
        from monitor import __version__

        console.print(f"hashtag-monitor {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version, help="print the version and exit")] = False,
) -> None:
    """Follow hashtags, score sentiment, keep time series in SQL, raise trend alerts."""


class KeyFrom(StrEnum):
    """Where an imported post's key comes from (``monitor import --key-from``)."""

    column = "column"
    row = "row"
    content = "content"


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit."""
    # escaped: messages carry user text and brackets such as 'hashtag-monitor[parquet]'
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def exit_code(exc: MonitorError) -> int:
    """2 for bad configuration or arguments, 1 for everything else."""
    return 2 if isinstance(exc, ConfigError | InputError) else 1


@overload
def user_errors(command: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def user_errors(*, input_code: int = 2) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def user_errors(
    command: Callable[P, R] | None = None, /, *, input_code: int = 2
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a command so a MonitorError it raises is one line on stderr and an exit status.

    ``input_code`` overrides the status of an InputError for a command where it
    names a missing record rather than a malformed argument.
    """

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        # functools.wraps keeps the signature and annotations Typer builds the options from
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except MonitorError as exc:
                fail(str(exc), input_code if isinstance(exc, InputError) else exit_code(exc))
            except ValidationError as exc:
                # a model built from arguments: one line, not pydantic's report
                fail(str(validation_error(exc.title, exc)), 2)

        return wrapper

    return wrap if command is None else wrap(command)


def validation_error(option: str, exc: ValidationError) -> InputError:
    """A pydantic error about a command-line value as one line naming *option*."""
    path, problem = validation_problem(exc)
    return InputError(option, f"{path}: {problem}" if path and not option.startswith("-")
                      else problem)


def get_config(path: Path | None) -> Config:
    """The configuration (a ConfigError reaches the command's user_errors: exit 2)."""
    return load_config(path)


def open_store(config: Config, *, migrate_schema: bool = False) -> Engine:
    """An engine on the configured database.

    Only the commands that set a database up (``init-db``, ``import``, ``run``)
    pass ``migrate_schema=True``. Every other command only checks the schema
    revision, so a read never changes the schema: when the database is behind it
    gets one line saying to run ``monitor init-db``.
    """
    engine = make_engine(config.database.url, echo=config.database.echo)
    try:
        if migrate_schema:
            migrate(engine)
        else:
            check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
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
@user_errors
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
@user_errors
def init_db(config: ConfigOption = None) -> None:
    """Create or upgrade the database schema (alembic upgrade heads)."""
    open_store(get_config(config), migrate_schema=True).dispose()
    console.print("database is at the latest schema", highlight=False)


@app.command("import")
@user_errors
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
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=0,
                     help="processes that parse and enrich (default: one per core for files "
                          "over 3 MiB; 0 = all in one process)"),
    ] = None,
    progress_every: Annotated[
        float,
        typer.Option("--progress-every", min=0.0, metavar="SECONDS",
                     help="not on a terminal: seconds between progress lines (0: every chunk)"),
    ] = 10.0,
    date_format: Annotated[
        str | None,
        typer.Option("--date-format", metavar="FORMAT",
                     help="strptime format of created_at, e.g. '%m/%d/%Y %H:%M' (default: "
                          "ISO-8601, epoch, RFC 2822, or a common format detected)"),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", metavar="ZONE",
                     help="IANA zone of times written without one, e.g. Europe/Paris "
                          "(default UTC)"),
    ] = None,
    key_from: Annotated[
        KeyFrom,
        typer.Option("--key-from",
                     help="post key: the key/id column, the file name and row number, or a "
                          "hash of time, text and author (README: what each deduplicates)"),
    ] = KeyFrom.column,
    max_line_mb: Annotated[
        int,
        typer.Option("--max-line-mb", metavar="MIB",
                     help="line-size limit: longer lines are rejected unread (Mi characters)"),
    ] = MAX_LINE_CHARS >> 20,
    config: ConfigOption = None,
) -> None:
    """Import historical posts; resumable, malformed lines reported as FILE:LINE: reason."""
    from monitor.arguments import platform_arg, tag_args
    from monitor.importer import import_file
    from monitor.progress import import_progress
    from monitor.rejections import RejectionReport

    cfg = get_config(config)
    if preset not in PRESETS:
        fail(f"--preset: expected one of {', '.join(sorted(PRESETS))}, got {preset!r}", 2)
    platform = platform_arg(platform)
    tags = tuple(tag_args(tag or [], "--tag"))
    options = ReadOptions(date_format=date_format, timezone=timezone, key_from=key_from.value,
                          max_line=max_line_mb << 20)
    if not file.is_file():
        fail(f"{file}: file not found", 2)
    mapping = {**PRESETS[preset], **parse_mapping(map_ or [])}
    # the first few lines of each reason as they come, one count per reason at the end
    report = RejectionReport(
        lambda line: err_console.print(line, highlight=False, markup=False, soft_wrap=True))
    engine = open_store(cfg, migrate_schema=True)
    # progress on stderr; Ctrl-C: "interrupted after line N (M stored)", exit 130
    try:
        with import_progress(file, err_console, progress_every) as progress:
            summary = import_file(
                engine,
                cfg,
                file,
                platform,
                mapping=mapping,
                default_tags=tags,
                on_reject=report,
                workers=workers,
                on_progress=progress.update,
                options=options,
            )
    finally:
        engine.dispose()
    for line in report.summary():
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    resumed = f" (resumed after line {summary.skipped_lines})" if summary.skipped_lines else ""
    console.print(
        f"{file}: {summary.stored} stored, {summary.duplicates} duplicates, "
        f"{summary.rejected} rejected{resumed}",
        highlight=False,
    )
    # the exit status says whether anything was stored; a file already imported
    # (every post a duplicate, or resumed at its end, nothing rejected) is fine
    if summary.stored == 0 and (summary.rejected or not (summary.duplicates
                                                         or summary.skipped_lines)):
        fail(f"{file}: nothing stored: " + ("every record was rejected (reasons above)"
                                            if summary.rejected else "the file holds no posts"))


def run(
    argv: Sequence[str] | None = None, *, setup: Callable[[typer.Typer], None] | None = None
) -> None:
    """Run the ``monitor`` command; *setup* first adds the command sets to the app.

    The console script is :func:`monitor.commands.main`, which passes the
    registered command sets: the command modules import this one, so it cannot
    import them.
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        if setup is not None:
            setup(app)
        # not standalone: a usage mistake comes back here instead of as a boxed report
        code = app(args=args, prog_name="monitor", standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # the help, exactly as Typer prints it
            app(args=args, prog_name="monitor", standalone_mode=True)
        ctx = getattr(exc, "ctx", None)
        see = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _exit_with(f"{message.rstrip('.')}{see}", exc.exit_code)
    except typer.Abort:
        _exit_with("aborted", 1)
    except MonitorError as exc:
        # raised outside any command (e.g. while registering): still one line, no traceback
        _exit_with(str(exc), exit_code(exc))
    if isinstance(code, int) and code:
        sys.exit(code)  # typer.Exit(n) of a command


def _exit_with(message: str, code: int) -> NoReturn:
    """:func:`fail` outside a command, where typer.Exit would not be caught."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)
