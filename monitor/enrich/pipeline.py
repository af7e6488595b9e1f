"""Post → ScoredPost: plain text, tags, language, sentiment, privacy.

One :class:`Enricher` per process is enough (it holds no per-post state and
is safe to share between threads); the language model and the VADER analyzer
behind it are process-wide singletons.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.config import Config
from monitor.enrich.language import MIN_LETTERS, detect, normalise_lang
from monitor.enrich.post_keys import PostKeys
from monitor.enrich.privacy import AuthorKey, AuthorPolicy, resolve_key
from monitor.enrich.sentiment import analyzer
from monitor.enrich.text import extract_hashtags, html_to_text, merge_tags
from monitor.models import Batch, Post, ScoredPost, Sentiment

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["Enricher"]

log = logging.getLogger(__name__)

_SURROGATE = re.compile("[\ud800-\udfff]")

# VADER's "but" rule is quadratic in the number of words: score at most this
# much (ten times any social post) so a hostile or mis-imported text stays cheap.
SENTIMENT_MAX_CHARS = 20_000
# A post's text is capped at this many characters, for scoring and for storage
# (README "Limits"): the first TEXT_MAX_CHARS are kept and the post is marked
# ``text_truncated``. The longest posts anywhere are far shorter (Mastodon 500 by
# default, Bluesky 300 graphemes, Reddit 40,000 is the rare exception); a 6.5 MB
# post was stored whole and served as 6.5 MB of JSON.
TEXT_MAX_CHARS = SENTIMENT_MAX_CHARS
# how often (seconds) a running service looks for authors `monitor forget` added: their
# posts may still be stored for this long after the command
BLOCKLIST_REFRESH = 1.0
# HTML is cut before parsing, so the parser's cost is bounded too (markup is
# rarely more than a few times its text)
HTML_MAX_CHARS = 10 * TEXT_MAX_CHARS


def _text_of(post: Post) -> tuple[str, bool]:
    """The post's plain text (its text as given, else its HTML converted), at most
    TEXT_MAX_CHARS characters, and whether it was cut."""
    if post.text is not None:
        text = _storable(post.text)[:4 * TEXT_MAX_CHARS].strip()
        cut = len(post.text) > 4 * TEXT_MAX_CHARS
    elif post.html:
        html = _storable(post.html)
        cut = len(html) > HTML_MAX_CHARS
        text = html_to_text(html[:HTML_MAX_CHARS])
    else:
        return "", False
    if len(text) > TEXT_MAX_CHARS:
        return text[:TEXT_MAX_CHARS], True
    return text, cut


def _language(post: Post, text: str) -> tuple[str | None, bool]:
    """``(language, wordless)``: the platform's language, else the detected one."""
    lang = normalise_lang(post.lang)
    if lang is not None or not text:
        return lang, False
    detected, letters = detect(text)
    return detected, letters < MIN_LETTERS


def _storable(value: str) -> str:
    """*value* without what no database text column takes: NUL, lone surrogates."""
    if value.isascii():
        return value.replace("\x00", "") if "\x00" in value else value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)
    return value.replace("\x00", "") if "\x00" in value else value


