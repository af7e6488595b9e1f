"""A lone surrogate or NUL in a post's key, URL or tags is stored, not a failed batch
(found by tests/fuzz: a JSON "\\ud800" escape in a Misskey note id broke the whole write)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from monitor.config import Config, DatabaseSettings, PrivacySettings
from monitor.enrich.pipeline import Enricher
from monitor.models import Post
from monitor.store.schema import posts
from monitor.store.write import write_batch


def test_unstorable_characters_in_key_url_and_tags(engine: Engine, tmp_path: Path) -> None:
    config = Config(database=DatabaseSettings(url=str(engine.url)),
                    privacy=PrivacySettings(hash_secret="s" * 32))
    enricher = Enricher.from_config(config)
    odd = Post(platform="misskey", key="https://m.example/notes/a\ud800b\x00",
               created_at=datetime(2024, 1, 1, tzinfo=UTC), url="https://m.example/\udfff",
               text="hello #metoo", tags=("x\ud800", "\x00"))
    fine = Post(platform="misskey", key="k2", created_at=datetime(2024, 1, 1, tzinfo=UTC),
                text="hello #metoo")
    result = write_batch(engine, enricher.enrich_many([odd, fine]))
    assert result.inserted == 2
    with engine.connect() as conn:
        keys = sorted(conn.execute(select(posts.c.key)).scalars())
    assert keys == ["https://m.example/notes/a\ufffdb", "k2"]
