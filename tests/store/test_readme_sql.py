"""Every SQL example of the README runs on SQLite and PostgreSQL and gives the rows of the
CLI command its ``-- same as:`` line names.

The examples are read from the README itself (its ```sql blocks), so a new example is
covered as soon as it is written. SQL shown anywhere else (a shell line, a pandas call)
must repeat one of those blocks verbatim, so nothing in the README goes untested.
"""

from __future__ import annotations

import csv
import io
import re
import shlex
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from monitor.cli import app
from monitor.commands import register_all
from monitor.models import StreamKey
from monitor.store.write import record_failure, write_batch
from tests.analyse.seed import scored

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SAME_AS = re.compile(r"^-- same as: (monitor .+?) \(columns ([\w, ]+)\)$", re.M)
SELECT = re.compile(r"\bSELECT\b.+?\bFROM\b[^\"`]*", re.I | re.S)

register_all(app)


def _squash(sql: str) -> str:
    return " ".join(sql.replace(";", " ").split()).casefold()


def sql_blocks() -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8"))
            if lang == "sql"]


def test_the_readme_has_sql_examples_and_each_names_its_command() -> None:
    blocks = sql_blocks()
    assert len(blocks) >= 4
    for body in blocks:
        assert SAME_AS.search(body), (
            f"a ```sql block without a '-- same as: monitor … (columns …)' line:\n{body}")


def test_sql_outside_sql_blocks_repeats_one_of_them() -> None:
    known = [_squash(b) for b in sql_blocks()]
    for lang, body in FENCE.findall(README.read_text(encoding="utf-8")):
        if lang == "sql":
            continue
        for statement in SELECT.findall(body):
            assert any(_squash(statement) in k for k in known), (
                f"SQL in a ```{lang} block that no ```sql block runs: {statement!r}")


def _seed(engine: Engine) -> None:
    """Posts either side of 1 January 2026, pairs where metoo is tag_a and tag_b, scores
    with and without, and two streams' health."""
    start = datetime(2025, 12, 28, tzinfo=UTC)
    posts = []
    companions = ["howiwillchange", "ididit", "timesup", "notallmen", "yesallwomen"]
    for i in range(400):
        at = start + timedelta(hours=i // 2 * 1.7, minutes=(i * 37) % 60)
        tags = ["metoo"] if i % 3 else ["notallmen"]
        tags += companions[: i % 4]  # 'howiwillchange' and 'ididit' sort before 'metoo'
        compound = None if i % 7 == 0 else ((i * 13) % 200 - 100) / 100
        posts.append(scored(f"p{i}", at, tuple(dict.fromkeys(tags)), compound))
    stream = StreamKey("mastodon", "example.social", "metoo")
    write_batch(engine, posts, stream=stream, now=datetime(2026, 1, 30, tzinfo=UTC))
    record_failure(engine, StreamKey("bluesky-search", "bsky", "metoo"), "HTTP 503",
                   datetime(2026, 1, 30, 1, tzinfo=UTC))


def _value(value: Any) -> Any:
    """One cell as a comparable value: times to UTC seconds, numbers to numbers."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return f"{value:%Y-%m-%d} 00:00:00"
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        return float(value)
    text_ = str(value)
    for parse in (int, float):
        try:
            return float(parse(text_))
        except ValueError:
            pass
    if re.match(r"\d{4}-\d\d-\d\d", text_):
        return _value(datetime.fromisoformat(text_.replace("Z", "+00:00")))
    return text_


def _rows(rows: list[list[Any]]) -> list[tuple[Any, ...]]:
    out = [tuple(_value(v) for v in r) for r in rows]
    return sorted(out, key=lambda r: tuple(
        (0, round(v, 2)) if isinstance(v, float) else (1, str(v)) for v in r))


def _same(sql_rows: list[tuple[Any, ...]], cli_rows: list[tuple[Any, ...]]) -> bool:
    if len(sql_rows) != len(cli_rows):
        return False
    for a, b in zip(sql_rows, cli_rows, strict=True):
        for x, y in zip(a, b, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if abs(x - y) > 6e-4:  # the SQL rounds to 3 decimals, the CLI does not
                    return False
            elif x != y:
                return False
    return True


@pytest.mark.parametrize("index", range(len(sql_blocks())))
def test_each_readme_query_matches_its_cli_command(engine: Engine, tmp_path: Path,
                                                   index: int) -> None:
    body = sql_blocks()[index]
    match = SAME_AS.search(body)
    assert match is not None
    command, columns = match.group(1), [c.strip() for c in match.group(2).split(",")]
    _seed(engine)
    with engine.connect() as conn:
        result = conn.execute(text(body.strip().rstrip(";")))
        sql_rows = [list(r) for r in result]
    assert sql_rows, f"the example returns nothing on the test data:\n{body}"
    assert all(len(r) == len(columns) for r in sql_rows)

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"database:\n  url: '{engine.url.render_as_string(hide_password=False)}'\n",
                   encoding="utf-8")
    result_cli = CliRunner().invoke(app, [*shlex.split(command)[1:], "-c", str(cfg)])
    assert result_cli.exit_code == 0, result_cli.stderr
    table = list(csv.DictReader(io.StringIO(result_cli.stdout)))
    # the views have no row for a step without posts; the CLI fills those with zeros
    if "posts" in columns and table and "bucket" in table[0]:
        table = [r for r in table if r["posts"] not in ("0", "")]
    cli_rows = [[r[c] for c in columns] for r in table]
    sql_sorted, cli_sorted = _rows(sql_rows), _rows(cli_rows)
    assert _same(sql_sorted, cli_sorted), (
        f"{command}\nSQL: {sql_sorted[:6]} … ({len(sql_sorted)} rows)\n"
        f"CLI: {cli_sorted[:6]} … ({len(cli_sorted)} rows)")


def test_the_old_pairs_example_missed_pairs_where_the_tag_is_tag_b(engine: Engine) -> None:
    # why the example asks for both sides: 'howiwillchange' < 'metoo', so that pair is
    # stored with metoo as tag_b and the old example never counted it
    _seed(engine)
    old = ("SELECT tag_b, sum(posts) FROM tag_pairs_daily WHERE tag_a = 'metoo' "
           "GROUP BY tag_b ORDER BY 2 DESC LIMIT 10")
    with engine.connect() as conn:
        found = {r[0] for r in conn.execute(text(old))}
    assert "howiwillchange" not in found and "ididit" not in found
    assert "timesup" in found  # the pair where metoo sorts first is found
