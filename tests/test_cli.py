"""The `monitor` command as a person runs it: a real subprocess, real files, real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "data" / "sample_metoo.jsonl"


def monitor(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_config(tmp_path: Path, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database:\n  url: '{db_url}'\nprivacy:\n  hash_secret: test-secret\n{extra}",
        encoding="utf-8",
    )
    return path


def test_check_config_bad_value_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "sources:\n  - type: mastodon\n    instances: [https://a.example]\n    interval: fast\n",
        encoding="utf-8",
    )
    result = monitor("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {path}:4: sources[0].interval: expected a duration like '5m', got 'fast'"
    ]
    assert "Traceback" not in result.stderr


def test_check_config_ok_and_missing_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "sqlite:///x.db")
    ok = monitor("check-config", str(path), cwd=tmp_path)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: ")
    missing = monitor("check-config", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "nope.yaml: file not found" in missing.stderr


def test_init_db_and_import_summary(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url)
    assert monitor("init-db", "--config", str(config), cwd=tmp_path).returncode == 0
    first = monitor(
        "import", str(SAMPLE), "--platform", "twitter", "--config", str(config), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    assert f"{SAMPLE}: 240 stored, 0 duplicates, 2 rejected" in " ".join(first.stdout.split())
    bad_lines = [line for line in first.stderr.splitlines() if line.strip()]
    assert bad_lines[0].startswith(f"{SAMPLE}:241: created_at:")
    assert bad_lines[1].startswith(f"{SAMPLE}:242: invalid JSON")
    again = monitor(
        "import", str(SAMPLE), "--platform", "twitter", "--config", str(config), cwd=tmp_path
    )
    assert "0 stored" in again.stdout and "resumed after line 240" in " ".join(again.stdout.split())


def test_import_user_mistakes_are_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/m.db")
    missing = monitor(
        "import", "nope.jsonl", "--platform", "x", "--config", str(config), cwd=tmp_path
    )
    assert missing.returncode == 2 and "nope.jsonl: file not found" in missing.stderr
    bad_map = monitor(
        "import",
        str(SAMPLE),
        "--platform",
        "x",
        "--map",
        "handle=user",
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert bad_map.returncode == 2
    assert "--map: unknown field 'handle'" in bad_map.stderr
    assert "Traceback" not in bad_map.stderr + missing.stderr


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none")
    result = monitor("init-db", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot migrate" in lines[0] and "Traceback" not in result.stderr


def test_import_then_trends_matches_the_file(db_url: str, tmp_path: Path) -> None:
    """`monitor trends metoo --since 3650d --step 1d` = counts and mean VADER from the file."""
    from tests.test_importer import expected_daily

    config = write_config(tmp_path, db_url)
    imported = monitor(
        "import", str(SAMPLE), "--platform", "twitter", "--config", str(config), cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    result = monitor(
        "trends",
        "metoo",
        "notallmen",
        "--since",
        "3650d",
        "--step",
        "1d",
        "--format",
        "json",
        "--config",
        str(config),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    for tag in ("metoo", "notallmen"):
        got = {
            r["bucket"][:10]: (r["posts"], r["mean_compound"])
            for r in rows
            if r["tag"] == tag and r["posts"]
        }
        want = expected_daily(tag)
        assert got.keys() == want.keys()
        for day, (count, mean) in want.items():
            assert got[day][0] == count
            assert abs(got[day][1] - mean) < 1e-6
    table = monitor(
        "trends", "metoo", "--since", "3650d", "--step", "1d", "--config", str(config), cwd=tmp_path
    )
    assert table.returncode == 0
    total = sum(count for count, _ in expected_daily("metoo").values())
    assert f"│ metoo │ {total} │" in " ".join(table.stdout.split())  # the summary table


# ------------------------------------------------------------- reads never migrate

READ_COMMANDS = (
    ["trends", "metoo"], ["top"], ["cotags", "metoo"], ["relate", "metoo", "notallmen"],
    ["export", "series", "--out", "-"], ["status"], ["alerts"], ["silence", "list"],
    ["outbox"],
)


def _revisions(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    from monitor.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def _head() -> str:
    from alembic.script import ScriptDirectory

    from monitor.store.db import MIGRATIONS_DIR

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def _invoke(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from monitor.cli import app
    from monitor.commands import register_all

    register_all()
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stderr


def test_read_commands_on_an_old_schema_say_run_init_db_and_change_nothing(
    db_url: str, tmp_path: Path
) -> None:
    from monitor.store.db import make_engine, migrate, redact_url

    engine = make_engine(db_url)
    migrate(engine, "0002_views")
    engine.dispose()
    config = write_config(tmp_path, db_url)
    want = (f"error: the database at {redact_url(db_url)} is at revision 0002_views, "
            f"this monitor needs {_head()}: run 'monitor init-db'")
    for command in READ_COMMANDS:
        code, stderr = _invoke(*command, "--config", str(config))
        assert (code, stderr.strip().splitlines()) == (1, [want]), command
    assert _revisions(db_url) == {"0002_views"}  # no read moved the schema
    assert monitor("init-db", "--config", str(config), cwd=tmp_path).returncode == 0
    assert _revisions(db_url) == {_head()}
    code, stderr = _invoke("top", "--config", str(config))
    assert code == 0, stderr


def test_a_read_on_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "nothing-here.db"
    config = write_config(tmp_path, f"sqlite:///{db}")
    result = monitor("trends", "metoo", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the database at sqlite:///{db} has no schema yet, this monitor needs "
        f"{_head()}: run 'monitor init-db'"]
    assert not db.exists()


def test_a_database_from_a_newer_monitor_is_named_as_such(tmp_path: Path) -> None:
    from sqlalchemy import text

    from monitor.store.db import make_engine, migrate

    url = f"sqlite:///{tmp_path}/m.db"
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    engine.dispose()
    code, stderr = _invoke("alerts", "--config", str(write_config(tmp_path, url)))
    assert code == 1
    assert "is at revision 0099_future, which this monitor does not know" in stderr


# every command, the ones of later stages included, goes through the one error handler
COMMAND_ARGS: dict[str, list[str]] = {
    "check-config": [], "init-db": [], "import": ["posts.jsonl", "--platform", "x"],
    "run": [], "status": [], "trends": ["metoo"], "top": [], "cotags": ["metoo"],
    "relate": ["metoo", "notallmen"], "export": ["posts", "--out", "-"], "web": [],
    "alerts": [], "evaluate": [], "backtest": [], "outbox": [], "digest": [],
    "silence add": ["tag=metoo"], "silence list": [], "silence expire": ["1"],
    "forget": ["--author", "alice", "--platform", "mastodon"], "rotate-secret": [],
    "access": ["--author", "alice", "--platform", "mastodon"],
    "tags list": [], "tags add": ["ididit"], "tags remove": ["metoo"],
}


def test_every_command_reports_a_bad_config_in_one_line_with_exit_2(tmp_path: Path) -> None:
    from typing import Any

    import typer
    from typer.testing import CliRunner

    from monitor.cli import app
    from monitor.commands import register_all

    register_all()

    def names(group: Any, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for name, command in group.commands.items():
            if hasattr(command, "commands"):  # a group such as `silence`
                found |= names(command, f"{prefix}{name} ")
            else:
                found.add(prefix + name)
        return found

    assert names(typer.main.get_command(app)) == set(COMMAND_ARGS)
    bad = tmp_path / "bad.yaml"
    bad.write_text("database:\n  echo: loud\n", encoding="utf-8")
    for command, args in COMMAND_ARGS.items():
        result = CliRunner().invoke(app, [*command.split(), *args, "--config", str(bad)])
        lines = result.stderr.strip().splitlines()
        assert (result.exit_code, len(lines)) == (2, 1), (command, result.stderr)
        assert lines[0].startswith(f"error: {bad}:2: database.echo:"), (command, lines)
