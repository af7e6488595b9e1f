"""File import wiring: sources.files → enrich → store, in batches, resumable.

Resuming: the number of the last stored line is saved as the cursor of the
stream ``<platform>:<absolute path>`` in the same transaction as the batch,
together with the file's size and the hash of its first 64 KiB; a rerun on the
same file, or on that file with lines appended, starts after that line, and
the unique (platform, key) drops anything stored twice, so importing the same
file twice adds nothing.

Both cores: this process reads the file's raw records in order and is the only
writer; parsing and enrichment (the CPU work) run in worker processes, one per
core, on chunks of ``batch_size`` records. At most two chunks per worker are in
flight, so memory stays flat whatever the file's size, and the chunks are
written strictly in the order they were read, each in one transaction with the
cursor at its last stored line: the cursor never passes a line whose posts are
not committed, and a ``kill -9`` at any moment resumes with nothing lost or
doubled. Below :data:`PARALLEL_MIN_BYTES` left to read, starting the workers
costs more than they save and the import stays in this process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.errors import InputError
from monitor.models import Cursor, Post, ScoredPost, Sentiment
from monitor.sources.files import (
    ReadOptions,
    Record,
    RecordParser,
    Rejected,
    read_records,
    record_parser,
)
from monitor.store.write import load_cursor, write_batch

__all__ = ["PARALLEL_MIN_BYTES", "ImportProgress", "ImportSummary", "import_file"]

log = logging.getLogger(__name__)
SOURCE = "file"
# Measured (SQLite, benchmarks/ingest.py's posts, ~630 bytes a line): 3,000 lines (1.9 MB)
# import at 7,632 posts/s in one process and 6,595 with two workers; 6,000 lines (3.8 MB)
# at 7,350 and 8,513. Starting the pool and filling it is repaid from about 3 MiB.
PARALLEL_MIN_BYTES = 3 << 20
# chunks in flight per worker: one being enriched, one waiting (keeps workers busy
# while this process writes, and bounds memory)
_IN_FLIGHT = 2


@dataclass
class ImportSummary:
    """Counts of one import run; ``rejections`` holds the first ones for display."""

    file: str
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped_lines: int = 0
    workers: int = 0  # worker processes used (0: all in this process)
    rejections: list[Rejected] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """Where an import is, after each chunk is handled (its posts committed).

    ``line``: the last line of the file handled; ``read``/``stored``: posts so
    far this run; ``bytes``: about how much text this run has read (decoded,
    after the lines a resumed run skips) — for a progress bar's rate and ETA.
    """

    line: int
    read: int
    stored: int
    bytes: int
    skipped: int = 0  # lines a resumed run started after


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One chunk's outcome: its enriched posts (packed, see :func:`_pack`), its
    rejections, and the last line that gave a post (None when none did)."""

    packed: list[tuple[object, ...]]
    rejected: list[Rejected]
    last_line: int | None


# A ScoredPost crosses from a worker as a plain tuple: pickling the frozen slotted
# dataclasses costs ~3x more (measured 31 vs 10 µs/post to unpickle), and that
# cost falls on the writer, the one process that cannot be multiplied.
_FIELDS = tuple(f.name for f in fields(ScoredPost))
_SENTIMENT = _FIELDS.index("sentiment")


def _pack(post: ScoredPost) -> tuple[object, ...]:
    values = [getattr(post, name) for name in _FIELDS]
    score = post.sentiment
    if score is not None:
        values[_SENTIMENT] = (score.compound, score.pos, score.neu, score.neg)
    return tuple(values)


def _unpack(values: tuple[object, ...]) -> ScoredPost:
    score = values[_SENTIMENT]
    if score is not None:
        items = list(values)
        items[_SENTIMENT] = Sentiment(*score)  # type: ignore[misc]
        values = tuple(items)
    return ScoredPost(*values)  # type: ignore[arg-type]


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


def _process(parse: RecordParser, enricher: Enricher,
             records: list[tuple[int, Record]]) -> _Chunk:
    posts: list[Post] = []
    rejected: list[Rejected] = []
    last: int | None = None
    for number, raw in records:
        for item in parse(number, raw):
            if isinstance(item, Rejected):
                rejected.append(item)
            else:
                posts.append(item.post)
                last = item.line
    return _Chunk([_pack(p) for p in enricher.enrich_many(posts)] if posts else [], rejected,
                  last)


_WORKER: tuple[RecordParser, Enricher] | None = None


def _init_worker(parse: RecordParser, enricher: Enricher) -> None:
    global _WORKER
    _WORKER = (parse, enricher)
    # Ctrl-C is the main process's to handle: it stops the pool in order
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="import-parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    """A forked worker also holds the task queue's write end, so it would wait on it
    forever once the importer is killed (kill -9): leave when the parent is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _work(records: list[tuple[int, Record]]) -> _Chunk:
    assert _WORKER is not None, "worker not initialised"
    return _process(*_WORKER, records)


