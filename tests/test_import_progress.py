"""`monitor import` progress: a Rich bar on a terminal, plain lines otherwise, and Ctrl-C
saying where it stopped (then a rerun resumes there)."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from sqlalchemy import func, select

from monitor.importer import ImportProgress
from monitor.progress import ImportProgressView
from monitor.store.db import make_engine
from monitor.store.schema import posts

ROOT = Path(__file__).resolve().parent.parent
MONITOR = [sys.executable, "-c", "from monitor.commands import main; main()"]
PLAIN = re.compile(r"^import big\.jsonl: line (\d+), (\d+) stored, [\d.]+ [kMG]?B/s, "
                   r"(\d+)%, ETA \S+$")
STOPPED = re.compile(r"^interrupted after line (\d+) \((\d+) stored\); run again to resume$")


def write_file(path: Path, lines: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            out.write(json.dumps({
                "id": str(10_000_000 + i), "created_at": f"2017-10-{15 + i % 10}T12:00:00Z",
                "text": f"Post number {i} says it plainly. #MeToo", "lang": "en",
                "author": f"user{i % 50}", "tags": ["MeToo"]}) + "\n")
    return path


def setup(tmp_path: Path, lines: int) -> tuple[Path, Path, str]:
    db = f"sqlite:///{tmp_path}/m.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: '{db}'\nprivacy:\n  hash_secret: '{'s' * 32}'\n",
                      encoding="utf-8")
    return config, write_file(tmp_path / "big.jsonl", lines), db


def stored(db: str) -> int:
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(posts)).scalar_one())
    finally:
        engine.dispose()


def test_plain_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    config, data, _db = setup(tmp_path, 3000)
    done = subprocess.run([*MONITOR, "import", str(data), "-p", "twitter", "--workers", "0",
                           "--progress-every", "0", "-c", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [m for m in map(PLAIN.match, done.stderr.splitlines()) if m]
    assert len(lines) == 3, done.stderr  # one per chunk of 1000 lines
    assert [int(m.group(1)) for m in lines] == [1000, 2000, 3000]
    assert [int(m.group(2)) for m in lines] == [1000, 2000, 3000]
    assert int(lines[-1].group(3)) == 100
    assert "\x1b[" not in done.stderr  # no terminal escapes in a log
    assert "3000 stored" in " ".join(done.stdout.split())


def test_rich_bar_on_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    view = ImportProgressView(Path("big.jsonl"), console, total=1_000_000)
    view.start()
    view.update(ImportProgress(line=5000, read=5000, stored=4990, bytes=250_000))
    view._bar.refresh()  # type: ignore[union-attr]
    view.stop()
    out = buf.getvalue()
    assert "import big.jsonl" in out and "line 5,000" in out and "4,990 stored" in out
    assert "25%" in out or "━" in out


def test_ctrl_c_says_where_it_stopped_and_a_rerun_resumes(tmp_path: Path) -> None:
    total = 40_000
    config, data, db = setup(tmp_path, total)
    proc = subprocess.Popen([*MONITOR, "import", str(data), "-p", "twitter", "--workers", "0",
                             "--progress-every", "0", "-c", str(config)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the first chunk is committed
    assert PLAIN.match(first.strip()), first
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    match = STOPPED.match(last)
    assert match, err
    assert "Traceback" not in err
    line, kept = int(match.group(1)), int(match.group(2))
    assert 1000 <= line < total
    # what it said is what is committed (the chunk in hand, if any, was rolled back)
    assert stored(db) == kept
    time.sleep(0.1)
    again = subprocess.run([*MONITOR, "import", str(data), "-p", "twitter", "--workers", "0",
                            "-c", str(config)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"(resumed after line {line})" in " ".join(again.stdout.split())
    assert stored(db) == total
