"""Pseudonymous post keys, the block list of forgotten authors and the access report
(issue 12), on both databases, through the service's real write path
(``Service._write``: the enrich/gate chokepoint, deletions, edits, the store)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from monitor.commands import app, register_all
from monitor.config import Config, parse_config
from monitor.enrich.erasure import forget_author, forget_post, rotate_secret
from monitor.enrich.pipeline import Enricher
from monitor.enrich.post_keys import PostKeys, is_post_pseudonym, original_key
from monitor.enrich.privacy import AuthorKey
from monitor.models import Batch, Post, StreamKey
from monitor.service import Service
from monitor.store.kept import oldest_rows, retention_runs
from monitor.store.schema import deletions, forgotten_authors, post_tags, posts
from monitor.store.write import write_batch

SECRET = "k" * 32
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
INSTANCE_A = StreamKey("mastodon", "a.example", "metoo")
INSTANCE_B = StreamKey("mastodon", "b.example", "metoo")
RSS = StreamKey("rss", "a.example/tags/metoo.rss", "metoo")


def _config(url: str, **privacy: object) -> Config:
    return parse_config({"database": {"url": url},
                         "privacy": {"hash_secret": SECRET, **privacy}}, env={})


def _post(n: int, author: str = "alice") -> Post:
    return Post(platform="mastodon", key=f"https://origin.example/users/{author}/statuses/{n}",
                url=f"https://origin.example/@{author}/{n}", author=f"{author}@origin.example",
                created_at=NOW + timedelta(seconds=n), text=f"post {n} #metoo", tags=("metoo",))


def _keys() -> PostKeys:
    return PostKeys(AuthorKey((SECRET.encode(),)))


def _rows(engine: Engine) -> list[tuple[str, str, str | None, str | None]]:
    with engine.connect() as conn:
        return [(r.platform, r.key, r.url, r.author) for r in conn.execute(
            select(posts.c.platform, posts.c.key, posts.c.url, posts.c.author))]


def _tombstones(engine: Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(r.platform, r.key) for r in conn.execute(select(deletions))}


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(posts)).scalar_one())


def test_stored_keys_are_stable_idempotent_and_name_nobody() -> None:
    keys, uri = _keys(), _post(1).key
    stored = keys.stored("mastodon", uri)
    assert is_post_pseudonym(stored) and stored.startswith("pk1:") and "alice" not in stored
    assert keys.stored("mastodon", uri) == stored  # dedupe: same key, same row
    assert keys.stored("mastodon", stored) == stored  # a stored key passed back stays
    assert keys.stored("bluesky", uri) != stored  # the platform is part of the key
    assert PostKeys(AuthorKey((b"other" * 8,))).stored("mastodon", uri) != stored
    # rotation: pk1:h -> pk2:HMAC(new, h), which is what the new chain gives directly
    new = b"n" * 40
    rekey = keys.rekey(new)
    assert rekey("mastodon", stored) == PostKeys(AuthorKey((SECRET.encode(), new))).stored(
        "mastodon", uri)
    assert rekey("mastodon", rekey("mastodon", stored)) == rekey("mastodon", stored)


def test_links_give_the_platform_key_for_the_recheck_and_forget() -> None:
    assert original_key("mastodon", "https://h.example/@alice/1234") == \
        "https://h.example/users/alice/statuses/1234"
    assert original_key("bluesky", "https://bsky.app/profile/did:plc:abc/post/3lxyz") == \
        "at://did:plc:abc/app.bsky.feed.post/3lxyz"
    assert original_key("bluesky", "https://bsky.app/profile/alice.bsky.social/post/3l") is None
    assert original_key("mastodon", None) is None


def test_service_stores_pseudonyms_dedupes_and_applies_edits_and_deletions(
        engine: Engine, db_url: str) -> None:
    service = Service(_config(db_url), engine)
    first, second, third, late = _post(1), _post(2, "bob"), _post(3), _post(4)
    service._write(Batch(INSTANCE_A, posts=(first, second, third)))
    service._write(Batch(INSTANCE_B, posts=(first,)))  # another instance: same status uri
    service._write(Batch(RSS, posts=(replace(first, url=None),)))  # and the tag's RSS feed
    stored = _rows(engine)
    assert len(stored) == 3
    for _platform, key, url, author in stored:
        assert is_post_pseudonym(key) and url is None and author is not None
        for name in ("alice", "bob", "origin.example", "/users/"):
            assert name not in key and name not in author
    keys = _keys()
    assert {k for _, k, _, _ in stored} == {keys.stored("mastodon", p.key)
                                            for p in (first, second, third)}
    # an edit finds its post through the same mapping
    edited = replace(second, text="post 2 #metoo #edited", tags=("metoo", "edited"))
    service._write(Batch(INSTANCE_A, edited=(edited,)))
    assert _count(engine) == 3
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(post_tags)
                            .where(post_tags.c.tag == "edited")).scalar_one() == 1
    # a Mastodon delete (the platform key) removes the row and leaves a keyed tombstone
    service._write(Batch(INSTANCE_A, deleted=(third.key,)))
    assert _count(engine) == 2
    assert _tombstones(engine) == {("mastodon", keys.stored("mastodon", third.key))}
    service._write(Batch(INSTANCE_B, posts=(third,)))  # a replay: not stored again
    # a deletion that arrives before its post wins
    service._write(Batch(INSTANCE_A, deleted=(late.key,)))
    service._write(Batch(INSTANCE_A, posts=(late,)))
    assert _count(engine) == 2
    # a post and its deletion in one batch
    both = _post(5)
    service._write(Batch(INSTANCE_A, posts=(both,), deleted=(both.key,)))
    assert _count(engine) == 2


def test_under_authors_drop_keys_are_pseudonyms_too(engine: Engine, db_url: str) -> None:
    config = _config(db_url, authors="drop", hash_secret="")
    service = Service(config, engine)
    service._write(Batch(INSTANCE_A, posts=(_post(1), _post(2))))
    service._write(Batch(INSTANCE_A, deleted=(_post(2).key,)))
    stored = _rows(engine)
    assert len(stored) == 1 and stored[0][2:] == (None, None)
    assert is_post_pseudonym(stored[0][1]) and all(
        is_post_pseudonym(k) for _, k in _tombstones(engine))
    assert forget_post(engine, config, _post(1).url or "").removed == 1


def test_forget_post_by_key_link_or_stored_key(engine: Engine, db_url: str) -> None:
    config = _config(db_url)
    service = Service(config, engine)
    items = [_post(n) for n in range(1, 5)]
    service._write(Batch(INSTANCE_A, posts=tuple(items)))
    assert forget_post(engine, config, items[0].key).removed == 1
    assert forget_post(engine, config, items[1].url or "").removed == 1  # the link
    assert forget_post(engine, config, _keys().stored("mastodon", items[2].key),
                       platform="mastodon").removed == 1  # as an export shows it
    assert forget_post(engine, config, "https://nowhere.example/1").matched == 0
    assert _count(engine) == 1
    service._write(Batch(INSTANCE_B, posts=tuple(items)))  # forgotten posts stay gone
    assert _count(engine) == 1


def test_existing_rows_are_converted_once_and_resumably(engine: Engine, db_url: str) -> None:
    keep = _config(db_url, authors="keep")
    raw = [_post(n) for n in range(1, 8)]
    write_batch(engine, Enricher.from_config(keep, engine=engine).enrich_many(raw[:6]),
                deleted=[("mastodon", raw[6].key)], now=NOW)
    assert {k for _, k, _, _ in _rows(engine)} == {p.key for p in raw[:6]}
    # the first start under authors: hash converts keys and tombstones and drops links
    Enricher.from_config(_config(db_url), engine=engine)
    keys = _keys()
    stored = _rows(engine)
    assert {k for _, k, _, _ in stored} == {keys.stored("mastodon", p.key) for p in raw[:6]}
    assert all(url is None for _, _, url, _ in stored)
    assert _tombstones(engine) == {("mastodon", keys.stored("mastodon", raw[6].key))}
    Enricher.from_config(_config(db_url), engine=engine)  # again: nothing left to do
    assert _rows(engine) == stored
    service = Service(_config(db_url), engine)
    service._write(Batch(INSTANCE_A, posts=tuple(raw)))  # duplicates and a deleted post
    assert _count(engine) == 6


def test_with_a_recheck_links_are_kept_until_its_window_passes(
        engine: Engine, db_url: str) -> None:
    from monitor.privacy_jobs import retention_ages
    from monitor.store.retention import run_retention

    config = _config(db_url, recheck="1d")
    old = replace(_post(1), created_at=NOW - timedelta(days=3))
    Service(config, engine)._write(Batch(INSTANCE_A, posts=(old, _post(2))))
    assert sorted(url or "" for _, _, url, _ in _rows(engine)) == sorted(
        [old.url or "", _post(2).url or ""])
    assert retention_ages(config).urls == timedelta(days=1)
    assert run_retention(engine, retention_ages(config), datetime.now(UTC)) == {"urls": 1}
    assert sorted(url or "" for _, _, url, _ in _rows(engine)) == ["", _post(2).url or ""]


def test_rotation_rekeys_post_keys_tombstones_and_the_block_list(
        engine: Engine, db_url: str) -> None:
    config = _config(db_url, hash_secret="")  # the key lives in the database
    service = Service(config, engine)
    items = [_post(n, f"user{n % 3}") for n in range(1, 10)]
    service._write(Batch(INSTANCE_A, posts=tuple(items)))
    service._write(Batch(INSTANCE_A, deleted=(items[0].key,)))
    forget_author(engine, config, "mastodon", "user2@origin.example")
    before = _rows(engine)
    rotate_secret(engine, config, batch_size=2)
    after = _rows(engine)
    assert len(after) == len(before) == 5
    assert all(k.startswith("pk2:") for _, k, _, _ in after)
    assert not {k for _, k, _, _ in before} & {k for _, k, _, _ in after}
    assert all(k.startswith("pk2:") for _, k in _tombstones(engine))
    # the same posts come back: duplicates; the deleted one and user2's stay out
    again = Service(config, engine)
    again._write(Batch(INSTANCE_B, posts=tuple(items)))
    again._write(Batch(INSTANCE_B, posts=(_post(50, "user2"),)))
    assert _rows(engine) == after
    assert forget_post(engine, config, items[2].key).removed == 1


def test_forgotten_authors_are_not_stored_again(
        engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.enrich.pipeline.BLOCKLIST_REFRESH", 0.0)  # else within 1 s
    config = _config(db_url)
    service = Service(config, engine)
    service._write(Batch(INSTANCE_A, posts=(_post(1), _post(2, "bob"))))
    caplog.set_level(logging.INFO)
    result = forget_author(engine, config, "mastodon", "@alice@origin.example")
    assert result.removed == 1 and result.blocked
    with engine.connect() as conn:
        hashes = list(conn.execute(select(forgotten_authors.c.author_hash)).scalars())
    assert hashes and all("alice" not in h for h in hashes)
    # the running service sees the block list change: alice's later posts are dropped
    service._write(Batch(INSTANCE_A, posts=(_post(3), _post(4, "bob"), _post(5))))
    service._write(Batch(INSTANCE_B, edited=(_post(6),)))  # an edit of an unknown post too
    assert _count(engine) == 2
    service._write(Batch(INSTANCE_A))  # the drops are counted with the next batch
    runs = {r.kind: r for r in retention_runs(engine)}
    assert runs["forgotten"].last_changed == 3  # `monitor status`: forgotten, 3 dropped
    assert "forgotten" in {r.kind for r in oldest_rows(engine)}
    # an import (a fresh Enricher) drops them too
    fresh = Enricher.from_config(config, engine=engine)
    assert [p.author for p in fresh.enrich_many([_post(7), _post(8, "bob")])] == \
        [fresh.enrich(_post(8, "bob")).author]
    assert "alice" not in caplog.text


def test_forgotten_in_keep_mode_too(engine: Engine, db_url: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.enrich.pipeline.BLOCKLIST_REFRESH", 0.0)
    config = _config(db_url, authors="keep", hash_secret="")
    service = Service(config, engine)
    service._write(Batch(INSTANCE_A, posts=(_post(1),)))
    assert forget_author(engine, config, "mastodon", "alice@origin.example").removed == 1
    service._write(Batch(INSTANCE_A, posts=(_post(2), _post(3, "bob"))))
    assert [a for _, _, _, a in _rows(engine)] == ["bob@origin.example"]


def test_access_report_names_one_person_only(
        engine: Engine, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(db_url)
    service = Service(config, engine)
    bob = replace(_post(9, "bob"), tags=("notallmen",), text="bob #notallmen")
    service._write(Batch(INSTANCE_A, posts=(_post(1), _post(2), bob)))
    path = tmp_path / "c.yaml"
    path.write_text(f"database:\n  url: '{db_url}'\nprivacy:\n  hash_secret: '{SECRET}'\n",
                    encoding="utf-8")
    register_all(app)
    runner = CliRunner()
    caplog.set_level(logging.INFO)
    out = runner.invoke(app, ["access", "--author", "alice@origin.example", "--platform",
                              "mastodon", "--format", "json", "--config", str(path)])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["posts"] == 2 and report["tags"] == {"metoo": 2}
    assert report["first_post_at"] < report["last_post_at"]
    assert report["posts_with_text"] == 0 and report["posts_with_link"] == 0
    assert report["pseudonym"] and len(report["pseudonym"]) == 64
    assert "notallmen" not in out.output and "bob" not in out.output
    text = runner.invoke(app, ["access", "--author", "alice@origin.example", "--platform",
                               "mastodon", "--config", str(path)])
    assert text.exit_code == 0 and "posts stored: 2" in text.output
    assert "#metoo (2)" in text.output and report["pseudonym"] in text.output
    assert "alice" not in caplog.text and "report on one mastodon author" in caplog.text
    none = runner.invoke(app, ["access", "--author", "nobody", "--platform", "mastodon",
                               "--format", "json", "--config", str(path)])
    assert json.loads(none.stdout)["posts"] == 0
