"""Erasure on request (monitor forget) and key rotation (monitor rotate-secret), on both
databases: what is removed, what stays, what is logged, and a rotation killed mid-way."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from monitor.commands import app, register_all
from monitor.config import Config, parse_config
from monitor.enrich.erasure import forget_author, forget_post, rotate_secret
from monitor.enrich.pipeline import Enricher
from monitor.enrich.privacy import resolve_key
from monitor.errors import ConfigError
from monitor.models import Post
from monitor.store.schema import author_keys, deletions, post_tags, posts, tag_buckets
from monitor.store.write import write_batch

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
REPO = Path(__file__).resolve().parents[2]


def _config(url: str, **privacy: object) -> Config:
    return parse_config({"database": {"url": url}, "privacy": privacy}, env={})


def _post(n: int, author: str, platform: str = "mastodon") -> Post:
    return Post(platform=platform, key=f"https://origin.example/users/{author}/statuses/{n}",
                url=f"https://origin.example/@{author}/{n}", created_at=NOW + timedelta(
                    seconds=n), author=author, text=f"post {n} #metoo", tags=("metoo", "x"))


def _seed(engine: Engine, config: Config, authors: dict[str, int]) -> None:
    enricher = Enricher.from_config(config, engine=engine)
    items, n = [], 0
    for author, count in authors.items():
        for _ in range(count):
            n += 1
            items.append(_post(n, author))
    write_batch(engine, enricher.enrich_many(items))


def _count(engine: Engine, stmt: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())  # type: ignore[call-overload]


def _volume(engine: Engine) -> int:
    return _count(engine, select(func.coalesce(func.sum(tag_buckets.c.posts), 0))
                  .where(tag_buckets.c.tag == "metoo"))


def _distinct(engine: Engine) -> int:
    return _count(engine, select(func.count(func.distinct(posts.c.author))))


def test_forget_author_removes_posts_tags_and_keeps_counts(
        engine: Engine, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    config = _config(db_url)
    _seed(engine, config, {"alice": 3, "bob": 2})
    caplog.set_level(logging.INFO)
    result = forget_author(engine, config, "mastodon", "@alice")
    assert (result.matched, result.removed, result.recounted) == (3, 3, False)
    assert _count(engine, select(func.count()).select_from(posts)) == 2
    assert _count(engine, select(func.count()).select_from(post_tags)) == 4
    assert _count(engine, select(func.count()).select_from(deletions)) == 3  # not re-stored
    assert _volume(engine) == 5  # privacy.deletions: keep — the counts seen then stay
    assert "alice" not in caplog.text and "3 posts removed of one mastodon author" in caplog.text
    # the same person on another platform is another person
    assert forget_author(engine, config, "bluesky", "bob").matched == 0


def test_forget_author_recounts_under_privacy_deletions_recount(
        engine: Engine, db_url: str) -> None:
    config = _config(db_url, deletions="recount")
    _seed(engine, config, {"alice": 3, "bob": 2})
    assert forget_author(engine, config, "mastodon", "alice").recounted
    assert _volume(engine) == 2


def test_keep_posts_anonymous_only_unlinks(engine: Engine, db_url: str) -> None:
    config = _config(db_url)
    _seed(engine, config, {"alice": 2, "bob": 1})
    result = forget_author(engine, config, "mastodon", "alice", keep_posts=True)
    assert (result.matched, result.unlinked, result.removed) == (2, 2, 0)
    assert _count(engine, select(func.count()).select_from(posts)) == 3
    assert _count(engine, select(func.count()).where(posts.c.author.is_(None))) == 2


def test_forget_works_in_keep_mode_and_finds_handles_stored_earlier(
        engine: Engine, db_url: str) -> None:
    keep = _config(db_url, authors="keep")
    _seed(engine, keep, {"alice": 2})
    _seed(engine, _config(db_url), {"carol": 1})  # later hashed: forget finds both forms
    write_batch(engine, Enricher.from_config(_config(db_url), engine=engine)
                .enrich_many([_post(50, "alice")]))
    assert forget_author(engine, keep, "mastodon", "alice").removed == 3


def test_forget_one_post_by_key_or_url(engine: Engine, db_url: str) -> None:
    config = _config(db_url)
    _seed(engine, config, {"alice": 3})
    first, second = _post(1, "alice"), _post(2, "alice")
    assert forget_post(engine, config, first.key).removed == 1
    assert forget_post(engine, config, second.url or "").removed == 1
    assert forget_post(engine, config, "https://nowhere.example/1").matched == 0
    assert _count(engine, select(func.count()).select_from(posts)) == 1


def test_forget_command_prints_counts_never_the_handle(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    _seed(engine, _config(db_url), {"alice": 2})
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"database:\n  url: '{db_url}'\n", encoding="utf-8")
    register_all(app)
    runner = CliRunner()
    out = runner.invoke(app, ["forget", "--author", "alice", "--platform", "mastodon",
                              "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert "removed 2 posts of this mastodon author" in out.output
    assert "still counted" in out.output and "alice" not in out.output
    bad = runner.invoke(app, ["forget", "--author", "alice", "--config", str(cfg)])
    assert bad.exit_code == 2 and "--platform" in bad.output


def test_rotation_keeps_distinct_counts_and_future_posts_join_their_author(
        engine: Engine, db_url: str) -> None:
    config = _config(db_url)
    _seed(engine, config, {f"user{i}": 1 + i % 3 for i in range(30)})
    before_distinct, before_key = _distinct(engine), resolve_key(config, engine)
    result = rotate_secret(engine, config, batch_size=7)
    assert result.rekeyed == _count(engine, select(func.count()).select_from(posts))
    assert _distinct(engine) == before_distinct
    after_key = resolve_key(config, engine)
    assert after_key is not None and before_key is not None
    assert after_key.fingerprint != before_key.fingerprint
    # a new post of user1 gets the pseudonym user1's stored posts now carry
    write_batch(engine, Enricher.from_config(config, engine=engine).enrich_many(
        [_post(999, "user1")]))
    assert _distinct(engine) == before_distinct
    assert forget_author(engine, config, "mastodon", "user1").removed == 3
    with engine.connect() as conn:
        states = [r.state for r in conn.execute(select(author_keys.c.state)
                                                .order_by(author_keys.c.version))]
    assert states == ["retired", "active"]


def test_rotation_of_an_external_key_needs_a_new_key_file(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = _config(db_url, hash_secret="e" * 40)
    _seed(engine, config, {"a": 2, "b": 1})
    with pytest.raises(ConfigError, match="--new-secret-file"):
        rotate_secret(engine, config)
    new_file = tmp_path / "new_key"
    result = rotate_secret(engine, config, new_secret_file=new_file)
    assert result.external == new_file and new_file.exists()
    with pytest.raises(ConfigError, match="fingerprint"):
        resolve_key(config, engine)  # the old configured key is refused now
    moved = _config(db_url, hash_secret_file=str(new_file))
    assert resolve_key(moved, engine) is not None
    assert _distinct(engine) == 2


_KILLABLE = textwrap.dedent("""
    import sys, time
    from monitor.config import parse_config
    from monitor.enrich.erasure import rotate_secret
    from monitor.store.db import make_engine
    url = sys.argv[1]
    config = parse_config({"database": {"url": url}}, env={})
    engine = make_engine(url)
    def progress(last, done):
        print(done, flush=True)
        time.sleep(0.2)  # slow enough to be killed between batches
    rotate_secret(engine, config, batch_size=10, on_batch=progress)
