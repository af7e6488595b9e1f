"""The memory-mapped language model answers exactly as py3langid's own, and falls back."""

from __future__ import annotations

from pathlib import Path

import pytest
from py3langid.langid import MODEL_FILE, LanguageIdentifier

from monitor.enrich import langid_model

TEXTS = [
    "I never told anyone until today and I am so grateful for everyone who listened.",
    "Ich habe lange geschwiegen, aber heute erzähle ich meine Geschichte.",
    "Je n'ai jamais osé en parler avant aujourd'hui, merci pour votre soutien.",
    "Hoy por fin me atreví a contar lo que me pasó en el trabajo.",
    "今日、初めて自分の経験について話すことにしました。",
    "lol", "", "#metoo 🙏", "Не молчи. Расскажи свою историю.", "xx\x00\ufffd yy",
]


def test_mapped_model_gives_the_stock_answers(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_CACHE_DIR", str(tmp_path / "cache"))
    mapped = langid_model.load_identifier()
    files = list((tmp_path / "cache").glob("langid-*.bin"))
    assert len(files) == 1
    stock = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    for text in TEXTS:
        assert mapped.classify(text) == stock.classify(text)
        assert mapped.rank(text)[:5] == stock.rank(text)[:5]
    built = files[0].stat().st_mtime_ns
    again = langid_model.load_identifier()  # the cache is reused, not rebuilt
    assert files[0].stat().st_mtime_ns == built
    assert again.classify(TEXTS[1]) == stock.classify(TEXTS[1])


def test_unwritable_cache_loads_into_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MONITOR_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level("INFO", logger="monitor.enrich.langid_model"):
        identifier = langid_model.load_identifier()
    assert identifier.classify(TEXTS[0])[0] == "en"
    assert "loaded into memory" in caplog.text
