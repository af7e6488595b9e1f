"""Progress of ``monitor import`` on stderr, and what Ctrl-C says.

On a terminal: a Rich progress bar with the line reached, posts stored, the
rate and (for a whole, uncompressed file) the ETA. Not on a terminal (a log
file, CI, a pipe): one plain line every ``--progress-every`` seconds
(default :data:`PLAIN_EVERY`; 0 prints one per chunk). Ctrl-C
prints ``interrupted after line N (M stored); run again to resume`` and exits
130: every chunk reported was committed with its cursor, so a rerun starts
after it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from monitor.importer import ImportProgress

__all__ = ["PLAIN_EVERY", "ImportProgressView", "import_progress"]

PLAIN_EVERY = 10.0  # seconds between plain progress lines


def _rate(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


class ImportProgressView:
    """Receives :class:`ImportProgress` from the importer and shows it."""

    def __init__(self, path: Path, console: Console, total: int | None,
                 every: float = PLAIN_EVERY) -> None:
        self.path = path
        self.console = console
        self.total = total  # bytes to read, when known (None: no ETA)
        self.last: ImportProgress | None = None
        self.started = time.monotonic()
        self.every = max(0.0, every)
        self._next_line = self.started + self.every
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def start(self) -> None:
        if not self.console.is_terminal:
            return
        self._bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("line {task.fields[line]:,} · {task.fields[stored]:,} stored"),
            TransferSpeedColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True)
        self._bar.start()
        self._task = self._bar.add_task(f"import {self.path.name}", total=self.total,
                                        line=0, stored=0)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, progress: ImportProgress) -> None:
        """The importer's ``on_progress`` hook (called after each committed chunk)."""
        self.last = progress
        # a resumed run skipped lines unread: count them at this run's bytes per line
        lines = max(progress.line - progress.skipped, 1)
        before = progress.skipped * progress.bytes / lines
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=before + progress.bytes, line=progress.line,
                             stored=progress.stored)
            return
        now = time.monotonic()
        if now < self._next_line:
            return
        self._next_line = now + self.every
        elapsed = max(now - self.started, 1e-6)
        speed = progress.bytes / elapsed
        share = ""
        if self.total:
            done = min((before + progress.bytes) / self.total, 1.0)
            eta = max(self.total - before - progress.bytes, 0) / speed if speed > 0 else 0.0
            share = f", {done * 100:.0f}%, ETA {_duration(eta)}"
        self.console.print(
            f"import {self.path.name}: line {progress.line}, {progress.stored} stored, "
            f"{_rate(speed)}/s{share}", highlight=False, markup=False, soft_wrap=True)

    def interrupted(self) -> str:
        line = self.last.line if self.last else 0
        stored = self.last.stored if self.last else 0
        return f"interrupted after line {line} ({stored} stored); run again to resume"


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@contextmanager
def import_progress(path: Path, console: Console, every: float = PLAIN_EVERY
                    ) -> Iterator[ImportProgressView]:
    """Show progress while the block runs; Ctrl-C becomes one line and exit status 130.

    The ETA needs the text size: known for a plain file read from its start,
    unknown for a ``.gz`` (the compressed size says little) — then the bar shows
    the rate alone.
    """
    total = None if path.suffix == ".gz" else path.stat().st_size
    view = ImportProgressView(path, console, total, every)
    view.start()
    try:
        yield view
    except KeyboardInterrupt:
        view.stop()
        console.print(view.interrupted(), highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        view.stop()
