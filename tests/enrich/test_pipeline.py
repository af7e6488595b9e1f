"""Enricher: a platform Post in, the record the store keeps out (and really stored)."""

from __future__ import annotations

import logging
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from monitor.config import Config, DatabaseSettings, PrivacySettings, SentimentSettings
from monitor.enrich.pipeline import Enricher
from monitor.enrich.privacy import SECRET_FILE
from monitor.models import Post
from monitor.store.db import make_engine, migrate
from monitor.store.schema import post_tags, posts, tag_buckets
from monitor.store.write import write_batch

WHEN = datetime(2025, 11, 20, 14, 3, 11, tzinfo=UTC)

MASTODON_HTML = (
    '<p>Still listening. <a href="https://mastodon.example/tags/MeToo" class="mention hashtag" '
    'rel="tag">#<span>MeToo</span></a></p>'
)


def _config(**privacy: object) -> Config:
    return Config(privacy=PrivacySettings(**privacy))


def _mastodon(**changes: object) -> Post:
    fields: dict[str, object] = {
        "platform": "mastodon",
        "key": "https://remote.example/users/alice/statuses/113512300000000000",
        "created_at": WHEN,
        "url": "https://remote.example/@alice/113512300000000000",
        "author": "alice@remote.example",
        "html": MASTODON_HTML,
        "lang": "en",
        "tags": ("metoo",),
    }
    fields.update(changes)
    return Post(**fields)  # type: ignore[arg-type]


def test_mastodon_status_with_cautious_defaults(tmp_path: Path) -> None:
    scored = Enricher.from_config(Config(), secret_dir=tmp_path).enrich(_mastodon())
    assert scored.text is None  # privacy.store_text defaults to false
    assert scored.author is not None and re.fullmatch(r"[0-9a-f]{64}", scored.author)
    assert "alice" not in scored.author
    assert scored.tags == ("metoo",)
    assert scored.lang == "en"
    assert scored.sentiment is not None  # scored from the text before it was dropped
    assert scored.key == _mastodon().key and scored.created_at == WHEN
    assert stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600


def test_store_text_keeps_plain_text_never_html(tmp_path: Path) -> None:
    html = "<p>I am so angry &amp; sad &lt;script&gt;x()&lt;/script&gt;</p><script>evil()</script>"
    scored = Enricher.from_config(_config(store_text=True), secret_dir=tmp_path).enrich(
        _mastodon(html=html))
    assert scored.text == "I am so angry & sad <script>x()</script>"
    assert scored.sentiment is not None and scored.sentiment.compound < 0


def test_tags_from_metadata_and_text_merge_without_repeats(tmp_path: Path) -> None:
    post = _mastodon(html="<p>#MeToo. #HowIWillChange #YoTambién https://x.example/#frag</p>",
                     tags=("MeToo", "NotAllMen"))
    scored = Enricher.from_config(Config(), secret_dir=tmp_path).enrich(post)
    assert scored.tags == ("metoo", "notallmen", "howiwillchange", "yotambién")


def test_platform_language_wins_and_is_normalised(tmp_path: Path) -> None:
    enricher = Enricher.from_config(Config(), secret_dir=tmp_path)
    assert enricher.enrich(_mastodon(lang="en-US")).lang == "en"
    # the platform says German: not scored, even though the words are English
    german = enricher.enrich(_mastodon(lang="de"))
    assert german.lang == "de" and german.sentiment is None


def test_non_english_post_is_detected_and_left_unscored(tmp_path: Path) -> None:
    post = Post(platform="bluesky", key="at://did:plc:x/app.bsky.feed.post/1", created_at=WHEN,
                text="Es ist unglaublich, wie wenig sich verändert hat. Ich bin wütend. #MeToo")
    scored = Enricher.from_config(Config(), secret_dir=tmp_path).enrich(post)
    assert scored.lang == "de"
    assert scored.sentiment is None
    assert scored.tags == ("metoo",)


