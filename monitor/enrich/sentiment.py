"""VADER sentiment, with one analyzer per process.

Building an analyzer reads VADER's two lexicon files (~7,500 words, ~3,500
emoji), which costs far more than scoring a post, so it is built once, lazily,
and shared; scoring only reads the lexicon, so threads may share it.

The analyzer is :class:`FastAnalyzer`, a subclass of vaderSentiment's
``SentimentIntensityAnalyzer`` that returns exactly the same scores (same
rules, same order of floating-point operations) about three times faster. Stock
VADER rebuilds the lower-cased word list of the whole text for every
sentiment word it meets (quadratic in post length) and copies the text one
character at a time to find emoji. Here the lower-cased words are computed
once per text and emoji are looked up only among non-ASCII characters.
``tests/enrich/test_sentiment.py`` checks equality against the stock
analyzer; ``benchmarks/sentiment_groundtruth.py`` does it on VADER's own
ground truth.
"""

from __future__ import annotations

import math
import re
import string
import threading
from itertools import compress

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    normalize,
    scalar_inc_dec,
)

from monitor.models import Sentiment

__all__ = ["FastAnalyzer", "analyzer", "score"]

_NEGATE = frozenset(NEGATE)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_PUNCTUATION = string.punctuation


def _negated(word: str) -> bool:
    """``vaderSentiment.negated([word])`` for one lower-cased word."""
    return word in _NEGATE or "n't" in word


def _negation_check(valence: float, lower: list[str], start_i: int, i: int) -> float:
    """``SentimentIntensityAnalyzer._negation_check`` on pre-lower-cased words."""
    if start_i == 0:
        if _negated(lower[i - 1]):
            valence = valence * N_SCALAR
    elif start_i == 1:
        w2, w1 = lower[i - 2], lower[i - 1]
        if w2 == "never" and (w1 == "so" or w1 == "this"):
            valence = valence * 1.25
        elif w2 == "without" and w1 == "doubt":
            pass
        elif _negated(w2):
            valence = valence * N_SCALAR
    elif start_i == 2:
        w3, w2, w1 = lower[i - 3], lower[i - 2], lower[i - 1]
        if (w3 == "never" and (w2 == "so" or w2 == "this")) or (w1 == "so" or w1 == "this"):
            valence = valence * 1.25
        elif w3 == "without" and (w2 == "doubt" or w1 == "doubt"):
            pass
        elif _negated(w3):
            valence = valence * N_SCALAR
    return valence


# Every word of a multi-word idiom or booster: an n-gram of words none of which
# is here cannot be one, so most checks end before building any n-gram string.
_IDIOM_WORDS = frozenset(
    word for key in (*SPECIAL_CASES, *BOOSTER_DICT) if " " in key for word in key.split()
)


def _special_idioms_check(valence: float, lower: list[str], i: int) -> float:
    """``SentimentIntensityAnalyzer._special_idioms_check`` on pre-lower-cased words."""
    w3, w2, w1, w0 = lower[i - 3], lower[i - 2], lower[i - 1], lower[i]
    if (w0 not in _IDIOM_WORDS and w1 not in _IDIOM_WORDS and w2 not in _IDIOM_WORDS
            and w3 not in _IDIOM_WORDS):
        return valence  # every n-gram below holds one of these words
    onezero = f"{w1} {w0}"
    twoonezero = f"{w2} {w1} {w0}"
    twoone = f"{w2} {w1}"
    threetwoone = f"{w3} {w2} {w1}"
    threetwo = f"{w3} {w2}"
    for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if seq in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
            break
    n = len(lower)
    if n - 1 > i:
        zeroone = f"{w0} {lower[i + 1]}"
        if zeroone in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
    if n - 1 > i + 1:
        zeroonetwo = f"{w0} {lower[i + 1]} {lower[i + 2]}"
        if zeroonetwo in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
    for n_gram in (threetwoone, threetwo, twoone):
        if n_gram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[n_gram]
    return valence


def _least_check(valence: float, lower: list[str], lexicon: dict[str, float], i: int) -> float:
    """``SentimentIntensityAnalyzer._least_check`` on pre-lower-cased words."""
    if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
        if lower[i - 2] != "at" and lower[i - 2] != "very":
            valence = valence * N_SCALAR
    elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
        valence = valence * N_SCALAR
    return valence