""")


def test_rotation_killed_midway_resumes_exactly(engine: Engine, db_url: str) -> None:
    config = _config(db_url)
    _seed(engine, config, {f"user{i}": 2 for i in range(60)})
    total = _count(engine, select(func.count()).select_from(posts))
    before = _distinct(engine)
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, db_url], cwd=REPO,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    for line in proc.stdout:
        if int(line) >= 30:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with pytest.raises(ConfigError, match="rotation is unfinished"):
        Enricher.from_config(config, engine=engine)  # nothing writes mid-rotation
    with engine.connect() as conn:
        through = conn.execute(select(author_keys.c.rotated_through)
                               .where(author_keys.c.state == "rotating")).scalar_one()
    assert 30 <= through < total
    result = rotate_secret(engine, config, batch_size=25)
    assert result.resumed and 0 < result.rekeyed < total
    assert _distinct(engine) == before
    with engine.connect() as conn:  # post keys too, each exactly once (issue 12)
        keys = list(conn.execute(select(posts.c.key)).scalars())
    assert len(set(keys)) == total and all(k.startswith("pk2:") for k in keys)
    # every post re-keyed exactly once: a new post of user5 joins user5's pseudonym
    write_batch(engine, Enricher.from_config(config, engine=engine).enrich_many(
        [_post(5000, "user5")]))
    assert _distinct(engine) == before
