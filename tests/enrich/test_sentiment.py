"""VADER scoring: one analyzer per process, and exactly the scores of stock VADER."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from monitor.enrich.sentiment import FastAnalyzer, analyzer, score


@pytest.fixture(scope="module")
def stock() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def test_one_analyzer_per_process() -> None:
    assert analyzer() is analyzer()
    assert isinstance(analyzer(), FastAnalyzer)


def test_scores_have_the_documented_ranges_and_direction() -> None:
    good = score("Proud of the women who spoke up, you are incredibly brave!")
    bad = score("Honestly disgusted by the comments under this thread. Absolutely vile.")
    flat = score("The meeting is on Tuesday.")
    assert good.compound > 0.5
    assert bad.compound < -0.5
    assert flat.compound == 0.0 and flat.neu == 1.0
    for s in (good, bad, flat):
        assert -1.0 <= s.compound <= 1.0
        assert abs(s.pos + s.neu + s.neg - 1.0) < 0.01


# Each line exercises one VADER rule; equality with stock VADER is the contract.
TRICKY = [
    "VADER is smart, handsome, and funny.",
    "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.",
    "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today SUX!", "Today only kinda sux! But I'll get by, lol",
    "Make sure you :) or :D today!", "Catch utf-8 emoji such as 💘 and 💋 and 😁",
    "Not bad at all", "no no no good", "no problem", "never so good", "never this bad",
    "without doubt bad", "without a doubt great", "the shit", "the bomb", "bad ass",
    "yeah right", "cut the mustard", "kiss of death", "at least good", "very least awful",
    "least good", "it isn't horrible", "I don't think it's good", "NO GOOD", "kind of",
    "😀😀 hi😡you", " 😡", "love❤️you ❤️", "I ❤ NY", "😀", "a 😀b", "", "   ", "?!?!", "!!!!!!",
    "What?? Really??? Amazing!!!!", "good good good but bad bad bad but fine",
]


@pytest.mark.parametrize("text", TRICKY)
def test_fast_analyzer_matches_stock_vader(stock: SentimentIntensityAnalyzer, text: str) -> None:
    assert analyzer().polarity_scores(text) == stock.polarity_scores(text)


_STOCK = SentimentIntensityAnalyzer()
_vocab = st.sampled_from([
    "good", "GOOD", "bad", "BAD", "not", "isn't", "never", "no", "nor", "or", "so", "this",
    "very", "extremely", "kind", "of", "sort", "least", "at", "but", "without", "doubt",
    "the", "shit", "bomb", "love", "hate", "lol", "great", "horrible", "!", "?", "!!", ":)",
    ":(", "😀", "😡", "❤️", "💔", "good!", "bad...", "(great)", "ain't", "cannot", "uber",
    "kinda", "fairly", "barely", "yeah", "right", "hell", "no.",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_vocab, max_size=25), st.sampled_from([" ", "", "  "]))
def test_fast_analyzer_matches_stock_on_generated_sentences(words: list[str], sep: str) -> None:
    text = sep.join(words)
    assert analyzer().polarity_scores(text) == _STOCK.polarity_scores(text)