def test_configured_languages_are_scored(tmp_path: Path) -> None:
    config = Config(sentiment=SentimentSettings(languages=["en", "DE-at"]))
    scored = Enricher.from_config(config, secret_dir=tmp_path).enrich(_mastodon(lang="de"))
    assert scored.sentiment is not None


def test_emoji_only_post_is_scored_but_a_bare_link_is_not(tmp_path: Path) -> None:
    enricher = Enricher.from_config(Config(), secret_dir=tmp_path)
    angry = enricher.enrich(_mastodon(html="<p>😢😠 #MeToo</p>", lang=None))
    assert angry.lang is None
    assert angry.sentiment is not None and angry.sentiment.compound < 0
    link = enricher.enrich(_mastodon(html='<p><a href="https://x.example/a">https://x.example/a'
                                          "</a> #MeToo</p>", lang=None))
    assert link.lang is None and link.sentiment is None


def test_score_undetected_scores_what_cannot_be_told(tmp_path: Path) -> None:
    post = _mastodon(html="<p>Siya na!</p>", lang=None)
    assert Enricher.from_config(Config(), secret_dir=tmp_path).enrich(post).sentiment is None
    config = Config(sentiment=SentimentSettings(score_undetected=True))
    scored = Enricher.from_config(config, secret_dir=tmp_path).enrich(post)
    assert scored.lang is None and scored.sentiment is not None


def test_post_without_any_text(tmp_path: Path) -> None:
    scored = Enricher.from_config(_config(store_text=True), secret_dir=tmp_path).enrich(
        _mastodon(html=None, text=None, lang=None, tags=("MeToo",)))
    assert scored.text is None and scored.lang is None and scored.sentiment is None
    assert scored.tags == ("metoo",)


def test_nul_and_lone_surrogates_are_made_storable(tmp_path: Path) -> None:
    enricher = Enricher.from_config(_config(store_text=True, authors="keep"), secret_dir=tmp_path)
    html_post = enricher.enrich(_mastodon(html="<p>so \ud800 happy\x00 today</p>", author="a\x00b"))
    assert html_post.text == "so \ufffd happy today"
    assert html_post.author == "ab"
    assert html_post.sentiment is not None and html_post.sentiment.compound > 0
    text_post = enricher.enrich(_mastodon(html=None, text="fine\x00 \udfff"))
    assert text_post.text == "fine \ufffd"


def test_a_post_that_cannot_be_read_is_kept_with_platform_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enricher = Enricher.from_config(_config(store_text=True), secret_dir=tmp_path)
    broken = _mastodon(html=12345, lang="en-GB", tags=("MeToo",))  # a source bug, not a str
    scored = enricher.enrich_many([broken, _mastodon(key="fine")])
    assert [s.key for s in scored] == [broken.key, "fine"]
    assert scored[0].tags == ("metoo",) and scored[0].lang == "en"
    assert scored[0].text is None and scored[0].sentiment is None
    assert scored[1].sentiment is not None
    assert "could not analyse the text of a mastodon post (AttributeError)" in caplog.text
    assert "alice" not in caplog.text
    worse = _mastodon(html=None, text=b"bytes", tags=(None, "MeToo"), lang=7)  # source bugs
    assert enricher.enrich(worse).tags == () and enricher.enrich(worse).lang is None


def test_author_hash_is_stable_across_enrichers_and_restarts(tmp_path: Path) -> None:
    first = Enricher.from_config(Config(), secret_dir=tmp_path).enrich(_mastodon())
    second = Enricher.from_config(Config(), secret_dir=tmp_path).enrich(_mastodon())
    assert first.author == second.author


def test_the_key_lives_in_the_database_not_beside_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db/monitor.db"
    config = Config(database=DatabaseSettings(url=url))
    engine = make_engine(url)
    migrate(engine)
    first = Enricher.from_config(config, engine=engine).enrich(_mastodon())
    again = Enricher.from_config(config, engine=engine).enrich(_mastodon())
    engine.dispose()
    assert first.author == again.author
    assert not (tmp_path / "db" / SECRET_FILE).exists()


