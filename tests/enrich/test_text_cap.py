"""Issue 11: post text is capped at a documented size for scoring and storage; the first
TEXT_MAX_CHARS characters are kept and the post is marked as truncated."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.enrich.pipeline import TEXT_MAX_CHARS, Enricher
from monitor.models import Post
from monitor.store.posts import recent_posts
from monitor.store.write import write_batch

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _enricher() -> Enricher:
    return Enricher.from_config(parse_config({"privacy": {"store_text": True,
                                                          "hash_secret": "s"}}, env={}))


def test_a_huge_post_keeps_its_first_characters_and_is_marked(engine: Engine) -> None:
    huge = "#metoo I believe her. " + "word " * 1_300_000  # 6.5 MB
    html = "<p>#metoo listen</p>" + "<p>" + "more " * 400_000 + "</p>"
    normal = "#metoo a normal post"
    posts = [Post("mastodon", "k1", NOW, text=huge, lang="en"),
             Post("mastodon", "k2", NOW, html=html, lang="en"),
             Post("mastodon", "k3", NOW, text=normal, lang="en")]
    started = time.monotonic()
    scored = _enricher().enrich_many(posts)
    assert time.monotonic() - started < 5
    assert [len(p.text or "") for p in scored] == [TEXT_MAX_CHARS, TEXT_MAX_CHARS, len(normal)]
    assert scored[0].text == huge[:TEXT_MAX_CHARS]
    assert [p.text_truncated for p in scored] == [True, True, False]
    assert scored[0].tags == ("metoo",) and scored[0].sentiment is not None
    # one by one gives the same
    assert _enricher().enrich(posts[0]) == scored[0]
    write_batch(engine, scored, now=NOW)
    stored = {p.key: p for p in recent_posts(engine, "metoo", 10)}
    assert len(stored["k1"].text or "") == TEXT_MAX_CHARS
    assert (stored["k1"].text_truncated, stored["k2"].text_truncated,
            stored["k3"].text_truncated) == (True, True, False)


def test_the_cap_is_documented() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"{TEXT_MAX_CHARS:,}" in readme and "text_truncated" in readme
