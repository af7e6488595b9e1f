"""`monitor status`: stream health as a table, CSV and JSON, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from monitor.cli import app
from monitor.models import Cursor, ScoredPost, StreamKey
from monitor.status import read_status, register
from monitor.store.write import record_failure, write_batch

register(app)
runner = CliRunner()

MASTO = StreamKey("mastodon", "mastodon.example", "metoo")
JET = StreamKey("jetstream", "jetstream1.us-east.bsky.network", "*")


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: '{url}'\n")
    return path


def post(key: str, created: datetime) -> ScoredPost:
    return ScoredPost(platform="mastodon", key=key, created_at=created, url=None, author=None,
                      text=None, lang="en", tags=("metoo",), is_repost=False, sensitive=False,
                      sentiment=None)


def seed(engine: Engine, now: datetime) -> None:
    write_batch(engine, [post("k1", now - timedelta(minutes=3)),
                         post("k2", now - timedelta(minutes=2))],
                cursor=Cursor("mastodon", MASTO.name, "2"), stream=MASTO, rejected=1,
                now=now - timedelta(seconds=90))
    record_failure(engine, JET, "jetstream jetstream1.us-east.bsky.network: cannot connect "
                   "(name resolution failed) — is this machine online?",
                   now=now - timedelta(seconds=30))
    record_failure(engine, JET, "jetstream jetstream1.us-east.bsky.network: cannot connect "
                   "(name resolution failed) — is this machine online?",
                   now=now - timedelta(seconds=10))


def test_status_json_has_exact_values(engine: Engine, cfg: Path) -> None:
    now = datetime.now(UTC)
    seed(engine, now)
    result = runner.invoke(app, ["status", "--format", "json", "-c", str(cfg)])
    assert result.exit_code == 0, result.stderr
    rows = {r["source"]: r for r in json.loads(result.stdout)}
    masto, jet = rows["mastodon"], rows["jetstream"]
    assert masto["stream"] == "mastodon.example#metoo"
    assert masto["posts"] == 2 and masto["rejected"] == 1 and masto["fetch_errors"] == 0
    assert masto["last_error"] is None and masto["last_error_at"] is None
    assert datetime.fromisoformat(masto["last_success"]) == pytest.approx(
        now - timedelta(seconds=90), abs=timedelta(seconds=1))
    # lag: how far the newest post is behind the moment it was collected
    assert masto["lag"] == pytest.approx(30.0, abs=1)
    assert jet["last_success"] is None and jet["fetch_errors"] == 2
    assert "name resolution failed" in jet["last_error"]


def test_status_table_shows_ages_and_the_failing_stream(engine: Engine, cfg: Path) -> None:
    seed(engine, datetime.now(UTC))
    result = runner.invoke(app, ["status", "-c", str(cfg)])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "stream health: 2 streams, 1 failing"
    rows = {line.split()[0]: i for i, line in enumerate(lines) if line[:1].isalpha()}
    mastodon, jetstream = lines[rows["mastodon"]], lines[rows["jetstream"]]
    assert mastodon.split()[2:6] == ["1m", "2", "1", "0"]  # last success 90 s ago
    assert jetstream.split()[2:5] == ["never", "0", "0"]
    # the error on its own line under its stream, without repeating the stream's name
    assert lines[rows["jetstream"] + 1].startswith("    error 10s ago: jetstream jetstream1")
    assert "name resolution failed" in " ".join(lines[rows["jetstream"] + 1:])


def test_status_is_readable_at_80_columns(engine: Engine, cfg: Path) -> None:
    """The real command in a terminal 80 wide: no line longer, every error on its own line."""
    import os
    import subprocess
    import sys

    now = datetime.now(UTC)
    seed(engine, now)
    long = StreamKey("bluesky-search", "public.api.bsky.app", "howiwillchange")
    record_failure(engine, long, "public.api.bsky.app #howiwillchange: cannot connect (name "
                   "resolution failed; is this machine online?) after 5 attempts", now=now)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    result = subprocess.run([sys.executable, "-m", "monitor", "status", "-c", str(cfg)],
                            env={**env, "COLUMNS": "80"}, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    stream = next(i for i, line in enumerate(lines) if line.startswith("bluesky-search"))
    # too long for its column: the whole name on its line, the figures on the next
    assert lines[stream].split() == ["bluesky-search", "public.api.bsky.app#howiwillchange"]
    assert lines[stream + 1].split() == ["never", "0", "0", "1", "–"]
    assert lines[stream + 2].startswith("    error ") and "cannot connect" in lines[stream + 2]
    assert lines[stream + 3].startswith("      ")  # the rest of the error, indented


def test_status_csv_and_empty_database(engine: Engine, cfg: Path) -> None:
    result = runner.invoke(app, ["status", "-c", str(cfg)])
    assert result.exit_code == 0
    assert "no stream has run yet" in result.stderr
    seed(engine, datetime.now(UTC))
    result = runner.invoke(app, ["status", "--format", "csv", "-c", str(cfg)])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["source"] for r in rows] == ["jetstream", "mastodon"]
    assert rows[1]["posts"] == "2"


def test_read_status_marks_failing_streams(engine: Engine) -> None:
    now = datetime.now(UTC)
    seed(engine, now)
    by_source = {s.source: s for s in read_status(engine)}
    assert by_source["jetstream"].failing and not by_source["mastodon"].failing
    # a success after the error clears "failing" but keeps the last error for the record
    write_batch(engine, [], stream=JET, now=now)
    again = {s.source: s for s in read_status(engine)}["jetstream"]
    assert not again.failing and again.last_error is not None


def test_status_without_schema_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: 'sqlite:///{tmp_path}/empty.db'\n")
    result = runner.invoke(app, ["status", "-c", str(path)])
    assert result.exit_code == 1
    assert "monitor init-db" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_status_shows_what_is_kept_and_the_retention_run(engine: Engine, tmp_path: Path) -> None:
    from monitor.store.retention import RetentionAges, run_retention

    now = datetime.now(UTC)
    seed(engine, now)
    write_batch(engine, [post("old", now - timedelta(days=10))], deleted=[("mastodon", "k1")])
    run_retention(engine, RetentionAges(posts=timedelta(days=7)), now)
    url = engine.url.render_as_string(hide_password=False)
    path = tmp_path / "kept.yaml"
    path.write_text(f"database:\n  url: '{url}'\nprivacy:\n  retention:\n    posts: 7d\n")
    result = runner.invoke(app, ["status", "--kept", "--format", "json", "-c", str(path)])
    assert result.exit_code == 0, result.stderr
    rows = {r["kind"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"posts", "text", "authors", "deletions", "buckets"}
    # "old" went by age, "k1" by its deletion: "k2" is the oldest post left
    assert datetime.fromisoformat(rows["posts"]["oldest"]) == pytest.approx(
        now - timedelta(minutes=2), abs=timedelta(seconds=1))
    assert rows["posts"]["kept_for"] == "1w" and rows["posts"]["changed"] == 1
    assert datetime.fromisoformat(rows["posts"]["last_run"]) == pytest.approx(
        now, abs=timedelta(seconds=1))
    assert rows["text"]["oldest"] is None and rows["text"]["kept_for"].startswith("not stored")
    assert rows["deletions"]["oldest"] is not None
    assert datetime.fromisoformat(rows["buckets"]["oldest"]) <= now - timedelta(days=10)
    table = runner.invoke(app, ["status", "-c", str(path)], env={"COLUMNS": "220"})
    assert "what is kept" in table.stdout and "stream health" in table.stdout