def _chunks(records: Iterable[tuple[int, Record]], size: int
            ) -> Iterator[list[tuple[int, Record]]]:
    chunk: list[tuple[int, Record]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _warm(enricher: Enricher) -> None:
    """Load the language model and the lexicon before forking: the workers share them."""
    enricher.enrich_many([Post(platform="warmup", key="0", created_at=datetime.now(UTC),
                               text="A warm, calm morning and a terrible night. #warm")])


def _in_order(parse: RecordParser, enricher: Enricher,
              chunks: Iterator[list[tuple[int, Record]]], workers: int) -> Iterator[_Chunk]:
    """Each chunk's outcome, in the order the chunks were read."""
    if workers <= 0:
        for chunk in chunks:
            yield _process(parse, enricher, chunk)
        return
    # fork shares the loaded models at no cost, but is only safe without other threads
    forking = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    if forking:
        _warm(enricher)
    context = multiprocessing.get_context("fork" if forking else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(parse, enricher))
    pending: deque[Future[_Chunk]] = deque()
    try:
        for chunk in chunks:
            pending.append(pool.submit(_work, chunk))
            if len(pending) >= _IN_FLIGHT * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        # a worker was killed (the OOM killer, kill -9): what is committed stays, in order
        raise InputError(parse.name, "an import worker process died (killed, or out of "
                         "memory?); run the import again: it resumes after the last stored "
                         "line, or use --workers 0") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _text_size(raw: Record) -> int:
    # a JSONL line as read, or a CSV record's fields plus their separators
    if isinstance(raw, str):
        return len(raw)
    if isinstance(raw, list):
        return sum(len(f) for f in raw) + len(raw)
    return 0


def _worker_count(workers: int | None, left: int) -> int:
    if workers is not None:
        return max(0, workers if workers > 1 else 0)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores if cores and cores > 1 and left >= PARALLEL_MIN_BYTES else 0


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
    workers: int | None = None,
    on_progress: Callable[[ImportProgress], None] | None = None,
    options: ReadOptions | None = None,
) -> ImportSummary:
    """Import one file; malformed lines are reported, counted and skipped.

    *workers*: processes that parse and enrich (None: one per core when at least
    :data:`PARALLEL_MIN_BYTES` are left to read; 0 or 1: all in this process).
    *options*: date format, time zone, key derivation and line-size limit
    (:class:`~monitor.sources.files.ReadOptions`).
    """
    enricher = enricher or Enricher.from_config(config, engine=engine)
    stream = f"{platform}:{path.resolve()}"
    size = path.stat().st_size
    identity = {"size": size, "head": _head_hash(path, size)}
    saved = load_cursor(engine, SOURCE, stream)
    start_line = 0
    done_bytes = 0
    if saved is not None:
        state = json.loads(saved.value)
        if _same_file_grown(path, state):
            start_line = int(state.get("line", 0))
            # roughly how much is read already (the size when the cursor was saved)
            done_bytes = int(state.get("size", 0)) if start_line else 0
    options = options or ReadOptions()
    parse = record_parser(path, platform, mapping, default_tags=default_tags, options=options)
    count = _worker_count(workers, size - done_bytes)
    summary = ImportSummary(file=str(path), skipped_lines=start_line, workers=count)
    if count:
        # no pooled connection may be inherited by a forked worker
        engine.dispose()
    # (last line, text size) of each chunk read, in order: what on_progress reports
    spans: deque[tuple[int, int]] = deque()
    position = [0]

    def measured(chunks: Iterator[list[tuple[int, Record]]]
                 ) -> Iterator[list[tuple[int, Record]]]:
        for records in chunks:
            position[0] += sum(_text_size(raw) for _, raw in records)
            spans.append((records[-1][0], position[0]))
            yield records

    chunks = measured(_chunks(read_records(path, start_line=start_line, max_line=options.max_line),
                               max(1, batch_size)))
    for chunk in _in_order(parse, enricher, chunks, count):
        last_line, at_bytes = spans.popleft()
        for item in chunk.rejected:
            summary.rejected += 1
            if len(summary.rejections) < 1000:
                summary.rejections.append(item)
            if on_reject is not None:
                on_reject(item)
        if chunk.last_line is not None:
            scored = [_unpack(values) for values in chunk.packed]
            summary.read += len(scored)
            cursor = Cursor(SOURCE, stream, json.dumps({**identity, "line": chunk.last_line}))
            result = write_batch(engine, scored, cursor=cursor)
            summary.stored += result.inserted
            summary.duplicates += result.duplicates
        if on_progress is not None:
            on_progress(ImportProgress(last_line, summary.read, summary.stored, at_bytes,
                                       start_line))
    log.info(
        "import %s: %d stored, %d duplicates, %d rejected",
        path.name,
        summary.stored,
        summary.duplicates,
        summary.rejected,
    )
    return summary