class Enricher:
    """Turns platform posts into scored, privacy-filtered records for the store.

    * text: ``post.text`` as given, else ``post.html`` converted to plain text;
    * tags: the platform's tags, then tags found in the text, normalised, no repeats;
    * language: the platform's, else detected (None when it cannot be told);
    * sentiment: VADER on the text when the language is one of
      ``sentiment.languages`` (or undetermined and ``sentiment.score_undetected``),
      else None. It is computed before privacy drops the text;
    * privacy: text kept only with ``privacy.store_text``; author kept,
      keyed-hashed or dropped per ``privacy.authors``; under ``hash`` the post
      key is a keyed pseudonym too and the link is dropped unless the re-check
      needs it (:mod:`monitor.enrich.post_keys`);
    * forgotten authors (``monitor forget --author``): :meth:`enrich_many` leaves
      out their posts (fewer outputs than inputs), counted by :meth:`gate`.
    """

    __slots__ = ("_authors", "_block_key", "_blocked", "_blocked_at", "_blocked_stamp",
                 "_config", "_drops", "_engine", "_keep_urls", "_keys", "_languages",
                 "_score_undetected", "_store_text")

    def __init__(
        self,
        *,
        authors: AuthorPolicy,
        store_text: bool,
        languages: Iterable[str],
        score_undetected: bool,
        post_keys: PostKeys | None = None,
        keep_urls: bool = True,
    ) -> None:
        self._authors = authors
        self._keys = post_keys
        self._keep_urls = keep_urls or post_keys is None
        self._engine: Engine | None = None
        self._config: Config | None = None
        self._block_key: AuthorKey | None = authors.key
        self._blocked: frozenset[tuple[str, str]] = frozenset()
        self._blocked_stamp: tuple[int, datetime | None] = (0, None)
        self._blocked_at = float("-inf")  # time.monotonic() of the last look
        self._drops: Counter[tuple[str, str]] = Counter()
        self._store_text = store_text
        self._languages = frozenset(
            lang for lang in (normalise_lang(code) for code in languages) if lang
        )
        self._score_undetected = score_undetected

    @classmethod
    def from_config(cls, config: Config, *, secret_dir: Path | None = None,
                    engine: Engine | None = None) -> Enricher:
        """An Enricher for *config* writing to *engine*'s database (its author key).

        Without an engine (tests, tools) the key is the configured one, else
        ``secret_dir/.author_secret``, and post keys and links stay as the platform
        gave them (pseudonymous keys belong to a database: monitor.enrich.post_keys).
        """
        authors = (AuthorPolicy.for_database(config, engine) if engine is not None
                   else AuthorPolicy.from_config(config, secret_dir))
        # post keys are the database's pseudonyms: made when writing to one (the
        # service, imports); a tool or test without a database sees platform keys
        # (under authors: drop too: a post id that names its author would undo the drop)
        keys: PostKeys | None = None
        if engine is not None and authors.mode != "keep":
            key = authors.key or resolve_key(config, engine, create=True)
            keys = PostKeys(key) if key is not None else None
        # the re-check asks the platform about a post by its link (the key is keyed)
        keep_urls = keys is None or config.privacy.recheck is not None
        enricher = cls(
            authors=authors,
            store_text=config.privacy.store_text,
            languages=config.sentiment.languages,
            score_undetected=config.sentiment.score_undetected,
            post_keys=keys,
            keep_urls=keep_urls,
        )
        if engine is not None:
            if keys is not None:
                from monitor.enrich.post_keys_convert import pseudonymise_existing

                pseudonymise_existing(engine, keys, drop_urls=not keep_urls)
            else:
                from monitor.enrich.post_keys_convert import platform_keys_written

                platform_keys_written(engine)
            if enricher._block_key is None and authors.mode == "keep":
                enricher._block_key = resolve_key(config, engine, create=False)
            enricher._engine, enricher._config = engine, config
            enricher._refresh_blocked()
        return enricher

    # ------------------------------------------------------------------ the batch gate

    def gate(self, batch: Batch, platforms: Collection[str]) -> Batch:
        """*batch* as the store must see it, before the service looks up its deletions.

        Under ``authors: hash`` its deleted keys become their pseudonyms, once per
        platform of its stream (*platforms*, and its posts' platforms), and so do
        its posts' keys, so that a post and its deletion in one batch still meet.
        Also re-reads the forgotten authors when ``monitor forget`` added some, and
        adds the posts dropped for them since the last call to their counts.
        """
        if self._engine is not None:
            if self._drops:
                from monitor.store.pseudonyms import count_forgotten_drops

                drops, self._drops = self._drops, Counter()
                count_forgotten_drops(self._engine, drops)
            self._refresh_blocked()
        keys = self._keys
        if keys is None or not batch.deleted:
            return batch
        on = set(platforms) | {p.platform for p in batch.posts}
        if not on:
            return batch
        return replace(
            batch,
            posts=tuple(replace(p, key=keys.stored(p.platform, _storable(p.key)))
                        for p in batch.posts),
            deleted=tuple(sorted({keys.stored(platform, _storable(k))
                                  for k in batch.deleted for platform in on})),
        )

    def take_drops(self) -> Counter[tuple[str, str]]:
        """The posts left out for forgotten authors since the last call (or gate), per
        (platform, pseudonym); an import counts them with its chunks."""
        drops, self._drops = self._drops, Counter()
        return drops

    def _refresh_blocked(self) -> None:
        # at most every BLOCKLIST_REFRESH seconds: the look is a query (~1 ms on SQLite)
        if self._engine is None or time.monotonic() - self._blocked_at < BLOCKLIST_REFRESH:
            return
        from monitor.store.pseudonyms import forgotten_entries, forgotten_stamp

        self._blocked_at = time.monotonic()
        stamp = forgotten_stamp(self._engine)
        if stamp != self._blocked_stamp:
            self._blocked = forgotten_entries(self._engine)
            self._blocked_stamp = stamp
            if (self._block_key is None and self._authors.mode == "keep"
                    and self._config is not None):
                # `monitor forget` made the database's first key since this started
                self._block_key = resolve_key(self._config, self._engine, create=False)

    def _admit(self, scored: list[ScoredPost]) -> list[ScoredPost]:
        """*scored* without the posts of forgotten authors (counted for :meth:`gate`)."""
        if not self._blocked:
            return scored
        kept: list[ScoredPost] = []
        for post in scored:
            pseudonym = self._pseudonym(post)
            if pseudonym is not None and (post.platform, pseudonym) in self._blocked:
                self._drops[(post.platform, pseudonym)] += 1
                continue
            kept.append(post)
        return kept

    def _pseudonym(self, post: ScoredPost) -> str | None:
        if post.author is None:
            return None
        if self._authors.mode == "hash":
            return post.author
        key = self._block_key
        return key.pseudonym(post.platform, post.author) if key is not None else None

    def enrich(self, post: Post) -> ScoredPost:
        """One post, enriched. Never raises on odd content.

        Lone surrogates become U+FFFD and NUL characters are removed (neither
        can be stored as text). Should anything still fail, the post is kept
        without text analysis (platform tags and language only) and one line
        naming the platform and the error type is logged: a single bad post
        must not block its stream's cursor.
        """
        try:
            return self._enrich(post)
        except Exception as exc:  # a poison post must not stop the batch
            log.warning("could not analyse the text of a %s post (%s); stored with platform "
                        "tags and language only", post.platform, type(exc).__name__)
            return self._degraded(post)

    def _degraded(self, post: Post) -> ScoredPost:
        """What can still be said about a post whose text broke the analysis."""
        try:
            tags = merge_tags(post.tags, ())
        except Exception:  # malformed platform tags too: keep the post, count it untagged
            tags = ()
        try:
            lang = normalise_lang(post.lang)
        except Exception:
            lang = None
        return self._scored(post, "", tags, lang, None)

    def _enrich(self, post: Post) -> ScoredPost:
        text, cut = _text_of(post)
        tags = merge_tags(post.tags, extract_hashtags(text))
        lang, wordless = _language(post, text)
        return self._scored(post, text, tags, lang, self._sentiment(text, lang, wordless),
                            cut)

    def _sentiment(self, text: str, lang: str | None, wordless: bool) -> Sentiment | None:
        if not text:
            return None
        if lang:
            if lang not in self._languages:
                return None
        elif not (self._score_undetected or (wordless and self._languages)):
            return None
        s = analyzer().polarity_scores(text[:SENTIMENT_MAX_CHARS])
        # Emoji and emoticons read the same in every language, so a post
        # without words is scored when VADER finds any in it; a bare link or
        # mention stays unscored rather than counted as "neutral".
        if not (lang or self._score_undetected or s["neu"] < 1.0):
            return None
        return Sentiment(compound=s["compound"], pos=s["pos"], neu=s["neu"], neg=s["neg"])

    def _scored(self, post: Post, text: str, tags: tuple[str, ...], lang: str | None,
                sentiment: Sentiment | None, cut: bool = False) -> ScoredPost:
        author = post.author
        if isinstance(author, str) and self._authors.mode == "keep":
            author = _storable(author)
        # a lone surrogate or NUL in a key, URL or tag (a JSON "\ud800" escape) made the
        # whole batch fail to store, over and over (found by tests/fuzz): made storable
        url = post.url if self._keep_urls else None
        key = _storable(post.key)
        return ScoredPost(
            platform=post.platform,
            key=self._keys.stored(post.platform, key) if self._keys is not None else key,
            created_at=post.created_at,
            url=_storable(url) if url else url,
            author=self._authors.apply(post.platform, author),
            text=text if self._store_text and text else None,
            lang=lang,
            tags=tuple(kept for t in tags if (kept := _storable(t))),
            is_repost=post.is_repost,
            sensitive=post.sensitive,
            sentiment=sentiment,
            text_truncated=cut,
        )

    def enrich_many(self, posts: Iterable[Post]) -> list[ScoredPost]:
        """Posts enriched in order, same results as :meth:`enrich`; one output per input
        except the posts of forgotten authors, left out.

        Runs stage by stage over the whole batch (all texts, then all tags,
        then languages, then sentiment): each stage's code and data (parser,
        language model, lexicon) stay in the CPU caches, which makes a batch
        ~20 % faster than post by post. If a post breaks a stage, the batch is
        redone post by post so that only that post degrades.
        """
        items = list(posts)
        try:
            texts_cut = [_text_of(post) for post in items]
            texts = [text for text, _ in texts_cut]
            tags = [merge_tags(post.tags, extract_hashtags(text))
                    for post, text in zip(items, texts, strict=True)]
            langs = [_language(post, text) for post, text in zip(items, texts, strict=True)]
            sentiment = self._sentiment
            scores = [sentiment(text, lang, wordless)
                      for text, (lang, wordless) in zip(texts, langs, strict=True)]
            scored = self._scored
            done = [scored(post, text, tag, lang, score, cut)
                    for post, (text, cut), tag, (lang, _), score
                    in zip(items, texts_cut, tags, langs, scores, strict=True)]
        except Exception:
            done = [self.enrich(post) for post in items]
        return self._admit(done)

    def __getstate__(self) -> dict[str, object]:
        # for an import's worker processes: everything but the engine (theirs is the
        # parent's; they only enrich)
        return {name: (None if name in ("_engine", "_config") else getattr(self, name))
                for name in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return (f"Enricher(authors={self._authors.mode!r}, store_text={self._store_text}, "
                f"languages={sorted(self._languages)!r}, "
                f"score_undetected={self._score_undetected})")
