"""A real research file through the real `monitor import`: a #MeToo tweet file exported
through R and a spreadsheet (columns Text,Id,Lenght,Created_at,…; dates 10/15/2019 17:46;
ids rounded to 1.1846E+18), imported as a person would, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from monitor.store.db import make_engine
from monitor.store.schema import posts
from tests.test_cli import monitor, write_config

ROWS = 3000


def metoo_export(path: Path, rows: int = ROWS, *, day_max: int = 31) -> list[datetime]:
    """The file as the course project published it; returns each row's time (UTC)."""
    rng = random.Random(15)
    times = []
    lines = ["Text,Id,Lenght,Created_at,Source,Favorite_count,Retweet_count,Lang"]
    for i in range(rows):
        when = datetime(2019, 10, 1) + timedelta(days=rng.randrange(day_max),
                                                 minutes=rng.randrange(1440))
        times.append(when.replace(tzinfo=UTC))
        # 45 distinct rounded ids over the whole file, as the spreadsheet left them
        ident = f"{1.1846e18 + (i % 45) * 1e13:.4E}"
        text = f"#MeToo is about listening, not about you {i}"
        lines.append(f'"{text}",{ident},{len(text)},'
                     f"{when.month}/{when.day}/{when.year} {when.hour}:{when.minute:02d},"
                     f"Twitter for iPhone,{rng.randrange(50)},{rng.randrange(20)},en")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return times


def count(db_url: str) -> tuple[int, datetime | None, datetime | None]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            n, first, last = conn.execute(select(func.count(), func.min(posts.c.created_at),
                                                 func.max(posts.c.created_at))).one()
    finally:
        engine.dispose()
    return int(n), _utc(first), _utc(last)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite gives naive UTC, PostgreSQL aware
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def test_the_metoo_export_imports_with_key_from_row(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "metoo_oct2019.csv"
    times = metoo_export(data)
    config = write_config(tmp_path, db_url)
    args = ("import", str(data), "--platform", "twitter", "--config", str(config))

    # as it is: the rounded ids are refused before anything is stored
    refused = monitor(*args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: {data}: key column 'Id' holds ids in scientific notation ('1.1846E+18'): they "
        "were rounded (by a spreadsheet?) and no longer tell posts apart; import with "
        "--key-from row or --key-from content (README: Importing historical datasets)"]
    assert count(db_url)[0] == 0

    # keyed by row: every row stored, the US dates read as month/day
    done = monitor(*args, "--key-from", "row", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{data}: {ROWS} stored, 0 duplicates, 0 rejected"
    assert "Traceback" not in done.stderr
    assert count(db_url) == (ROWS, min(times), max(times))

    # again: nothing new, and that is not a failure
    again = monitor(*args, "--key-from", "row", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{data}: 0 stored, 0 duplicates, 0 rejected" in again.stdout


def test_an_ambiguous_file_names_the_option_and_timezone_applies(db_url: str,
                                                                  tmp_path: Path) -> None:
    data = tmp_path / "early_october.csv"
    times = metoo_export(data, 200, day_max=12)
    config = write_config(tmp_path, db_url)
    args = ("import", str(data), "--platform", "twitter", "--key-from", "content",
            "--config", str(config))
    refused = monitor(*args, cwd=tmp_path)
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {data}: Created_at: dates like '")
    assert line.endswith("read as month/day and as day/month; say which with --date-format "
                         "'%m/%d/%Y %H:%M' or --date-format '%d/%m/%Y %H:%M'")
    done = monitor(*args, "--date-format", "%m/%d/%Y %H:%M", "--timezone", "America/New_York",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # New York was 4 hours behind UTC in October 2019
    assert count(db_url) == (200, min(times) + timedelta(hours=4), max(times) + timedelta(hours=4))


def test_rejections_are_grouped_and_nothing_stored_exits_1(tmp_path: Path) -> None:
    data = tmp_path / "bad_dates.csv"
    rows = ["id,created_at,text"] + [f"{1000 + i},sometime {i},#metoo {i}" for i in range(500)]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    result = monitor("import", str(data), "--platform", "twitter", "--config", str(config),
                     cwd=tmp_path)
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 3 + 2 + 1, err  # 3 examples, the count per reason, the error
    assert err[0].startswith(f"{data}:2: created_at: expected an ISO-8601 time")
    assert err[3] == "rejected lines by reason (the first 3 of each are shown above):"
    assert err[4].startswith("        500  created_at: expected an ISO-8601 time")
    assert err[5] == f"error: {data}: nothing stored: every record was rejected (reasons above)"
    assert result.stdout.strip() == f"{data}: 0 stored, 0 duplicates, 500 rejected"


def test_import_argument_mistakes_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "x.jsonl"
    data.write_text('{"id": "1", "created_at": "2019-10-15T10:00:00Z", "text": "#metoo"}\n')
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    base = ("import", str(data), "--config", str(config))
    for extra, want in (
        (("--platform", ""),
         "error: --platform: expected a platform name like 'twitter' or 'mastodon' (a letter, "
         "then letters, digits, '.', '-' or '_'), got ''"),
        (("--platform", "twitter", "--tag", "bad tag"),
         "error: --tag: expected a tag of letters, digits or '_', got 'bad tag'"),
        (("--platform", "twitter", "--timezone", "Mars/Base"),
         "error: --timezone: expected an IANA time zone like 'Europe/Paris' or 'UTC', "
         "got 'Mars/Base'"),
    ):
        result = monitor(*base, *extra, cwd=tmp_path)
        assert (result.returncode, result.stderr.strip().splitlines()) == (2, [want]), extra
    assert not (tmp_path / "m.db").exists()  # refused before the database was touched
