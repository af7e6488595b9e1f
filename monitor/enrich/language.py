"""Post language: the platform's own tag when it gave one, else detected offline.

Detection uses py3langid (its model ships with the package; loaded once per
process, on first use). Language identification is unreliable on a few words:
on the VADER tweet ground truth, py3langid alone calls ~5 % of plainly English
tweets ("Nervous as hell", "LMAO, AMAZING!") French, Bikol or Nigerian Pidgin.
So a detection is accepted only when the text is long enough and the
calibrated confidence is high; when it is not, a text whose words are mostly
English (VADER's own lexicon plus common function words) is taken as English,
because that is exactly the question sentiment scoring needs answered: can
VADER read it. Everything else stays undetermined (None).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

__all__ = [
    "MIN_LETTERS",
    "detect_language",
    "english_share",
    "normalise_lang",
]

MIN_LETTERS = 3  # fewer letters than this: nothing to detect ("wow!!" is 3)
TRUSTED_LETTERS = 25  # from this length on py3langid is right when it is confident
CONFIDENT = 0.5  # calibrated probability to accept on a text of TRUSTED_LETTERS or more
SURE = 0.9  # probability to accept on a shorter text
ENGLISH_SHARE = 0.5  # share of English words that makes an unsure text English
DETECT_CHARS = 400  # language is settled well before this; caps the cost on long posts

# ISO 639-2/3 codes some platforms send, mapped to the 639-1 codes Mastodon uses
_THREE_TO_TWO = {
    "ara": "ar", "chi": "zh", "zho": "zh", "deu": "de", "ger": "de", "dut": "nl", "nld": "nl",
    "eng": "en", "fra": "fr", "fre": "fr", "hin": "hi", "ita": "it", "jpn": "ja", "kor": "ko",
    "pol": "pl", "por": "pt", "rus": "ru", "spa": "es", "swe": "sv", "tur": "tr", "ukr": "uk",
    "ind": "id", "fas": "fa", "per": "fa", "heb": "he", "ell": "el", "gre": "el", "cat": "ca",
}
# "undetermined", "multiple", "no linguistic content", "missing"
_NOT_A_LANGUAGE = frozenset({"und", "mul", "zxx", "mis", "xx"})

# Not language: links, @mentions (Mastodon's user@host too) and #tags
_NOISE = re.compile(r"(?i)\b(?:[a-z][a-z0-9+.\-]*://|www\.)\S+|[@#＃][\w.@\-]+")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")

# Common English words that carry no sentiment, so VADER's lexicon lacks them.
_ENGLISH_COMMON_WORDS = """
a about above after again against all also am an and any are aren't as at be because been
before being below between both but by can can't cannot could couldn't did didn't do does
doesn't doing don't down during each few for from further get gets got had hadn't has hasn't
have haven't having he he'd he'll he's her here here's hers herself him himself his how how's
i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most much must
mustn't my myself no nor not now of off on once only or other ought our ours ourselves out over
own same shan't she she'd she'll she's should shouldn't so some such than that that's the their
theirs them themselves then there there's these they they'd they'll they're they've this those
through to too under until up very was wasn't we we'd we'll we're we've were weren't what
what's when when's where where's which while who who's whom why why's will with won't would
wouldn't you you'd you'll you're you've your yours yourself yourselves
day days night today tonight tomorrow yesterday week weekend time year years morning
go going gone went come coming came see saw seen know knew think thought say said tell told
make made take took want need look looking watch watching work working home back still even
again ever never always really right well way new old first last next one two three people
man men woman women girl girls boy boys guy guys friend friends mom dad family life world
thing things lot little big long many every something nothing anything everything someone
everyone anyone place game show movie music song book school job phone news story post
yes yeah ok okay oh hey hi hello please thanks thank lol haha hahaha omg wtf lmao btw
"""
_ENGLISH_COMMON = frozenset(_ENGLISH_COMMON_WORDS.split())


def normalise_lang(code: str | None) -> str | None:
    """A platform language tag → its primary ISO 639-1 subtag: 'en-US' → 'en', 'und' → None."""
    if not code:
        return None
    primary = code.strip().replace("_", "-").split("-", 1)[0].lower()
    primary = _THREE_TO_TWO.get(primary, primary)
    if primary in _NOT_A_LANGUAGE or not (2 <= len(primary) <= 3) or not primary.isascii():
        return None
    if not primary.isalpha():
        return None
    return primary


_lock = threading.Lock()
_identifier: Any = None


def _langid() -> Any:
    """The py3langid identifier, loaded once per process (≈0.6 s, ~30 MB)."""
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


@lru_cache(maxsize=1)
def _english_words() -> frozenset[str]:
    from monitor.enrich.sentiment import analyzer

    lexicon: dict[str, float] = analyzer().lexicon
    return frozenset(word for word in lexicon if word.isalpha()) | _ENGLISH_COMMON


def english_share(text: str) -> float:
    """Share of the words in *text* that are English (VADER lexicon or common words)."""
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    known = _english_words()
    return sum(1 for word in words if word in known or word.replace("’", "'") in known) / len(
        words
    )


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of *text*, or None when it cannot be told (too short, ambiguous)."""
    cleaned = _NOISE.sub(" ", text[: DETECT_CHARS * 2])[:DETECT_CHARS]
    letters = sum(1 for ch in cleaned if ch.isalpha())
    if letters < MIN_LETTERS:
        return None
    lang, confidence = _langid().classify(cleaned)
    if confidence >= SURE or (letters >= TRUSTED_LETTERS and confidence >= CONFIDENT):
        return str(lang) if lang not in _NOT_A_LANGUAGE else None
    if english_share(cleaned) >= ENGLISH_SHARE:
        return "en"
    return None
