"""Post → ScoredPost: plain text, tags, language, sentiment, privacy.

One :class:`Enricher` per process is enough (it holds no per-post state and
is safe to share between threads); the language model and the VADER analyzer
behind it are process-wide singletons.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from monitor.config import Config
from monitor.enrich.language import MIN_LETTERS, detect, normalise_lang
from monitor.enrich.privacy import AuthorPolicy
from monitor.enrich.sentiment import analyzer
from monitor.enrich.text import extract_hashtags, html_to_text, merge_tags
from monitor.models import Post, ScoredPost, Sentiment

__all__ = ["Enricher"]


class Enricher:
    """Turns platform posts into scored, privacy-filtered records for the store.

    * text: ``post.text`` as given, else ``post.html`` converted to plain text;
    * tags: the platform's tags, then tags found in the text, normalised, no repeats;
    * language: the platform's, else detected (None when it cannot be told);
    * sentiment: VADER on the text when the language is one of
      ``sentiment.languages`` (or undetermined and ``sentiment.score_undetected``),
      else None. It is computed before privacy drops the text;
    * privacy: text kept only with ``privacy.store_text``; author kept,
      keyed-hashed or dropped per ``privacy.authors``.
    """

    __slots__ = ("_authors", "_languages", "_score_undetected", "_store_text")

    def __init__(
        self,
        *,
        authors: AuthorPolicy,
        store_text: bool,
        languages: Iterable[str],
        score_undetected: bool,
    ) -> None:
        self._authors = authors
        self._store_text = store_text
        self._languages = frozenset(
            lang for lang in (normalise_lang(code) for code in languages) if lang
        )
        self._score_undetected = score_undetected

    @classmethod
    def from_config(cls, config: Config, *, secret_dir: Path | None = None) -> Enricher:
        """An Enricher for *config*; *secret_dir* overrides where ``.author_secret`` lives."""
        return cls(
            authors=AuthorPolicy.from_config(config, secret_dir),
            store_text=config.privacy.store_text,
            languages=config.sentiment.languages,
            score_undetected=config.sentiment.score_undetected,
        )

    def enrich(self, post: Post) -> ScoredPost:
        """One post, enriched. Never raises on odd content: empty text simply scores nothing."""
        if post.text is not None:
            text = post.text.strip()
        elif post.html:
            text = html_to_text(post.html)
        else:
            text = ""
        tags = merge_tags(post.tags, extract_hashtags(text))
        lang = normalise_lang(post.lang)
        wordless = False
        if lang is None and text:
            lang, letters = detect(text)
            wordless = letters < MIN_LETTERS
        sentiment: Sentiment | None = None
        if text and (
            lang in self._languages
            if lang
            else (self._score_undetected or (wordless and bool(self._languages)))
        ):
            s = analyzer().polarity_scores(text)
            # Emoji and emoticons read the same in every language, so a post
            # without words is scored when VADER finds any in it; a bare link
            # or mention stays unscored rather than counted as "neutral".
            if lang or self._score_undetected or s["neu"] < 1.0:
                sentiment = Sentiment(compound=s["compound"], pos=s["pos"], neu=s["neu"],
                                      neg=s["neg"])
        return ScoredPost(
            platform=post.platform,
            key=post.key,
            created_at=post.created_at,
            url=post.url,
            author=self._authors.apply(post.platform, post.author),
            text=text if self._store_text and text else None,
            lang=lang,
            tags=tags,
            is_repost=post.is_repost,
            sensitive=post.sensitive,
            sentiment=sentiment,
        )

    def enrich_many(self, posts: Iterable[Post]) -> list[ScoredPost]:
        """Posts enriched in order (one output per input)."""
        enrich = self.enrich
        return [enrich(post) for post in posts]

    def __repr__(self) -> str:
        return (f"Enricher(authors={self._authors.mode!r}, store_text={self._store_text}, "
                f"languages={sorted(self._languages)!r}, "
                f"score_undetected={self._score_undetected})")
