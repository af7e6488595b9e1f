"""File import wiring: sources.files → enrich → store, in batches, resumable.

Resuming: the number of the last stored line is saved as the cursor of the
stream ``<platform>:<absolute path>`` in the same transaction as the batch,
together with the file's size and the hash of its first 64 KiB; a rerun on the
same file, or on that file with lines appended, starts after that line, and
the unique (platform, key) drops anything stored twice, so importing the same
file twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.models import Cursor, Post
from monitor.sources.files import Rejected, read_posts
from monitor.store.write import load_cursor, write_batch

__all__ = ["ImportSummary", "import_file"]

log = logging.getLogger(__name__)
SOURCE = "file"


@dataclass
class ImportSummary:
    """Counts of one import run; ``rejections`` holds the first ones for display."""

    file: str
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped_lines: int = 0
    rejections: list[Rejected] = field(default_factory=list)


_HEAD = 65536


def _head_hash(path: Path, size: int) -> str:
    with path.open("rb") as handle:
        return hashlib.sha256(handle.read(min(_HEAD, size))).hexdigest()[:16]


def _same_file_grown(path: Path, state: Mapping[str, object]) -> bool:
    """True when *path* is the file the cursor was saved for, possibly with lines appended."""
    size = state.get("size")
    if not isinstance(size, int) or path.stat().st_size < size:
        return False
    return state.get("head") == _head_hash(path, size)


def import_file(
    engine: Engine,
    config: Config,
    path: Path,
    platform: str,
    *,
    mapping: Mapping[str, str] | None = None,
    default_tags: tuple[str, ...] = (),
    batch_size: int = 1000,
    on_reject: Callable[[Rejected], None] | None = None,
    enricher: Enricher | None = None,
) -> ImportSummary:
    """Import one file; malformed lines are reported, counted and skipped."""
    enricher = enricher or Enricher.from_config(config)
    stream = f"{platform}:{path.resolve()}"
    size = path.stat().st_size
    identity = {"size": size, "head": _head_hash(path, size)}
    saved = load_cursor(engine, SOURCE, stream)
    start_line = 0
    if saved is not None:
        state = json.loads(saved.value)
        if _same_file_grown(path, state):
            start_line = int(state.get("line", 0))
    summary = ImportSummary(file=str(path), skipped_lines=start_line)
    pending: list[Post] = []
    last_line = start_line

    def flush() -> None:
        if not pending:
            return
        cursor = Cursor(SOURCE, stream, json.dumps({**identity, "line": last_line}))
        result = write_batch(engine, enricher.enrich_many(pending), cursor=cursor)
        summary.stored += result.inserted
        summary.duplicates += result.duplicates
        pending.clear()

    for item in read_posts(
        path, platform, mapping, default_tags=default_tags, start_line=start_line
    ):
        if isinstance(item, Rejected):
            summary.rejected += 1
            if len(summary.rejections) < 1000:
                summary.rejections.append(item)
            if on_reject is not None:
                on_reject(item)
            continue
        summary.read += 1
        pending.append(item.post)
        last_line = item.line
        if len(pending) >= batch_size:
            flush()
    flush()
    log.info(
        "import %s: %d stored, %d duplicates, %d rejected",
        path.name,
        summary.stored,
        summary.duplicates,
        summary.rejected,
    )
    return summary
