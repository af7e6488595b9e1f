"""VADER sentiment, with one analyzer per process.

Building a ``SentimentIntensityAnalyzer`` reads its two lexicon files (~7,500
words, ~3,500 emoji), which costs far more than scoring a post, so it is built
once, lazily, and shared. Scoring only reads the lexicon, so sharing it
between threads is safe.
"""

from __future__ import annotations

import threading

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from monitor.models import Sentiment

__all__ = ["analyzer", "score"]

_lock = threading.Lock()
_analyzer: SentimentIntensityAnalyzer | None = None


def analyzer() -> SentimentIntensityAnalyzer:
    """The process-wide VADER analyzer (built on first use)."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                _analyzer = SentimentIntensityAnalyzer()
    return _analyzer


def score(text: str) -> Sentiment:
    """VADER scores of *text*: compound in [-1, 1], pos/neu/neg proportions summing to ~1."""
    s = analyzer().polarity_scores(text)
    return Sentiment(compound=s["compound"], pos=s["pos"], neu=s["neu"], neg=s["neg"])
