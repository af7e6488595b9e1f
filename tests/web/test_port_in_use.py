"""A dashboard port already taken: one line naming it, exit 2, and no false
"dashboard on …" line (uvicorn's own answer was five tracebacks and exit 3)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app
from monitor.commands import register_all
from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.store.db import make_engine, migrate
from monitor.web.server import serve

register_all()


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_monitor_web_on_a_taken_port_is_one_line(
    taken: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an earlier command's configure_logging may have left a handler on a closed stream
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    port = taken.getsockname()[1]
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    migrate(engine)
    engine.dispose()
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: 'sqlite:///{tmp_path}/m.db'\nweb:\n  port: {port}\n")
    result = CliRunner().invoke(app, ["web", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stdout == ""  # nothing claimed the dashboard was up
    assert result.stderr.strip().splitlines() == [
        f"error: web.port: 127.0.0.1:{port} is already in use (another monitor or "
        "dashboard?); stop it or choose another port with --port or web.port"]


async def test_serve_raises_before_announcing(taken: socket.socket, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    said: list[str] = []
    config = parse_config({"web": {"port": taken.getsockname()[1]}}, env={})
    with pytest.raises(ConfigError, match="is already in use"):
        await serve(engine, config, announce=said.append)
    assert said == []
    engine.dispose()
