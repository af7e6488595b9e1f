"""Reading historical datasets: our format, research presets, and bad lines reported."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.sources.files import (
    PRESETS,
    Rejected,
    Row,
    parse_mapping,
    parse_timestamp,
    read_posts,
    twitter_snowflake_time,
)


def rows(items: list[Row | Rejected]) -> list[Row]:
    return [i for i in items if isinstance(i, Row)]


def rejected(items: list[Row | Rejected]) -> list[str]:
    return [str(i) for i in items if isinstance(i, Rejected)]


def test_native_jsonl_with_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    lines = [
        json.dumps(
            {
                "key": "1",
                "created_at": "2017-10-15T20:00:00Z",
                "text": "#MeToo ok",
                "tags": ["MeToo"],
                "author": "alice",
                "lang": "en",
            }
        ),
        "{not json",
        json.dumps({"key": "2", "created_at": "yesterday", "text": "x"}),
        json.dumps(["a", "list"]),
        "",
        json.dumps({"created_at": "2017-10-15T20:00:00Z", "text": "no id"}),
        json.dumps({"id": 3, "created_at": 1508097600, "html": "<p>#NotAllMen</p>"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = list(read_posts(path, "twitter"))
    good = rows(items)
    assert [r.post.key for r in good] == ["1", "3"]
    assert [r.line for r in good] == [1, 7]
    first = good[0].post
    assert first.created_at == datetime(2017, 10, 15, 20, tzinfo=UTC)
    assert first.tags == ("MeToo",) and first.author == "alice" and first.lang == "en"
    assert good[1].post.html == "<p>#NotAllMen</p>"
    errors = rejected(items)
    assert errors[0].startswith(f"{path}:2: invalid JSON")
    assert errors[1].startswith(f"{path}:3: created_at: expected an ISO-8601 time")
    assert errors[2] == f"{path}:4: expected a JSON object, got list"
    assert errors[3].startswith(f"{path}:6: key: missing post id")


def test_twitter_v1_preset_reads_nested_fields(tmp_path: Path) -> None:
    tweet = {
        "id_str": "920000000000000000",
        "created_at": "Wed Oct 18 14:03:11 +0000 2017",
        "full_text": "Believe survivors #MeToo #HowIWillChange",
        "lang": "en",
        "user": {"screen_name": "someone"},
        "entities": {"hashtags": [{"text": "MeToo"}, {"text": "HowIWillChange"}]},
        "retweeted_status": {"id_str": "1"},
    }
    path = tmp_path / "tweets.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(tweet) + "\n")
    (row,) = rows(list(read_posts(path, "twitter", PRESETS["twitter-v1"])))
    post = row.post
    assert post.key == "920000000000000000"
    assert post.created_at == datetime(2017, 10, 18, 14, 3, 11, tzinfo=UTC)
    assert post.text == "Believe survivors #MeToo #HowIWillChange"
    assert post.author == "someone"
    assert post.tags == ("MeToo", "HowIWillChange")
    assert post.is_repost is True


def test_csv_with_mapping_and_ragged_rows(tmp_path: Path) -> None:
    path = tmp_path / "openml.csv"
    path.write_text(
        "status_id,text,created_at,category\n"
        '1,"multi\nline #metoo",2017-10-16 10:00:00,0\n'
        "2,short,2017-10-16 10:05:00\n"
        "3,fine #NotAllMen,2017-10-16 10:06:00,1\n",
        encoding="utf-8",
    )
    items = list(read_posts(path, "twitter", PRESETS["openml-43850"]))
    assert [r.post.key for r in rows(items)] == ["1", "3"]
    assert rows(items)[0].post.text == "multi\nline #metoo"
    assert rejected(items) == [f"{path}:4: expected 4 columns, got 3"]


def test_csv_missing_mapped_column_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("id,when\n1,2017-10-16\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"x.csv:1: column\(s\) 'status_id'"):
        list(read_posts(path, "twitter", {"key": "status_id"}))


def test_tweet_id_only_rows_get_their_time_from_the_snowflake(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("tweet_id\n920000000000000000\n", encoding="utf-8")
    (row,) = rows(list(read_posts(path, "twitter", PRESETS["tweet-ids"], default_tags=("metoo",))))
    assert row.post.created_at.year == 2017 and row.post.created_at.month == 10
    assert row.post.tags == ("metoo",) and row.post.text is None


def test_resume_skips_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"key": str(i), "created_at": "2020-01-01T00:00:00Z"}) for i in range(5)
        )
        + "\n",
        encoding="utf-8",
    )
    assert [r.post.key for r in rows(list(read_posts(path, "x", start_line=3)))] == ["3", "4"]


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="unknown file type"):
        list(read_posts(path, "x"))


def test_parse_mapping_errors() -> None:
    assert parse_mapping(["author=user.screen_name"]) == {"author": "user.screen_name"}
    with pytest.raises(InputError, match="expected FIELD=COLUMN"):
        parse_mapping(["author"])
    with pytest.raises(InputError, match="unknown field 'handle'"):
        parse_mapping(["handle=user"])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2017-10-15T20:00:00.123Z", datetime(2017, 10, 15, 20, 0, 0, 123000, tzinfo=UTC)),
        ("2017-10-15 22:00:00+02:00", datetime(2017, 10, 15, 20, tzinfo=UTC)),
        ("2017-10-15 20:00:00", datetime(2017, 10, 15, 20, tzinfo=UTC)),
        (1508097600, datetime(2017, 10, 15, 20, tzinfo=UTC)),
        ("1508097600", datetime(2017, 10, 15, 20, tzinfo=UTC)),
        ("Sun Oct 15 20:00:00 +0000 2017", datetime(2017, 10, 15, 20, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(raw: object, expected: datetime) -> None:
    assert parse_timestamp(raw) == expected


def test_snowflake_time_is_exact() -> None:
    # id 920000000000000000: ((id >> 22) + twitter epoch) ms
    assert twitter_snowflake_time("920000000000000000") == datetime.fromtimestamp(
        ((920000000000000000 >> 22) + 1288834974657) / 1000, tz=UTC
    )
