"""One author key per database: kept in it or where the config names, fingerprinted, and
a process that cannot find it refuses (one line saying where it looked)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from monitor.config import Config, parse_config
from monitor.enrich.pipeline import Enricher
from monitor.enrich.privacy import SECRET_FILE, AuthorPolicy, fingerprint, resolve_key
from monitor.errors import ConfigError
from monitor.models import Post
from monitor.store.db import make_engine, migrate
from monitor.store.schema import author_keys
from monitor.store.write import write_batch

NOW = datetime(2026, 4, 1, tzinfo=UTC)


def _config(url: str, **privacy: object) -> Config:
    return parse_config({"database": {"url": url}, "privacy": privacy}, env={})


def _post(key: str = "k1", author: str = "alice@origin.example") -> Post:
    return Post(platform="mastodon", key=key, created_at=NOW, author=author,
                text="a post #metoo", tags=("metoo",))


def _rows(engine: Engine) -> list[tuple[int, str, str | None, str]]:
    k = author_keys.c
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(k.version, k.fingerprint, k.secret, k.state).order_by(k.version))]


def test_default_key_lives_in_the_database_whatever_the_directory(
        engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(db_url)
    monkeypatch.chdir(tmp_path)
    first = AuthorPolicy.for_database(config, engine).apply("mastodon", "alice")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the bug: another directory used to mean another key
    assert AuthorPolicy.for_database(config, engine).apply("mastodon", "alice") == first
    (version, fp, secret, state), = _rows(engine)
    assert (version, state) == (1, "active") and secret and fp == fingerprint(secret.encode())
    assert not list(tmp_path.rglob(SECRET_FILE))  # no file anywhere


def test_configured_key_is_fingerprinted_not_stored_and_then_required(
        engine: Engine, db_url: str) -> None:
    keyed = _config(db_url, hash_secret="s" * 40)
    pseudonym = AuthorPolicy.for_database(keyed, engine).apply("mastodon", "alice")
    (_, fp, secret, _), = _rows(engine)
    assert secret is None and fp == fingerprint(b"s" * 40)
    assert AuthorPolicy.for_database(keyed, engine).apply("mastodon", "alice") == pseudonym
    with pytest.raises(ConfigError) as missing:
        Enricher.from_config(_config(db_url), engine=engine)
    message = str(missing.value)
    assert "looked in privacy.hash_secret and privacy.hash_secret_file" in message
    assert fp in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"does not match|was keyed with fingerprint"):
        Enricher.from_config(_config(db_url, hash_secret="t" * 40), engine=engine)


def test_a_key_file_named_by_the_config_is_created_and_checked(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "keys" / "author_key"
    config = _config(db_url, hash_secret_file=str(path))
    before = AuthorPolicy.for_database(config, engine).apply("bluesky", "did:plc:x")
    assert path.exists() and (path.stat().st_mode & 0o077) == 0
    (_, fp, secret, _), = _rows(engine)
    assert secret is None and fp == fingerprint(path.read_text().strip().encode())
    assert AuthorPolicy.for_database(config, engine).apply("bluesky", "did:plc:x") == before
    path.write_text("f" * 64 + "\n")  # someone replaced the file
    with pytest.raises(ConfigError, match=str(path)):
        AuthorPolicy.for_database(config, engine)
    with pytest.raises(ConfigError, match="expected an absolute path"):
        _config(db_url, hash_secret_file="data/key")


def test_a_database_keeping_its_key_refuses_a_different_configured_one(
        engine: Engine, db_url: str) -> None:
    AuthorPolicy.for_database(_config(db_url), engine)
    with pytest.raises(ConfigError, match="keeps its own author key"):
        AuthorPolicy.for_database(_config(db_url, hash_secret="x" * 40), engine)


def test_hashed_authors_without_any_key_are_refused(engine: Engine, db_url: str) -> None:
    write_batch(engine, Enricher.from_config(_config(db_url, hash_secret="old" * 12))
                .enrich_many([_post()]))  # written by a process that never recorded its key
    with pytest.raises(ConfigError) as info:
        Enricher.from_config(_config(db_url), engine=engine)
    assert "holds hashed authors but no author key" in str(info.value)
    assert resolve_key(_config(db_url, hash_secret="old" * 12), engine) is not None


def test_legacy_secret_file_beside_sqlite_is_adopted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db/monitor.db"
    legacy = AuthorPolicy.from_config(_config(url), tmp_path / "db")  # the pre-0006 file
    engine = make_engine(url)
    migrate(engine)
    try:
        write_batch(engine, [Enricher(authors=legacy, store_text=False, languages=["en"],
                                      score_undetected=False).enrich(_post())])
        adopted = AuthorPolicy.for_database(_config(url), engine)
        assert adopted.apply("mastodon", "alice@origin.example") == legacy.apply(
            "mastodon", "alice@origin.example")
        (_, _, secret, _), = _rows(engine)
        assert secret == (tmp_path / "db" / SECRET_FILE).read_text().strip()
    finally:
        engine.dispose()


def test_keep_and_drop_need_no_key(engine: Engine, db_url: str) -> None:
    assert AuthorPolicy.for_database(_config(db_url, authors="keep"), engine).apply(
        "m", "bob") == "bob"
    assert AuthorPolicy.for_database(_config(db_url, authors="drop"), engine).apply(
        "m", "bob") is None
    assert _rows(engine) == []
