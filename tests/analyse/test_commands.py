"""The read-side CLI (trends, top, cotags, relate, export) driven like a user would."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from monitor.analyse.commands import register
from monitor.cli import app
from monitor.store.write import write_batch
from tests.analyse.seed import bucket_rows, lagged_pair, scored

register(app)
runner = CliRunner()
T0 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: '{url}'\nprivacy:\n  store_text: true\n")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def seed_days(engine: Engine) -> None:
    write_batch(engine, [
        scored("a", T0 + timedelta(hours=1), ("metoo",), 0.4),
        scored("b", T0 + timedelta(hours=2), ("metoo", "howiwillchange"), -0.2),
        scored("c", T0 + timedelta(days=1, hours=3), ("metoo", "notallmen"), None),
        scored("d", T0 + timedelta(days=2, hours=23), ("notallmen",), -0.6),
    ])


def test_trends_json_and_csv_carry_the_exact_numbers(engine: Engine, cfg: Path) -> None:
    seed_days(engine)
    code, out, err = run("trends", "#MeToo", "notallmen", "--since", "2026-02-01",
                         "--until", "2026-02-04", "--step", "1d", "--format", "json", "-c",
                         str(cfg))
    assert code == 0, err
    rows = json.loads(out)
    metoo = [(r["bucket"][:10], r["posts"], r["scored"], r["mean_compound"]) for r in rows
             if r["tag"] == "metoo"]
    assert metoo[0][:3] == ("2026-02-01", 2, 2)
    assert metoo[0][3] == pytest.approx(0.1)
    assert metoo[1:] == [("2026-02-02", 1, 0, None), ("2026-02-03", 0, 0, None)]
    code, out, _ = run("trends", "notallmen", "--since", "2026-02-01", "--until", "2026-02-04",
                       "--step", "1d", "--format", "csv", "-c", str(cfg))
    table = list(csv.DictReader(io.StringIO(out)))
    assert [r["posts"] for r in table] == ["0", "1", "1"]
    assert table[2]["negative"] == "1"


def test_trends_table_has_totals_and_sparklines(engine: Engine, cfg: Path) -> None:
    seed_days(engine)
    code, out, _ = run("trends", "metoo", "--since", "2026-02-01", "--until", "2026-02-04",
                       "--step", "1h", "-c", str(cfg))
    assert code == 0
    assert "metoo" in out and "+0.100" in out
    volume = next(line for line in out.splitlines() if line.strip().startswith("volume"))
    assert "█" in volume and "▁" in volume
    assert "3 of 72 steps with posts" in out


def test_bad_arguments_are_one_line_and_exit_2(cfg: Path) -> None:
    code, _, err = run("trends", "metoo", "--step", "7m", "-c", str(cfg))
    assert code == 2 and "step" in err and "multiple of 5m" in err
    assert "Traceback" not in err
    code, _, err = run("trends", "metoo", "--since", "last tuesday", "-c", str(cfg))
    assert code == 2 and "--since" in err
    code, _, err = run("relate", "metoo", "metoo", "-c", str(cfg))
    assert code == 2 and "two different tags" in err


def test_top_and_cotags(engine: Engine, cfg: Path) -> None:
    seed_days(engine)
    code, out, _ = run("top", "--since", "2026-02-01", "--until", "2026-02-04", "--format",
                       "json", "-c", str(cfg))
    assert code == 0
    assert [(r["tag"], r["posts"]) for r in json.loads(out)] == [
        ("metoo", 3), ("notallmen", 2), ("howiwillchange", 1)]
    code, out, _ = run("cotags", "metoo", "--since", "2026-02-01", "--until", "2026-02-04",
                       "--format", "json", "-c", str(cfg))
    found = {r["tag"]: (r["posts"], round(r["share"], 3)) for r in json.loads(out)}
    assert found == {"howiwillchange": (1, 0.333), "notallmen": (1, 0.333)}
    code, out, _ = run("cotags", "metoo", "--since", "2026-02-01", "--until", "2026-02-04",
                       "-c", str(cfg))
    assert "33.3%" in out


def test_relate_reports_the_lag_in_words_and_json(engine: Engine, cfg: Path) -> None:
    hours = 24 * 30
    a, b = lagged_pair(3, hours=hours)
    starts = [T0 + timedelta(hours=h) for h in range(hours)]
    bucket_rows(engine, "metoo", starts, a.tolist())
    bucket_rows(engine, "notallmen", starts, b.tolist())
    until = (T0 + timedelta(hours=hours)).isoformat()
    code, out, err = run("relate", "metoo", "notallmen", "--since", "30d", "--until", until,
                         "-c", str(cfg))
    assert code == 0, err
    assert "#notallmen rises 3 h after #metoo moves" in out
    assert "strongest: +3 h" in out
    code, out, _ = run("relate", "metoo", "notallmen", "--since", "30d", "--until", until,
                       "--format", "json", "-c", str(cfg))
    data = json.loads(out)
    assert data["best_lag_hours"] == 3 and data["significant"] is True


def test_export_series_matches_trends(engine: Engine, cfg: Path, tmp_path: Path) -> None:
    seed_days(engine)
    out_file = tmp_path / "series.jsonl"
    code, out, err = run("export", "series", "--tag", "metoo", "--since", "2026-02-01",
                         "--until", "2026-02-04", "--step", "1d", "--format", "jsonl",
                         "--out", str(out_file), "-c", str(cfg))
    assert code == 0, err
    assert "3 rows" in out
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [r["posts"] for r in rows] == [2, 1, 0]
    assert not (tmp_path / "series.jsonl.partial").exists()
