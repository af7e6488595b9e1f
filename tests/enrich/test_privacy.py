"""Author privacy: keep, keyed hash or drop; key files and their permissions.

The key per database (author_keys, fingerprints, refusals) is tested in
tests/enrich/test_author_key.py."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from pathlib import Path

import pytest

from monitor.config import Config, DatabaseSettings, PrivacySettings
from monitor.enrich.privacy import (
    SECRET_FILE,
    AuthorPolicy,
    legacy_secret_path,
    load_or_create_secret,
)
from monitor.errors import ConfigError


def _config(authors: str = "hash", secret: str = "", url: str = "sqlite:///x.db") -> Config:
    return Config(database=DatabaseSettings(url=url),
                  privacy=PrivacySettings(authors=authors, hash_secret=secret))


def test_secret_file_is_created_private_and_reused(tmp_path: Path) -> None:
    first = AuthorPolicy.from_config(_config(), tmp_path)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert len(secret) == 64
    second = AuthorPolicy.from_config(_config(), tmp_path)
    assert first.apply("mastodon", "alice@remote.example") == second.apply(
        "mastodon", "alice@remote.example")
    assert path.read_text().strip() == secret  # not regenerated


def test_pseudonym_is_hmac_of_platform_and_handle(tmp_path: Path) -> None:
    policy = AuthorPolicy.from_config(_config(secret="s3cret"), tmp_path)
    expected = hmac.new(b"s3cret", b"bluesky\x00alice.bsky.social", hashlib.sha256).hexdigest()
    assert policy.apply("bluesky", "alice.bsky.social") == expected
    assert not (tmp_path / SECRET_FILE).exists()  # a configured secret needs no file


def test_same_handle_on_two_platforms_is_two_people(tmp_path: Path) -> None:
    policy = AuthorPolicy.from_config(_config(), tmp_path)
    assert policy.apply("mastodon", "alice") != policy.apply("bluesky", "alice")


def test_different_secrets_give_unlinkable_pseudonyms(tmp_path: Path) -> None:
    a = AuthorPolicy.from_config(_config(), tmp_path / "a")
    b = AuthorPolicy.from_config(_config(), tmp_path / "b")
    assert a.apply("mastodon", "alice") != b.apply("mastodon", "alice")


def test_keep_and_drop(tmp_path: Path) -> None:
    assert AuthorPolicy.from_config(_config("keep"), tmp_path).apply("m", "bob") == "bob"
    assert AuthorPolicy.from_config(_config("drop"), tmp_path).apply("m", "bob") is None
    assert AuthorPolicy.from_config(_config("hash"), tmp_path).apply("m", None) is None


def test_keep_and_drop_do_not_create_a_secret(tmp_path: Path) -> None:
    AuthorPolicy.from_config(_config("keep"), tmp_path)
    AuthorPolicy.from_config(_config("drop"), tmp_path)
    assert not (tmp_path / SECRET_FILE).exists()


def test_truncated_secret_file_is_an_error_not_a_silent_new_secret(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_text("")
    with pytest.raises(ConfigError) as info:
        AuthorPolicy.from_config(_config(), tmp_path)
    assert str(tmp_path / SECRET_FILE) in str(info.value)
    assert "privacy.hash_secret_file" in str(info.value)


def test_secret_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o644)
    load_or_create_secret(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_first_start_agrees_on_one_secret(tmp_path: Path) -> None:
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(load_or_create_secret(tmp_path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert sorted(os.listdir(tmp_path)) == [SECRET_FILE]  # no temp files left behind


def test_legacy_secret_path_is_beside_the_sqlite_file_and_never_the_working_dir(
        tmp_path: Path) -> None:
    assert legacy_secret_path(f"sqlite:///{tmp_path}/db/monitor.db") == \
        tmp_path / "db" / SECRET_FILE
    assert legacy_secret_path("sqlite://") is None
    assert legacy_secret_path("postgresql+psycopg://u:p@db/monitor") is None


def test_repr_never_shows_the_key() -> None:
    assert "s3cret" not in repr(AuthorPolicy("hash", b"s3cret"))


def test_prepared_hmac_equals_the_standard_library() -> None:
    # hmac_sha256_hex hashes each key's padding once; the pseudonyms must not change
    from monitor.enrich.privacy import hmac_sha256_hex

    for key in (b"", b"k", b"x" * 64, b"y" * 65, bytes(range(200))):
        for message in (b"", b"mastodon\x00alice@example.social", "é\x00😀".encode() * 40):
            assert hmac_sha256_hex(key, message) == hmac.new(key, message,
                                                             hashlib.sha256).hexdigest()
