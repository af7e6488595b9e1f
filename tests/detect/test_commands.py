"""`monitor alerts`, `monitor evaluate` and `monitor silence` through the real CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from monitor.cli import app
from monitor.commands import register_all
from monitor.store.db import make_engine, migrate

from .synth import BUCKET, START, seed_buckets

runner = CliRunner()


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    register_all()
    db = tmp_path / "m.db"
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database:\n  url: sqlite:///{db}\nhashtags: [metoo]\nrules:\n"
        "  - name: tone\n    kind: sentiment_shift\n    window: 1h\n    baseline: 1d\n"
        "    threshold: 0.3\n    min_scored: 30\n",
        encoding="utf-8",
    )
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    seed_buckets(engine, "metoo", [(START + i * BUCKET, 20) for i in range(288)],
                 compound=0.4, scored_share=1.0)
    seed_buckets(engine, "metoo", [(START + timedelta(days=1) + i * BUCKET, 20)
                                   for i in range(24)], compound=-0.4, scored_share=1.0)
    engine.dispose()
    return path


def test_evaluate_then_alerts_lists_the_firing_alert(cfg_file: Path) -> None:
    at = (START + timedelta(days=1, hours=1)).isoformat()
    result = runner.invoke(app, ["evaluate", "--at", at, "--config", str(cfg_file)])
    assert result.exit_code == 0, result.output
    assert "firing   tone tag=metoo [firing]" in result.output
    assert "1 queued for notification" in result.output
    result = runner.invoke(app, ["alerts", "--all", "--format", "json", "--config", str(cfg_file)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["rule"], r["state"], r["labels"]) for r in rows] == [("tone", "firing", "tag=metoo")]


def test_silence_add_list_expire(cfg_file: Path) -> None:
    result = runner.invoke(app, ["silence", "add", "rule=tone", "tag=#MeToo", "--for", "2h",
                                 "--comment", "known story", "--config", str(cfg_file)])
    assert result.exit_code == 0, result.output
    assert "silence 1: rule=tone tag=metoo until" in result.output
    listed = runner.invoke(app, ["silence", "list", "-f", "json", "--config", str(cfg_file)])
    rows = json.loads(listed.output)
    assert [(r["id"], r["matchers"], r["comment"], r["active"]) for r in rows] == [
        (1, "rule=tone tag=metoo", "known story", True)]
    assert runner.invoke(app, ["silence", "expire", "1", "--config", str(cfg_file)]).exit_code == 0
    listed = runner.invoke(app, ["silence", "list", "--config", str(cfg_file)])
    assert "no silences in force" in listed.output


def test_bad_silence_input_is_one_clear_line(cfg_file: Path) -> None:
    result = runner.invoke(app, ["silence", "add", "tagmetoo", "--config", str(cfg_file)])
    assert result.exit_code == 2
    assert "expected key=value" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["silence", "add", "tag=metoo", "--for", "soon",
                                 "--config", str(cfg_file)])
    assert result.exit_code == 2 and "--for" in result.output
    result = runner.invoke(app, ["silence", "expire", "99", "--config", str(cfg_file)])
    assert result.exit_code == 1 and "no such silence" in result.output


def test_alerts_shows_why_the_alert_fires(cfg_file: Path) -> None:
    at = (START + timedelta(days=1, hours=1)).isoformat()
    assert runner.invoke(app, ["evaluate", "--at", at, "--config", str(cfg_file)]).exit_code == 0
    result = runner.invoke(app, ["alerts", "--all", "--format", "json", "--config", str(cfg_file)])
    [row] = json.loads(result.output)
    e = row["explanation"]
    assert e["observed"] == -0.4 and e["expected"] == 0.4 and e["z"] < 0
    assert e["baseline_from"].startswith("2026-01-05T00:00") and e["params"]["window"] == "1h"
    assert row["why"].startswith("-0.4 vs 0.4 (2026-01-05 00:00..2026-01-06 00:00) z=-")
    table = runner.invoke(app, ["alerts", "--all", "--config", str(cfg_file)])
    assert "why" in table.output
