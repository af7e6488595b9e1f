"""Fuzz: files for `monitor import` (JSONL and CSV, every preset, custom mappings) → a Row or a
Rejected naming the line and field for every record; a whole-file problem is one InputError."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from monitor.errors import InputError
from monitor.sources.files import PRESETS, Rejected, Row, read_posts
from tests.fuzz.strategies import (
    Stored,
    epochs,
    examples,
    handles,
    iso_times,
    junk,
    numeric_ids,
    payload,
    record,
    run,
    store_all,
    tags,
    texts,
)

twitter_times = st.sampled_from(["Wed Oct 18 14:03:11 +0000 2017", "Wed Oct 99 14:03:11 +0000 2017",
                                 "Fri Dec 31 23:59:59 +0000 9999"])
times = st.one_of(iso_times, epochs, twitter_times, epochs.map(str))
native = record(key=numeric_ids | texts, id=numeric_ids, created_at=times, text=texts,
                html=texts, url=texts, author=handles, lang=st.sampled_from(["en", "und", ""]),
                tags=st.one_of(st.lists(tags, max_size=3), texts), is_repost=junk,
                sensitive=st.sampled_from(["yes", "no", "maybe", True, 0]))
twitter_v1 = record(id_str=numeric_ids, created_at=times, full_text=texts, text=texts,
                    lang=st.sampled_from(["en", "und"]), user=record(screen_name=handles),
                    entities=record(hashtags=st.lists(record(text=tags), max_size=3)),
                    retweeted_status=st.one_of(st.none(), junk))
twitter_v2 = st.one_of(
    record(id=numeric_ids, text=texts, created_at=iso_times, author_id=numeric_ids,
           entities=record(hashtags=st.lists(record(tag=tags), max_size=3))),
    record(data=st.lists(record(id=numeric_ids, text=texts, created_at=iso_times), max_size=3),
           includes=record(users=st.lists(record(id=numeric_ids, username=handles),
                                          max_size=2))))
PRESET_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    "native": native, "twitter-v1": twitter_v1, "twitter-v2": twitter_v2,
    "openml-43850": record(status_id=numeric_ids, created_at=times, text=texts),
    "tweet-ids": record(tweet_id=numeric_ids),
}
custom_maps = st.dictionaries(
    st.sampled_from(["key", "created_at", "text", "author", "tags", "lang", "is_repost"]),
    st.sampled_from(["status_id", "user.screen_name", "entities.hashtags[].text", "a|b",
                     "x[].y.z", "created_at", "text", "[]", "..", "|"]), max_size=3)


def _line(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) else value


@st.composite
def files(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    preset = draw(st.sampled_from(sorted(PRESET_SHAPES)))
    mapping = dict(PRESETS[preset])
    if preset == "native" and draw(st.booleans()):
        mapping = draw(custom_maps)
    rows = draw(st.lists(payload(PRESET_SHAPES[preset]), max_size=6))
    as_csv = preset != "twitter-v2" and draw(st.booleans())
    if as_csv:
        columns = sorted({k for r in rows if isinstance(r, dict) for k in r} | {"key"})
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(columns)
        for r in rows:
            values = r if isinstance(r, dict) else {}
            writer.writerow([_line(values.get(c, "")) for c in columns][:draw(
                st.integers(len(columns) - 1, len(columns)))])
        text, suffix = out.getvalue(), ".csv"
    else:
        lines = [_line(r) for r in rows]
        lines += draw(st.lists(st.sampled_from(["", "{", "[1,2]", "null", "[" * 5000, "\ufeff{}"]),
                               max_size=2))
        text, suffix = "\n".join(draw(st.permutations(lines))) + "\n", ".jsonl"
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 15)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))] + b"\xff\xfe"  # not UTF-8
    return suffix, raw, mapping


@examples
def test_import_file(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()
    work = Path(tempfile.mkdtemp(dir=tmp_path))

    def check(case: tuple[str, bytes, dict[str, str]]) -> None:
        suffix, raw, mapping = case
        path = work / f"posts{suffix}"
        path.write_bytes(raw)
        try:
            items = list(read_posts(path, "twitter", mapping, default_tags=("metoo",)))
        except InputError as exc:  # the whole file: not UTF-8, a column missing ...
            assert str(exc).strip() and "\n" not in str(exc)
            return
        lines = []
        for item in items:
            if isinstance(item, Rejected):
                assert item.reason and str(item).startswith(f"{path}:{item.line}: ")
            else:
                assert isinstance(item, Row)
                stored.add(item.post)
            lines.append(item.line)
        assert lines == sorted(lines), "records out of file order"

    run(files(), check, n_examples)
    store_all(stored.posts, tmp_path)
