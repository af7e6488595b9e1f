"""Follow-ups to issue 12 on both databases: the conversion to pseudonymous keys
runs once (recorded in ``privacy_state``) and resumes when killed, an import counts
the posts it drops for forgotten authors, and ``forget --post`` refuses a Bluesky
link that names a handle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from typer.testing import CliRunner

from monitor.commands import app, register_all
from monitor.config import Config, parse_config
from monitor.enrich import post_keys_convert
from monitor.enrich.erasure import forget_author, forget_post
from monitor.enrich.pipeline import Enricher
from monitor.enrich.post_keys import PostKeys, is_bluesky_handle_ref
from monitor.enrich.post_keys_convert import STEP, pseudonymise_existing
from monitor.enrich.privacy import AuthorKey
from monitor.errors import InputError
from monitor.importer import import_file
from monitor.models import Post
from monitor.store.kept import retention_runs
from monitor.store.pseudonyms import step_done
from monitor.store.schema import forgotten_authors, posts
from monitor.store.write import write_batch

SECRET = "k" * 32
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _config(url: str, **privacy: object) -> Config:
    return parse_config({"database": {"url": url},
                         "privacy": {"hash_secret": SECRET, **privacy}}, env={})


def _post(n: int, author: str = "alice") -> Post:
    return Post(platform="mastodon", key=f"https://origin.example/users/{author}/statuses/{n}",
                url=f"https://origin.example/@{author}/{n}", author=f"{author}@origin.example",
                created_at=NOW + timedelta(seconds=n), text=f"post {n} #metoo", tags=("metoo",))


def _keys(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(posts.c.key)).scalars())


@contextmanager
def _posts_scans(engine: Engine) -> Iterator[list[str]]:
    """The statements that read the whole of ``posts`` for platform keys."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM posts" in statement and "NOT LIKE" in statement.upper():
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def _write_keep(engine: Engine, db_url: str, items: list[Post]) -> None:
    keep = _config(db_url, authors="keep")
    write_batch(engine, Enricher.from_config(keep, engine=engine).enrich_many(items), now=NOW)


def test_conversion_is_recorded_and_later_starts_skip_the_scan(
        engine: Engine, db_url: str) -> None:
    _write_keep(engine, db_url, [_post(n) for n in range(1, 6)])
    assert step_done(engine, STEP) is None
    with _posts_scans(engine) as scans:
        Enricher.from_config(_config(db_url), engine=engine)
    assert scans  # the first start converts
    assert step_done(engine, STEP) == "keys+urls"
    keys = PostKeys(AuthorKey((SECRET.encode(),)))
    assert _keys(engine) == {keys.stored("mastodon", _post(n).key) for n in range(1, 6)}
    with _posts_scans(engine) as scans:
        Enricher.from_config(_config(db_url), engine=engine)  # a restart, an import
        Enricher.from_config(_config(db_url), engine=engine)
    assert scans == []
    # with the re-check links are kept from now on: a later start without it drops them
    Enricher.from_config(_config(db_url, recheck="1d"), engine=engine)
    assert step_done(engine, STEP) == "keys"
    with _posts_scans(engine) as scans:
        Enricher.from_config(_config(db_url), engine=engine)
    assert scans and step_done(engine, STEP) == "keys+urls"
    # a start under authors: keep writes platform keys again: the record goes, and the
    # next start under hash converts what it wrote
    _write_keep(engine, db_url, [_post(9)])
    assert step_done(engine, STEP) is None
    Enricher.from_config(_config(db_url), engine=engine)
    assert keys.stored("mastodon", _post(9).key) in _keys(engine)
    assert all(k.startswith("pk1:") for k in _keys(engine))