def test_keep_and_drop_authors(tmp_path: Path) -> None:
    keep = Enricher.from_config(_config(authors="keep"), secret_dir=tmp_path)
    drop = Enricher.from_config(_config(authors="drop"), secret_dir=tmp_path)
    assert keep.enrich(_mastodon()).author == "alice@remote.example"
    assert drop.enrich(_mastodon()).author is None


def test_enrich_many_keeps_order_and_never_logs_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    enricher = Enricher.from_config(_config(hash_secret="topsecret-value"), secret_dir=tmp_path)
    items = [_mastodon(key=f"k{i}", html=f"<p>secret words {i} #MeToo</p>") for i in range(50)]
    scored = enricher.enrich_many(items)
    assert [s.key for s in scored] == [f"k{i}" for i in range(50)]
    logged = caplog.text + repr(enricher)
    for forbidden in ("secret words", "alice", "topsecret-value"):
        assert forbidden not in logged


def test_batch_and_single_post_enrichment_agree(tmp_path: Path) -> None:
    from benchmarks.ingest import generate  # the realistic mixed corpus of the benchmark

    enricher = Enricher.from_config(_config(store_text=True), secret_dir=tmp_path)
    items = [sample.post for sample in generate(600, seed=7)]
    items += [_mastodon(key="x1", html="<p>😢😠</p>", lang=None),
              _mastodon(key="x2", html=None, text=None), _mastodon(key="x3", lang="de")]
    assert enricher.enrich_many(items) == [enricher.enrich(post) for post in items]


def test_threads_sharing_one_enricher_get_the_same_results(tmp_path: Path) -> None:
    enricher = Enricher.from_config(_config(store_text=True), secret_dir=tmp_path)
    items = [
        _mastodon(key=f"k{i}", lang=None, html=f"<p>post {i}<br>I am {word} #Tag{i % 7}</p>")
        for i, word in enumerate(["happy", "furious", "tired", "hopeful"] * 300)
    ]
    expected = enricher.enrich_many(items)
    with ThreadPoolExecutor(max_workers=4) as pool:
        chunks = list(pool.map(enricher.enrich_many, [items[i::4] for i in range(4)]))
    together = {s.key: s for chunk in chunks for s in chunk}
    assert [together[s.key] for s in expected] == expected


def test_what_reaches_the_database(engine: Engine, tmp_path: Path) -> None:
    enricher = Enricher.from_config(Config(), secret_dir=tmp_path)
    items = [
        _mastodon(),
        _mastodon(key="k2", html="<p>Ich bin wütend und traurig. #MeToo #NotAllMen</p>",
                  lang=None, tags=()),
    ]
    result = write_batch(engine, enricher.enrich_many(items))
    assert result.inserted == 2
    with engine.connect() as conn:
        rows = conn.execute(select(posts).order_by(posts.c.id)).mappings().all()
        tags = sorted(conn.execute(select(post_tags.c.tag)).scalars())
        buckets = {r.tag: r for r in conn.execute(select(tag_buckets)).mappings()}
    assert [r["text"] for r in rows] == [None, None]
    assert all(r["author"] and "alice" not in r["author"] for r in rows)
    assert [r["lang"] for r in rows] == ["en", "de"]
    assert rows[0]["compound"] is not None and rows[1]["compound"] is None
    assert tags == ["metoo", "metoo", "notallmen"]
    assert buckets["metoo"]["posts"] == 2 and buckets["metoo"]["scored"] == 1


def test_odd_characters_are_stored_on_every_database(engine: Engine, tmp_path: Path) -> None:
    enricher = Enricher.from_config(_config(store_text=True), secret_dir=tmp_path)
    post = _mastodon(html="<p>NUL\x00 and \ud83d alone, 😢 and #ÉTÉ</p>")
    write_batch(engine, enricher.enrich_many([post]))
    with engine.connect() as conn:
        stored = conn.execute(select(posts.c.text)).scalar_one()
        tags = sorted(conn.execute(select(post_tags.c.tag)).scalars())
    assert stored == "NUL and \ufffd alone, 😢 and #ÉTÉ"
    assert tags == ["metoo", "été"]
