"""The import on both cores: workers parse and enrich, one writer commits in order.

A real ``monitor import --workers 2`` process is killed with SIGKILL twice
mid-way and run again; afterwards the posts are exactly the file's (none lost,
none twice), the 5-minute tag buckets count exactly the file's posts, the
worker processes of the killed runs are gone, and the parallel result equals
the single-process one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, func, select

from monitor.config import Config, DatabaseSettings, PrivacySettings
from monitor.enrich.pipeline import Enricher
from monitor.enrich.post_keys import is_post_pseudonym
from monitor.errors import InputError
from monitor.importer import import_file
from monitor.store.buckets import bucket_start
from monitor.store.db import make_engine, migrate
from monitor.store.schema import posts, tag_buckets
from tests.test_end_to_end import MONITOR, ROOT

TAGS = ["metoo", "timesup", "howiwillchange", "notallmen", "ididit"]
WORDS = ["brave", "terrible", "hopeful", "awful", "calm", "angry", "grateful", "story", "today"]


def write_file(path: Path, lines: int, seed: int = 11) -> dict[str, tuple[datetime, set[str]]]:
    """A native JSONL file; returns key -> (created_at, tags) of the lines that must be
    stored (every 500th line is malformed and must be rejected)."""
    rng = random.Random(seed)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    expected: dict[str, tuple[datetime, set[str]]] = {}
    with path.open("w", encoding="utf-8") as handle:
        for i in range(lines):
            if i % 500 == 499:
                handle.write('{"key": "broken", "created_at": \n')
                continue
            tags = set(rng.sample(TAGS, rng.randint(1, 3)))
            created = start + timedelta(seconds=rng.randrange(2 * 86400))
            text = " ".join(rng.choices(WORDS, k=8)) + " " + " ".join(f"#{t}" for t in tags)
            key = f"k{i}"
            handle.write(json.dumps({"key": key, "created_at": created.isoformat(),
                                     "text": text, "author": f"user{i % 97}",
                                     "lang": "en", "tags": sorted(tags)}) + "\n")
            expected[key] = (created, tags)
    return expected


def stored_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(posts)).scalar_one())


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _is_worker(pid: int) -> bool:
    try:  # not the resource tracker that spawn starts too
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def run_import(config: Path, data: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*MONITOR, "import", str(data), "--platform", "mastodon",
                             "--workers", "2", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_when(proc: subprocess.Popen[bytes], engine: Engine, at_least: int) -> None:
    deadline = time.monotonic() + 120
    while stored_count(engine) < at_least:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the import made no progress"
        time.sleep(0.05)
    workers = children_of(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert workers, "no worker processes: the import did not run in parallel"
    deadline = time.monotonic() + 15
    while any(alive(w) for w in workers):  # orphaned workers leave by themselves
        assert time.monotonic() < deadline, f"workers {workers} outlived the importer"
        time.sleep(0.1)


def check_equal_to_file(engine: Engine, expected: dict[str, tuple[datetime, set[str]]]
                        ) -> None:
    with engine.connect() as conn:
        keys = [k for (k,) in conn.execute(select(posts.c.key))]
        buckets = {(r.tag, r.bucket_start): r.posts for r in conn.execute(
            select(tag_buckets.c.tag, tag_buckets.c.bucket_start,
                   func.sum(tag_buckets.c.posts).label("posts"))
            .group_by(tag_buckets.c.tag, tag_buckets.c.bucket_start))}
    assert len(keys) == len(set(keys)), "a post was stored twice"
    if all(is_post_pseudonym(k) for k in keys):  # authors: hash keys them too
        assert len(keys) == len(expected)  # and the buckets below say which posts
    else:
        assert set(keys) == set(expected)
    want: Counter[tuple[str, datetime]] = Counter()
    for created, tags in expected.values():
        want.update((tag, bucket_start(created)) for tag in tags)
    got = {(tag, start.astimezone(UTC)): n for (tag, start), n in buckets.items() if n}
    assert got == dict(want)


@pytest.mark.timeout(300)
def test_kill_9_mid_import_resumes_without_loss_or_duplicates(db_url: str,
                                                              tmp_path: Path) -> None:
    data = tmp_path / "posts.jsonl"
    expected = write_file(data, 12_000)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": db_url},
                                      "privacy": {"hash_secret": "import-" + "x" * 30}}))
    engine = make_engine(db_url)
    migrate(engine)
    try:
        kill_when(run_import(config, data), engine, 2_000)
        first = stored_count(engine)
        kill_when(run_import(config, data), engine, first + 3_000)
        final = run_import(config, data)
        out, err = final.communicate(timeout=240)
        assert final.returncode == 0, err.decode()[-2000:]
        summary = out.decode()
        assert "resumed after line" in summary, summary
        assert err.decode().count("invalid JSON") <= 24  # only lines after the cursor again
        check_equal_to_file(engine, expected)
    finally:
        engine.dispose()


def test_parallel_import_equals_single_process(tmp_path: Path) -> None:
    data = tmp_path / "posts.jsonl"
    expected = write_file(data, 3_000, seed=5)
    rows = []
    for workers in (0, 2):
        engine = make_engine(f"sqlite:///{tmp_path}/w{workers}.db")
        migrate(engine)
        config = Config(database=DatabaseSettings(url=str(engine.url)),
                        privacy=PrivacySettings(hash_secret="equal-" + "y" * 30,
                                                store_text=True))
        rejected: list[str] = []
        summary = import_file(engine, config, data, "mastodon", batch_size=200,
                              workers=workers, enricher=Enricher.from_config(config),
                              on_reject=lambda r, out=rejected: out.append(str(r)))  # type: ignore[misc]
        assert summary.workers == workers
        assert (summary.stored, summary.rejected) == (len(expected), 6)
        assert rejected == [f"{data}:{n}: invalid JSON (Expecting value at column 1)"
                            for n in range(500, 3001, 500)]  # in file order
        check_equal_to_file(engine, expected)
        with engine.connect() as conn:
            rows.append(sorted(tuple(r) for r in conn.execute(
                select(posts.c.key, posts.c.created_at, posts.c.author, posts.c.text,
                       posts.c.lang, posts.c.compound))))
        engine.dispose()
    assert rows[0] == rows[1]


def test_small_files_stay_in_one_process(tmp_path: Path) -> None:
    data = tmp_path / "posts.jsonl"
    write_file(data, 200)
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    migrate(engine)
    config = Config(database=DatabaseSettings(url=str(engine.url)),
                    privacy=PrivacySettings(hash_secret="small-" + "z" * 30))
    summary = import_file(engine, config, data, "mastodon")
    assert (summary.workers, summary.stored) == (0, 200)
    engine.dispose()


def test_a_killed_worker_stops_the_import_in_one_line_and_a_rerun_completes(
        tmp_path: Path) -> None:
    data = tmp_path / "posts.jsonl"
    expected = write_file(data, 8_000, seed=3)
    engine = make_engine(f"sqlite:///{tmp_path}/k.db")
    migrate(engine)
    config = Config(database=DatabaseSettings(url=str(engine.url)),
                    privacy=PrivacySettings(hash_secret="killed-" + "k" * 30))
    me = os.getpid()
    before = set(children_of(me))

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = [c for c in children_of(me) if c not in before and _is_worker(c)]
            if workers and stored_count(engine) > 0:
                os.kill(workers[0], signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker)
    killer.start()  # a second thread: the pool starts its workers with spawn, not fork
    with pytest.raises(InputError, match="worker process died"):
        import_file(engine, config, data, "mastodon", workers=2, batch_size=200)
    killer.join()
    summary = import_file(engine, config, data, "mastodon", workers=0)
    assert summary.skipped_lines > 0
    check_equal_to_file(engine, expected)
    engine.dispose()