def test_a_conversion_killed_midway_resumes_and_is_recorded_only_at_the_end(
        engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_keep(engine, db_url, [_post(n) for n in range(1, 8)])
    keys = PostKeys(AuthorKey((SECRET.encode(),)))
    calls = 0

    def dying(platform: str, key: str) -> str:
        nonlocal calls
        calls += 1
        if calls > 4:  # killed in the second batch, after the first one committed
            raise KeyboardInterrupt
        return keys.stored(platform, key)

    class Dying(PostKeys):
        def stored(self, platform: str, key: str) -> str:
            return dying(platform, key)

    with pytest.raises(KeyboardInterrupt):
        pseudonymise_existing(engine, Dying(AuthorKey((SECRET.encode(),))), drop_urls=True,
                              batch=3)
    half = _keys(engine)
    assert 0 < sum(k.startswith("pk1:") for k in half) < 7
    assert step_done(engine, STEP) is None  # not recorded: the next start goes on
    monkeypatch.setattr(post_keys_convert, "BATCH", 3)
    Enricher.from_config(_config(db_url), engine=engine)
    assert _keys(engine) == {keys.stored("mastodon", _post(n).key) for n in range(1, 8)}
    assert step_done(engine, STEP) == "keys+urls"


def _jsonl(path: Path, items: list[Post]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for p in items:
            handle.write(json.dumps({"key": p.key, "created_at": p.created_at.isoformat(),
                                     "text": p.text, "author": p.author,
                                     "tags": list(p.tags)}) + "\n")
    return path


@pytest.mark.parametrize("workers", [0, 2])
def test_an_import_counts_the_posts_it_drops_for_forgotten_authors(
        engine: Engine, db_url: str, tmp_path: Path, workers: int) -> None:
    config = _config(db_url)
    write_batch(engine, Enricher.from_config(config, engine=engine).enrich_many([_post(1)]),
                now=NOW)
    assert forget_author(engine, config, "mastodon", "alice@origin.example").removed == 1
    items = [_post(n, "alice" if n % 3 else "bob") for n in range(2, 14)]
    data = _jsonl(tmp_path / "posts.jsonl", items)
    summary = import_file(engine, config, data, "mastodon", batch_size=4, workers=workers)
    bob = sum(p.author == "bob@origin.example" for p in items)
    assert summary.stored == bob
    with engine.connect() as conn:
        dropped = conn.execute(select(func.sum(forgotten_authors.c.dropped))).scalar_one()
    assert dropped == len(items) - bob  # 8 of alice's
    runs = {r.kind: r for r in retention_runs(engine)}
    assert runs["forgotten"].last_changed == len(items) - bob  # `monitor status` row


@pytest.mark.parametrize("ref", [
    "https://bsky.app/profile/alice.bsky.social/post/3kabc",
    "bsky.app/profile/alice.bsky.social/post/3kabc",
    "at://alice.bsky.social/app.bsky.feed.post/3kabc",
])
def test_a_bluesky_link_with_a_handle_is_refused(ref: str) -> None:
    assert is_bluesky_handle_ref(ref)


def test_bluesky_links_with_a_did_are_not_refused() -> None:
    assert not is_bluesky_handle_ref("https://bsky.app/profile/did:plc:abc/post/3kabc")
    assert not is_bluesky_handle_ref("at://did:plc:abc/app.bsky.feed.post/3kabc")
    assert not is_bluesky_handle_ref("https://origin.example/@alice/1")


def test_forget_post_with_a_bluesky_handle_link_says_what_to_pass(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = _config(db_url)
    bsky = Post(platform="bluesky", key="at://did:plc:alice/app.bsky.feed.post/3kabc",
                url="https://bsky.app/profile/did:plc:alice/post/3kabc", author="did:plc:alice",
                created_at=NOW, text="hi #metoo", tags=("metoo",))
    write_batch(engine, Enricher.from_config(config, engine=engine).enrich_many([bsky]), now=NOW)
    link = "https://bsky.app/profile/alice.bsky.social/post/3kabc"
    with pytest.raises(InputError, match="at:// uri") as caught:
        forget_post(engine, config, link)
    assert "alice" not in str(caught.value) and "\n" not in str(caught.value)
    # the CLI: one error line, a failing exit code, nothing removed
    conf = tmp_path / "monitor.yaml"
    conf.write_text(f"database:\n  url: '{db_url}'\nprivacy:\n  hash_secret: '{SECRET}'\n",
                    encoding="utf-8")
    register_all(app)
    result = CliRunner().invoke(app, ["forget", "--post", link, "--config", str(conf)])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "at:// uri" in lines[0] and "DID" in lines[0], result.output
    assert "alice" not in result.output
    # the DID link works
    assert forget_post(engine, config, bsky.url or "").removed == 1
