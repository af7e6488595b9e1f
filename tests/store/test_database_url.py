"""A database URL with a bad port is one line naming the key, from every command that
reads the config (issue 11: `notaport` gave a traceback and passed check-config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("command", "port"), [
    (["check-config"], "notaport"), (["check-config"], "99999"),
    (["trends", "metoo"], "notaport"), (["init-db"], "-1"),
])
def test_a_bad_port_is_one_line_and_exit_2(tmp_path: Path, command: list[str], port: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: postgresql://u@127.0.0.1:{port}/db\n", "utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "monitor", *command, "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: {config}:2: database.url: expected a port number")
    assert not (tmp_path / "data").exists()  # nothing was created on the way
