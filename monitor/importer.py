"""File import wiring: sources.files → enrich → store, in batches, resumable.

Resuming: the number of the last stored line is saved as the cursor of the
stream ``<platform>:<absolute path>`` in the same transaction as the batch,
together with the file's size and the hash of its first 64 KiB; a rerun on the
same file, or on that file with lines appended, starts after that line, and
the unique (platform, key) drops anything stored twice, so importing the same
file twice adds nothing.

Both cores: this process reads the file's raw records in order and is the only
writer; parsing, enrichment and turning the posts into the store's ready rows
(:func:`monitor.store.write.prepare_batch`) run in worker processes, one per
core, on chunks of up to ``batch_size`` records, so that this process only
executes them (:func:`monitor.store.write.write_prepared`, on one connection
for the whole import). At most two chunks per worker are in flight, so memory
stays flat whatever the file's size, and the chunks are written strictly in the
order they were read, each in one transaction with the cursor at its last
stored line: the cursor never passes a line whose posts are not committed, and
a ``kill -9`` at any moment resumes with nothing lost or doubled. Below
:data:`PARALLEL_MIN_BYTES` left to read, starting the workers costs more than
they save and the import stays in this process.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from sqlalchemy import Engine

from monitor.config import Config
from monitor.enrich.pipeline import Enricher
from monitor.errors import InputError
from monitor.models import Cursor, Post
from monitor.sources.files import (
    ReadOptions,
    Record,
    RecordParser,
    Rejected,
    read_records,
    record_parser,
)
from monitor.store.plan import Prepared
from monitor.store.pseudonyms import count_forgotten_drops
from monitor.store.write import (
    import_connection,
    load_cursor,
    prepare_batch,
    write_prepared,
)

__all__ = ["IMPORT_BATCH", "PARALLEL_MIN_BYTES", "ImportProgress", "ImportSummary", "import_file"]

log = logging.getLogger(__name__)
SOURCE = "file"
# Measured (SQLite, benchmarks/ingest.py's posts, ~630 bytes a line): 3,000 lines (1.9 MB)
# import at 7,632 posts/s in one process and 6,595 with two workers; 6,000 lines (3.8 MB)
# at 7,350 and 8,513. Starting the pool and filling it is repaid from about 3 MiB.
PARALLEL_MIN_BYTES = 3 << 20
# records a chunk (and a transaction; a progress line each). 2,000 aggregate a few more
# rollup increments into one row (~5 % less CPU a post, within the noise of a shared VM);
# with workers the first and last chunks are smaller (see _chunks)
IMPORT_BATCH = 1000
# below this many full chunks left to read, the chunks shrink (see _chunks)
_TAIL_CHUNKS = 2
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
    """One chunk's outcome: its enriched posts as the store's ready rows (None when
    the chunk gave no post), how many posts, its rejections, and the last line that
    gave a post (None when none did).

    The rows, not the posts, cross from a worker: they are what the writer binds,
    so the one process that cannot be multiplied neither unpickles ~15 objects per
    post nor builds the rows itself.
    """

    prepared: Prepared | None
    posts: int
    rejected: list[Rejected]
    last_line: int | None
    # posts left out for forgotten authors, per (platform, pseudonym) (monitor status)
    dropped: Counter[tuple[str, str]] | None = None


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


def _process(parse: RecordParser, enricher: Enricher, dialect: str,
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
    if not posts:
        return _Chunk(None, 0, rejected, last)
    scored = enricher.enrich_many(posts)
    return _Chunk(prepare_batch(scored, dialect), len(scored), rejected, last,
                  enricher.take_drops() or None)


_WORKER: tuple[RecordParser, Enricher, str] | None = None


def _init_worker(parse: RecordParser, enricher: Enricher, dialect: str) -> None:
    global _WORKER
    _WORKER = (parse, enricher, dialect)
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


def _chunks(records: Iterable[tuple[int, Record]], size: int, left: int = 0
            ) -> Iterator[tuple[list[tuple[int, Record]], int]]:
    """Chunks of up to *size* records, each with the size of the text read up to its end.

    *left*: about how much text there is to read (0: unknown). The first chunk,
    and those of the last part, are a quarter of *size*: the writer starts on
    the first one while the workers enrich the next, and the last one is written
    while the workers have nothing left to do, so a small one keeps that tail short.
    """
    chunk: list[tuple[int, Record]] = []
    read = 0
    quarter = max(1, size // 4)
    target = quarter if left else size
    for count, record in enumerate(records, 1):
        chunk.append(record)
        read += _text_size(record[1])
        if len(chunk) >= target:
            yield chunk, read
            chunk = []
            # records left, at the average size so far: (left - read) / (read / count)
            if left:
                target = quarter if (left - read) * count < _TAIL_CHUNKS * size * read else size
    if chunk:
        yield chunk, read


def _warm(enricher: Enricher) -> None:
    """Load the language model and the lexicon before forking: the workers share them."""
    enricher.enrich_many([Post(platform="warmup", key="0", created_at=datetime.now(UTC),
                               text="A warm, calm morning and a terrible night. #warm")])


def _in_order(parse: RecordParser, enricher: Enricher, dialect: str,
              chunks: Iterator[list[tuple[int, Record]]], workers: int) -> Iterator[_Chunk]:
    """Each chunk's outcome, in the order the chunks were read."""
    if workers <= 0:
        for chunk in chunks:
            yield _process(parse, enricher, dialect, chunk)
        return
    # fork shares the loaded models at no cost, but is only safe without other threads
    forking = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    if forking:
        _warm(enricher)
    context = multiprocessing.get_context("fork" if forking else "spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(parse, enricher, dialect))
    pending: deque[Future[_Chunk]] = deque()
    if forking:
        # Everything allocated so far (models, lexicon, the caller's objects) is left out
        # of garbage collection while the pool lives (the workers fork at the first
        # submit): otherwise each worker's collections walk, and so copy page by page,
        # the whole heap it shares with this process
        gc.freeze()
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
        if forking:
            gc.unfreeze()


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
    batch_size: int = IMPORT_BATCH,
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

    def measured(chunks: Iterator[tuple[list[tuple[int, Record]], int]]
                 ) -> Iterator[list[tuple[int, Record]]]:
        for records, read in chunks:
            spans.append((records[-1][0], read))
            yield records

    chunks = measured(_chunks(read_records(path, start_line=start_line, max_line=options.max_line),
                              # one process: no idle worker to keep the tail short for
                              max(1, batch_size), (size - done_bytes) if count else 0))
    outcomes = _in_order(parse, enricher, engine.dialect.name, chunks, count)
    # the first outcome starts the workers: only then this process opens its
    # connection, which a forked worker must not inherit
    first = next(outcomes, None)
    with import_connection(engine) as conn:
        for chunk in chain((first,) if first is not None else (), outcomes):
            last_line, at_bytes = spans.popleft()
            for item in chunk.rejected:
                summary.rejected += 1
                if len(summary.rejections) < 1000:
                    summary.rejections.append(item)
                if on_reject is not None:
                    on_reject(item)
            if chunk.last_line is not None:
                summary.read += chunk.posts
                cursor = Cursor(SOURCE, stream, json.dumps({**identity, "line": chunk.last_line}))
                # (prepared even when enrichment left no post: the cursor moves on)
                assert chunk.prepared is not None
                result = write_prepared(conn, chunk.prepared, cursor=cursor)
                summary.stored += result.inserted
                summary.duplicates += result.duplicates
                if chunk.dropped:
                    count_forgotten_drops(conn, chunk.dropped)
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