class FastAnalyzer(SentimentIntensityAnalyzer):  # type: ignore[misc]
    """vaderSentiment 3.3.2's analyzer, same scores, less repeated work."""

    def _replace_emoji(self, text: str) -> str:
        # Stock VADER: each emoji becomes its description, preceded by a space
        # unless it starts the text or follows a space; nothing is added after it.
        emojis: dict[str, str] = self.emojis
        parts: list[str] = []
        last = 0
        for match in _NON_ASCII.finditer(text):
            char = match.group()
            if char in emojis:
                at = match.start()
                parts.append(text[last:at])
                if at > 0 and text[at - 1] != " ":
                    parts.append(" ")
                parts.append(emojis[char])
                last = at + 1
        if not parts:
            return text
        parts.append(text[last:])
        return "".join(parts)

    def polarity_scores(self, text: str) -> dict[str, float]:
        """``{"neg", "neu", "pos", "compound"}`` exactly as stock VADER computes them."""
        if not text.isascii():
            text = self._replace_emoji(text)
        text = text.strip()
        # SentiText: split on whitespace, strip punctuation unless that leaves
        # two characters or fewer (emoticons like ":)" survive whole)
        words = [
            stripped if len(stripped := token.strip(_PUNCTUATION)) > 2 else token
            for token in text.split()
        ]
        n = len(words)
        if text.isascii():
            # one lower() for the whole text: ASCII lower-casing maps character to
            # character, so this is each word lower-cased (and no word holds a space)
            lower = " ".join(words).lower().split()
        else:
            lower = [word.lower() for word in words]
        lexicon: dict[str, float] = self.lexicon
        # the words VADER scores, found with C-level loops: most words are in no lexicon
        hits = list(compress(range(n), map(lexicon.__contains__, lower)))
        sentiments: list[float] = [0] * n
        if hits:
            upper = sum(map(str.isupper, words))
            is_cap_diff = 0 < n - upper < n
            last = n - 1
            for i in hits:
                item_lower = lower[i]
                if item_lower in BOOSTER_DICT or (i < last and item_lower == "kind"
                                                  and lower[i + 1] == "of"):
                    continue  # a modifier, not scored itself (stays 0)
                sentiments[i] = self._valence(words, lower, is_cap_diff, i)
        if "but" in lower:
            sentiments = _but_check(lower, sentiments)
            scored = sentiments
        else:
            # every other place holds the int 0: only the hits can be non-zero
            scored = [sentiments[i] for i in hits]
        return _score_valence(sentiments, scored, text)

    def _valence(self, words: list[str], lower: list[str], is_cap_diff: bool, i: int) -> float:
        """``sentiment_valence`` for lexicon word *i*, reading the pre-lower-cased words."""
        lexicon: dict[str, float] = self.lexicon
        item_lower = lower[i]
        valence = lexicon[item_lower]
        # "no" before another lexicon word negates it instead of counting itself
        if item_lower == "no" and i != len(words) - 1 and lower[i + 1] in lexicon:
            valence = 0.0
        if ((i > 0 and lower[i - 1] == "no") or (i > 1 and lower[i - 2] == "no")
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))):
            valence = lexicon[item_lower] * N_SCALAR
        if words[i].isupper() and is_cap_diff:
            if valence > 0:
                valence += C_INCR
            else:
                valence -= C_INCR
        for start_i in range(0, 3):
            if i > start_i and lower[i - (start_i + 1)] not in lexicon:
                # scalar_inc_dec is 0.0 for a word that is not a booster: skip the call
                s = (scalar_inc_dec(words[i - (start_i + 1)], valence, is_cap_diff)
                     if lower[i - (start_i + 1)] in BOOSTER_DICT else 0.0)
                if start_i == 1 and s != 0:
                    s = s * 0.95
                if start_i == 2 and s != 0:
                    s = s * 0.9
                valence = valence + s
                valence = _negation_check(valence, lower, start_i, i)
                if start_i == 2:
                    valence = _special_idioms_check(valence, lower, i)
        return _least_check(valence, lower, lexicon, i)


def _but_check(lower: list[str], sentiments: list[float]) -> list[float]:
    """``SentimentIntensityAnalyzer._but_check`` on pre-lower-cased words.

    Kept statement for statement, including its lookup of each score by value
    (``index``), so scores stay identical to stock VADER's.
    """
    if "but" in lower:
        bi = lower.index("but")
        for sentiment in sentiments:
            si = sentiments.index(sentiment)
            if si < bi:
                sentiments.pop(si)
                sentiments.insert(si, sentiment * 0.5)
            elif si > bi:
                sentiments.pop(si)
                sentiments.insert(si, sentiment * 1.5)
    return sentiments


def _score_valence(sentiments: list[float], scored: list[float],
                   text: str) -> dict[str, float]:
    """``SentimentIntensityAnalyzer.score_valence``, same operations in the same order.

    *scored*: the entries of *sentiments* that may be non-zero, in order (the rest
    are 0: they add nothing to the sums and count as neutral).
    """
    if not sentiments:
        return {"neg": 0.0, "neu": 0.0, "pos": 0.0, "compound": 0.0}
    sum_s = float(sum(sentiments))
    # punctuation emphasis: up to 4 "!" at 0.292, and 2-3 "?" at 0.18 or 4+ at 0.96
    ep_count = min(text.count("!"), 4)
    qm_count = text.count("?")
    qm_amplifier: float = 0
    if qm_count > 1:
        qm_amplifier = qm_count * 0.18 if qm_count <= 3 else 0.96
    punct_emph_amplifier = ep_count * 0.292 + qm_amplifier
    if sum_s > 0:
        sum_s += punct_emph_amplifier
    elif sum_s < 0:
        sum_s -= punct_emph_amplifier
    compound = normalize(sum_s)
    pos_sum = 0.0
    neg_sum = 0.0
    moved = 0
    for sentiment_score in scored:
        if sentiment_score > 0:
            pos_sum += float(sentiment_score) + 1  # stock VADER's compensation for neutrals
            moved += 1
        elif sentiment_score < 0:
            neg_sum += float(sentiment_score) - 1
            moved += 1
    neu_count = len(sentiments) - moved
    if pos_sum > math.fabs(neg_sum):
        pos_sum += punct_emph_amplifier
    elif pos_sum < math.fabs(neg_sum):
        neg_sum -= punct_emph_amplifier
    total = pos_sum + math.fabs(neg_sum) + neu_count
    return {"neg": round(math.fabs(neg_sum / total), 3),
            "neu": round(math.fabs(neu_count / total), 3),
            "pos": round(math.fabs(pos_sum / total), 3),
            "compound": round(compound, 4)}


_lock = threading.Lock()
_analyzer: FastAnalyzer | None = None


def analyzer() -> FastAnalyzer:
    """The process-wide VADER analyzer (built on first use)."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                _analyzer = FastAnalyzer()
    return _analyzer


def score(text: str) -> Sentiment:
    """VADER scores of *text*: compound in [-1, 1], pos/neu/neg proportions summing to ~1."""
    s = analyzer().polarity_scores(text)
    return Sentiment(compound=s["compound"], pos=s["pos"], neu=s["neu"], neg=s["neg"])
