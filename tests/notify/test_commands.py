"""``monitor outbox`` and ``monitor digest`` driven like a user would."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from monitor.cli import app
from monitor.notify.commands import register
from tests.notify.conftest import SmtpServer, add_outbox, free_port, payload, store_posts

register(app)
runner = CliRunner()


def _cfg(engine: Engine, tmp_path: Path, port: int) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database:\n  url: '{url}'\nhashtags: [metoo]\n"
        "notify:\n  email:\n    enabled: true\n"
        f"    smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 3s}}\n"
        "    recipients: [desk@example.org]\n"
    )
    return path


async def test_outbox_lists_what_waits_and_why(engine: Engine, tmp_path: Path) -> None:
    from monitor.config import load_config
    from monitor.notify.outbox import Dispatcher
    from monitor.notify.registry import build_notifiers

    cfg = _cfg(engine, tmp_path, free_port())  # nothing listens there: delivery fails
    config = load_config(cfg, env={})
    now = datetime.now(UTC)
    add_outbox(engine, payload(since=now - timedelta(minutes=30)),
               created_at=now - timedelta(minutes=5))
    await Dispatcher(engine, config, build_notifiers(config, engine)).run_once(now)

    result = runner.invoke(app, ["outbox", "-c", str(cfg), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rows = {r["notifier"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"email:desk@example.org"}  # the log notifier already delivered
    row = rows["email:desk@example.org"]
    assert row["rule"] == "metoo-spike" and row["tag"] == "metoo" and row["attempts"] == 1
    assert row["next_attempt"].startswith("in ")
    assert "cannot connect" in row["last_error"]


@pytest.mark.parametrize("send", [False, True])
def test_digest_preview_and_send(engine: Engine, tmp_path: Path, smtp_server: SmtpServer,
                                 send: bool) -> None:
    store_posts(engine, now=datetime.now(UTC), days=2)
    cfg = _cfg(engine, tmp_path, smtp_server.port)
    result = runner.invoke(app, ["digest", "-c", str(cfg), *(["--send"] if send else [])])
    assert result.exit_code == 0, result.stderr
    if send:
        assert "digest sent to desk@example.org" in result.stdout
        [msg] = smtp_server.messages
        # the 24 h window starts inside the oldest bucket, so a few posts may fall outside
        assert re.fullmatch(r"\[DIGEST\] \d{4}-\d\d-\d\d: #metoo 12\d", msg["Subject"])
    else:
        assert re.search(r"Posts: 12\d \(same day last week: 0\)", result.stdout)
        assert smtp_server.messages == []
