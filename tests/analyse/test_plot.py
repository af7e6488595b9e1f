"""`monitor trends --plot` and `monitor relate --plot`: a real PNG, alerts marked."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from monitor.analyse.commands import register
from monitor.analyse.plot import alerts_in_range, trends_plot
from monitor.cli import app
from monitor.store.alerts import recent_alerts, save_alert
from monitor.store.queries import series
from monitor.store.write import write_batch
from tests.analyse.seed import scored

register(app)
runner = CliRunner()
T0 = datetime(2026, 2, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: '{url}'\n")
    return path


def seed(engine: Engine) -> None:
    posts = []
    for h in range(96):  # four days: relate needs three at least
        for i in range(3 + (20 if h == 12 else 0)):
            posts.append(scored(f"m{h}-{i}", T0 + timedelta(hours=h, minutes=i),
                                ("metoo",), 0.5 if h < 12 else -0.4))
        posts.append(scored(f"n{h}", T0 + timedelta(hours=h, minutes=30), ("notallmen",), -0.2))
    write_batch(engine, posts)
    with engine.begin() as conn:
        save_alert(conn, None, fingerprint="fp-spike", rule="spike", labels={"tag": "metoo"},
                   lifecycle={"state": "firing", "active_since": T0 + timedelta(hours=12),
                              "fired_at": T0 + timedelta(hours=12, minutes=5)},
                   annotations={}, measured=(23.0, "#metoo: 23 posts"))
        # another tag's alert and one outside the range: not drawn
        save_alert(conn, None, fingerprint="fp-other", rule="spike", labels={"tag": "ididit"},
                   lifecycle={"state": "firing", "fired_at": T0 + timedelta(hours=3)},
                   annotations={}, measured=(5.0, "#ididit"))
        save_alert(conn, None, fingerprint="fp-old", rule="spike", labels={"tag": "metoo"},
                   lifecycle={"state": "resolved", "fired_at": T0 - timedelta(days=3)},
                   annotations={}, measured=(5.0, "#metoo old"))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND" or b"IEND" in data[-16:]
    return width, height


def test_trends_plot_marks_the_alerts_of_its_tags_in_range(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    start, end = T0, T0 + timedelta(days=1)
    points = series(engine, ["metoo", "notallmen"], start, end, timedelta(hours=1))
    marks = alerts_in_range(recent_alerts(engine), ["metoo", "notallmen"], start, end)
    assert [(a.rule, a.labels["tag"]) for a, _ in marks] == [("spike", "metoo")]
    result = trends_plot(engine, tmp_path / "t.png", points, ["metoo", "notallmen"], start,
                         end, "1h")
    assert result.alerts_marked == (("spike", "metoo", T0 + timedelta(hours=12, minutes=5)),)
    assert png_size(result.path) == (result.width, result.height) == (1000, 560)
    assert result.path.stat().st_size > 10_000


def test_cli_trends_and_relate_write_pngs(engine: Engine, cfg: Path, tmp_path: Path) -> None:
    seed(engine)
    out = tmp_path / "trends.png"
    result = runner.invoke(app, ["trends", "metoo", "notallmen", "--since", "2026-02-01",
                                 "--until", "2026-02-02", "--plot", str(out), "-c", str(cfg)])
    assert result.exit_code == 0, result.stderr
    assert f"{out}: 1000x560 PNG, 1 alert marked" in result.stderr
    assert png_size(out) == (1000, 560)
    out = tmp_path / "relate.png"
    result = runner.invoke(app, ["relate", "metoo", "notallmen", "--since", "2026-02-01",
                                 "--until", "2026-02-05", "--max-lag", "6", "--plot", str(out),
                                 "-c", str(cfg)])
    assert result.exit_code == 0, result.stderr
    assert "1 alert marked" in result.stderr
    width, height = png_size(out)
    assert (width, height) == (1000, 820)  # three panels: volume, tone, r by lag
    result = runner.invoke(app, ["trends", "metoo", "--since", "2026-02-01", "--plot",
                                 str(tmp_path / "no" / "such" / "dir.png"), "-c", str(cfg)])
    assert result.exit_code == 2
    assert "--plot:" in result.stderr and "cannot write" in result.stderr


def test_plot_without_matplotlib_is_one_line_naming_the_extra(cfg: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    (blocker / "matplotlib").mkdir(parents=True)
    (blocker / "matplotlib" / "__init__.py").write_text("raise ImportError('blocked')\n")
    done = subprocess.run(
        [sys.executable, "-c", "from monitor.commands import main; main()", "trends", "metoo",
         "--plot", str(tmp_path / "x.png"), "-c", str(cfg)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"})
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: --plot needs matplotlib: pip install 'hashtag-monitor[charts]'"]
    assert not (tmp_path / "x.png").exists()
