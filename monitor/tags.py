"""Hashtag normalisation: the one rule every stage uses to compare tags.

Config, rules, silences, the collectors and the read side all call
:func:`normalise_tag`, so ``#MeToo``, ``metoo`` and ``#MeToo.`` are the same
tag everywhere. It lives in its own leaf module (it imports nothing of ours)
so that settings modules can use it without importing ``monitor.config``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["normalise_tag", "normalise_tags", "strict_tag"]


def _normalise(raw: str) -> str:
    tag = unicodedata.normalize("NFKC", raw).strip().lstrip("#＃")
    # casefold can undo NFKC ('ß́' → 'ss' + U+0301, which NFKC composes to 'sś'):
    # repeat both until stable so normalise_tag(normalise_tag(x)) == normalise_tag(x)
    for _ in range(4):
        folded = unicodedata.normalize("NFKC", tag.casefold())
        if folded == tag:
            break
        tag = folded
    # keep letters, digits, marks and '_' (Unicode-aware); cut at the first other char
    out = []
    for ch in tag:
        if ch == "_" or unicodedata.category(ch)[0] in ("L", "N", "M"):
            out.append(ch)
        else:
            break
    return "".join(out)


# The same few tags recur in nearly every post of a followed stream, and
# normalising walks every character through unicodedata; remember the answers.
@lru_cache(maxsize=16384)
def normalise_tag(raw: str) -> str:
    """NFKC, casefold, strip '#' and trailing punctuation: '#MeToo.' → 'metoo'."""
    return _normalise(raw)


def strict_tag(raw: str) -> str:
    """*raw* normalised, when all of it is a tag; ValueError otherwise.

    The config's ``hashtags`` and every CLI tag argument use this: ``#MeToo`` is
    ``metoo``, but ``bad tag`` or ``me-too`` is a mistake, not ``bad`` or ``me``.
    """
    tag = normalise_tag(raw)
    whole = unicodedata.normalize("NFKC", raw).strip().lstrip("#＃").casefold()
    if not tag or tag != whole:
        raise ValueError(f"expected a tag of letters, digits or '_', got {raw!r}")
    return tag


def normalise_tags(values: Iterable[str]) -> list[str]:
    """Normalise each of *values*; raise ValueError naming the first that leaves no tag.

    Used by the settings validators, where pydantic turns the ValueError into a
    one-line config error at the right key.
    """
    out = []
    for raw in values:
        tag = normalise_tag(raw)
        if not tag:
            raise ValueError(f"expected a tag of letters, digits or '_', got {raw!r}")
        out.append(tag)
    return out
