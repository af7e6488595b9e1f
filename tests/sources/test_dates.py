"""Issue 11: dates in year 9999 or 0001 are rejected (and counted) on every platform;
a client clock a little fast is kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.models import ImplausibleDate, plausible_created
from monitor.sources.bluesky import parse_post_view
from monitor.sources.files import Rejected, Row, read_posts
from monitor.sources.jetstream_events import EventRejected, parse_event
from monitor.sources.mastodon import StatusRejected, parse_status

BAD = ["9999-12-31T23:59:59.000Z", "0001-01-01T00:00:00.000Z"]


def test_the_shared_check_rejects_far_dates_and_keeps_a_fast_clock() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert plausible_created(now - timedelta(days=3000), now) == now - timedelta(days=3000)
    assert plausible_created(now + timedelta(hours=2), now) == now + timedelta(hours=2)
    for bad in (datetime(9999, 12, 31, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
                now + timedelta(days=2)):
        with pytest.raises(ImplausibleDate, match="expected a time between 1990-01-01"):
            plausible_created(bad, now)


def _status(created: str) -> dict[str, Any]:
    return {"id": "1", "uri": "https://m.example/users/a/statuses/1", "created_at": created,
            "content": "<p>#metoo</p>", "account": {"acct": "a"}, "tags": [{"name": "metoo"}]}


@pytest.mark.parametrize("created", BAD)
def test_mastodon(created: str) -> None:
    with pytest.raises(StatusRejected) as info:
        parse_status(_status(created), "m.example")
    assert info.value.field == "created_at"


def _view(created: str, indexed: str = "2026-01-01T00:00:00.000Z") -> dict[str, Any]:
    return {"uri": "at://did:plc:a/app.bsky.feed.post/1", "cid": "bafy", "indexedAt": indexed,
            "author": {"did": "did:plc:a", "handle": "a.bsky.social"},
            "record": {"$type": "app.bsky.feed.post", "text": "#metoo", "createdAt": created}}


def test_bluesky_search() -> None:
    with pytest.raises(ValueError, match="createdAt"):
        parse_post_view(_view(BAD[1]))
    with pytest.raises(ValueError, match="indexedAt"):  # the index time itself in 9999
        parse_post_view(_view(BAD[0], indexed=BAD[0]))
    post, _ = parse_post_view(_view(BAD[0]))  # clamped to the index time, as before
    assert post.created_at == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("created", BAD)
def test_jetstream(created: str) -> None:
    now_us = int(datetime.now(UTC).timestamp() * 1_000_000)
    raw = json.dumps({"did": "did:plc:a", "time_us": now_us, "kind": "commit", "commit": {
        "rev": "r", "operation": "create", "collection": "app.bsky.feed.post", "rkey": "1",
        "cid": "c", "record": {"$type": "app.bsky.feed.post", "text": "#metoo",
                               "createdAt": created}}})
    if created.startswith("9999"):
        # already clamped to the moment the network saw it, as before
        kind, post = parse_event(raw, ["metoo"])
        assert kind == "post" and post.created_at.year < 9999  # type: ignore[union-attr]
        return
    with pytest.raises(EventRejected, match="createdAt"):
        parse_event(raw, ["metoo"])


def test_file_import(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps({"key": str(i), "created_at": c, "text": "#metoo"}) + "\n"
                            for i, c in enumerate([*BAD, "2024-05-01T00:00:00Z", 253402300800])))
    out = list(read_posts(path, "twitter"))
    assert [type(o) for o in out] == [Rejected, Rejected, Row, Rejected]
    assert all("created_at: " in str(o) for o in out if isinstance(o, Rejected))


# ---- the collectors added after the shared check: each rejects, naming its field


def _misskey(created: str) -> Any:
    from monitor.sources.misskey import parse_note

    return parse_note({"id": "9abc", "createdAt": created, "text": "#metoo", "tags": ["metoo"],
                       "user": {"username": "a"}}, "https://mk.example")


def _lemmy(created: str) -> Any:
    from monitor.sources.lemmy import parse_post_view

    return parse_post_view({"post": {"ap_id": "https://l.example/post/1", "name": "metoo",
                                     "published": created}, "creator": {"name": "a"}},
                           ["metoo"])


def _hackernews(created: str) -> Any:
    from monitor.sources.hackernews import parse_hit

    seconds = int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    return parse_hit({"objectID": "1", "created_at_i": seconds, "title": "metoo",
                      "author": "a"}, ["metoo"])


def _telegram(created: str) -> Any:
    from monitor.sources.telegram import parse_page

    html = ('<div class="tgme_widget_message" data-post="chan/5">'
            '<div class="tgme_widget_message_text">#metoo</div>'
            f'<a class="tgme_widget_message_date"><time datetime="{created}"></time></a></div>')
    return parse_page(html, "chan", frozenset({"metoo"}))


@pytest.mark.parametrize("parse", [_misskey, _lemmy, _hackernews])
def test_newer_polled_collectors_reject_far_dates(parse: Any) -> None:
    from monitor.sources.fields import Rejected as FieldRejected

    for created in BAD:
        with pytest.raises(FieldRejected, match="expected a time between 1990-01-01"):
            parse(created)
    assert parse("2025-06-01T12:00:00.000Z") is not None


def test_telegram_rejects_far_dates() -> None:
    for created in BAD:
        posts, ids, rejected, _ = _telegram(created)
        # the page goes on past a bad message: it is rejected with its field, never stored
        assert posts == [] and ids == ["5"]
        assert [(r.field, "expected a time between 1990-01-01" in r.problem)
                for r in rejected] == [("time", True)]
    assert len(_telegram("2025-06-01T12:00:00+00:00")[0]) == 1


def test_rss_rejects_far_dates() -> None:
    import time as _time

    from monitor.sources.fields import Rejected as FieldRejected
    from monitor.sources.rss import parse_entry

    def entry(year: int) -> dict[str, Any]:
        return {"link": "https://feed.example/items/1", "id": "https://feed.example/items/1",
                "title": "#metoo", "summary": "#metoo", "tags": [{"term": "metoo"}],
                "published_parsed": _time.struct_time((year, 1, 1, 0, 0, 0, 0, 1, 0))}

    for year in (9999, 1):
        with pytest.raises(FieldRejected, match="published: expected a time between"):
            parse_entry(entry(year), ["metoo"], tag_feed=True)
    assert parse_entry(entry(2025), ["metoo"], tag_feed=True) is not None
