"""Language: the platform's tag normalised, else detected offline, else None."""

from __future__ import annotations

import pytest

from monitor.enrich.language import _langid, detect, detect_language, normalise_lang


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("en", "en"), ("en-US", "en"), ("EN_gb", "en"), ("pt-BR", "pt"), ("zh-Hant-TW", "zh"),
        ("eng", "en"), ("deu", "de"), ("und", None), ("mul", None), ("", None), (None, None),
        ("12", None), ("x", None), ("english", None), ("ελ", None),
    ],
)
def test_platform_language_tags_are_normalised(given: str | None, expected: str | None) -> None:
    assert normalise_lang(given) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ich habe lange geschwiegen, aber heute erzähle ich meine Geschichte. #MeToo", "de"),
        ("Je n'ai jamais osé en parler avant aujourd'hui, merci pour votre soutien.", "fr"),
        ("Hoy por fin me atreví a contar lo que me pasó en el trabajo. #YoTambién", "es"),
        ("Nunca contei isso para ninguém, mas hoje decidi falar sobre o assunto.", "pt"),
        ("Ik heb er nooit over gepraat, maar vandaag doe ik het wel.", "nl"),
        ("今日、初めて自分の経験について話すことにしました。", "ja"),
        ("Мы не будем молчать, это касается каждой из нас.", "ru"),
        ("I will check in on my friends more often and call out harassment when I see it.", "en"),
    ],
)
def test_languages_of_real_sentences(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize(
    "text",
    # short English tweets py3langid alone calls French, Frisian or Nigerian Pidgin
    ["Nervous as hell", "Wtf wit dat news... Wtf bad news brown is dead", "So annoyed",
     "I love lightnings !!!!", "fucking hates traffic", "LMAO, AMAZING!"],
)
def test_short_english_is_english(text: str) -> None:
    assert detect_language(text) == "en"


def test_links_mentions_and_tags_do_not_count_as_language() -> None:
    post = ("@alice@remote.example Es ist unglaublich, wie wenig sich verändert hat "
            "https://news.example.org/english-words-in-a-url #MeToo #NotAllMen #HowIWillChange")
    assert detect_language(post) == "de"


@pytest.mark.parametrize(
    "text",
    ["", "😡😡😡", ":) :) :)", "#MeToo #NotAllMen", "https://example.org/a/b", "@bob 11?", "ok"],
)
def test_nothing_to_read_is_undetermined(text: str) -> None:
    assert detect_language(text) is None


def test_detect_reports_letters_so_wordless_posts_can_be_told_apart() -> None:
    assert detect("😡 @bob https://x.example") == (None, 0)
    lang, letters = detect("Still listening.")
    assert lang == "en"
    assert letters == len("Stilllistening")


def test_ambiguous_short_foreign_text_is_not_forced_to_english() -> None:
    # VADER would score these as English gibberish (all neutral): keep them out
    assert detect_language("kendisine sormali buyusu kacar sonra") != "en"
    assert detect_language("Siya na!") != "en"
    assert detect_language("das een eind geleden dat ik je nog op twitter heb gezien!") == "nl"


def test_model_is_loaded_once_per_process() -> None:
    assert _langid() is _langid()
