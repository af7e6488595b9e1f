"""Export formats follow the file name, a contradicting --format is refused, tags are a
list where the format has lists, and a series export defaults to the followed tags."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from monitor.analyse.commands import register
from monitor.analyse.export import format_for
from monitor.cli import app
from monitor.errors import InputError
from monitor.store.write import write_batch
from tests.analyse.seed import scored

register(app)
runner = CliRunner()
T0 = datetime(2026, 4, 1, tzinfo=UTC)


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Path:
    write_batch(engine, [
        scored("1", T0 + timedelta(minutes=1), ("metoo", "howiwillchange"), 0.5),
        scored("2", T0 + timedelta(minutes=2), ("notallmen",), -0.3),
        scored("3", T0 + timedelta(minutes=3), ("other",), 0.1),
    ])
    url = engine.url.render_as_string(hide_password=False)
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: '{url}'\nhashtags: [metoo, notallmen]\n"
                    "privacy:\n  authors: keep\n")
    return path


def export(cfg: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["export", *args, "--since", "2026-04-01", "--until",
                                 "2026-04-02", "-c", str(cfg)])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("name", ["x.parquet", "x.jsonl", "x.ndjson", "X.CSV"])
def test_the_format_follows_the_extension(cfg: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    code, _, err = export(cfg, "posts", "--out", str(out))
    assert code == 0, err
    data = out.read_bytes()
    if name.endswith("parquet"):
        assert data[:4] == b"PAR1"
        table = pq.read_table(out)
        assert table.schema.field("tags").type == pa.list_(pa.string())
        assert sorted(map(tuple, table.column("tags").to_pylist()))[0] == (
            "howiwillchange", "metoo")
    elif name.lower().endswith("csv"):
        rows = list(csv.DictReader(io.StringIO(data.decode().split("\n", 1)[1])))
        assert rows[0]["tags"] == "howiwillchange metoo"
    else:
        rows = [json.loads(line) for line in data.decode().splitlines()]
        assert rows[0]["tags"] == ["howiwillchange", "metoo"]
        assert not data.startswith(b"#")  # not CSV with its comment line


@pytest.mark.parametrize(("name", "fmt"), [("x.parquet", "csv"), ("x.jsonl", "parquet"),
                                           ("x.csv", "jsonl")])
def test_a_format_the_name_contradicts_is_refused(cfg: Path, tmp_path: Path, name: str,
                                                  fmt: str) -> None:
    out = tmp_path / name
    code, _, err = export(cfg, "posts", "--out", str(out), "--format", fmt)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--format" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_names_that_say_nothing_or_compress(cfg: Path, tmp_path: Path) -> None:
    code, _, err = export(cfg, "posts", "--out", str(tmp_path / "x.txt"))
    assert code == 2 and "cannot tell the format" in err
    # an explicit format for an unknown extension is the user's choice
    code, _, err = export(cfg, "posts", "--out", str(tmp_path / "x.txt"), "--format", "jsonl")
    assert code == 0, err
    assert json.loads((tmp_path / "x.txt").read_text().splitlines()[0])["platform"] == "test"
    code, _, err = export(cfg, "posts", "--out", str(tmp_path / "x.csv.gz"))
    assert code == 2 and "uncompressed" in err
    with pytest.raises(InputError, match="names a parquet file"):
        format_for("a.parquet", "csv")
    assert format_for("-", None) == "csv" and format_for("-", "jsonl") == "jsonl"


def test_series_defaults_to_the_followed_tags(cfg: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    code, _, err = export(cfg, "series", "--out", str(out), "--step", "1d")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out.read_text().split("\n", 1)[1])))
    assert {r["tag"]: r["posts"] for r in rows} == {"metoo": "1", "notallmen": "1"}
