"""Post text: sanitized HTML → plain text, and hashtags found in that text.

``html_to_text`` parses with a real HTML parser (lexbor via selectolax), so
entities, nesting and broken markup are handled the way a browser would; the
result is plain text meant to be stored and scored, never HTML. Anything
markup-looking in the result (``<script>`` typed by a user and sent as
``&lt;script&gt;``) is just characters and must be escaped by whoever renders it.

``extract_hashtags`` follows Mastodon's rule for where a tag may start: after
the start of the text or a character that is not a word character, ``/`` or
``)``; URLs and HTML entities (``&#39;``) never yield tags; a tag needs at
least one letter (``#1`` is a rank, not a tag). Tags are normalised with
:func:`monitor.config.normalise_tag`, which cuts at the first character that
is not a letter, digit, mark or ``_``: ``#MeToo.`` and ``#MeToo's`` are both
``metoo``, as Mastodon links them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from selectolax.lexbor import LexborHTMLParser

from monitor.config import normalise_tag

__all__ = ["extract_hashtags", "html_to_text", "merge_tags", "normalise_whitespace"]

# Private-use characters mark line and block breaks while the HTML whitespace
# is collapsed; they are removed from the input first so a post cannot forge one.
_BR = "\ue000"
_BLOCK = "\ue001"

# elements that start a new paragraph (blank line) or a new line
_BLOCK_TAGS = "p, div, blockquote, h1, h2, h3, h4, h5, h6, pre, ul, ol, table, section, article"
_LINE_TAGS = "li, tr, dt, dd"
# never post text: code, styles and embedded documents
_DROP_TAGS = "script, style, template, noscript, iframe, object"

_SPACE_RUN = re.compile(r"[ \t\n\r\f\v]+")
_BLOCK_RUN = re.compile(f"[ {_BR}{_BLOCK}]*{_BLOCK}[ {_BR}{_BLOCK}]*")
_BR_RUN = re.compile(f" ?{_BR} ?")

# Where a hashtag may start (Mastodon's HASHTAG_RE: not after a word character,
# '/' or ')'); '&' keeps '&#39;' out, '#' keeps '##x' to one tag at most.
_TAG_CANDIDATE = re.compile(r"(?<![\w/)&#＃])[#＃]([^\s#＃]+)")
# URLs are masked before looking for tags, so 'https://x/page#anchor' or
# '?q=#x' inside a link never become tags.
_URL = re.compile(r"(?i)\b(?:[a-z][a-z0-9+.\-]*://|www\.)\S+")


def normalise_whitespace(text: str) -> str:
    """Strip each line, collapse runs of spaces, keep at most one blank line between paragraphs."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment (Mastodon ``content`` and similar).

    Paragraphs are separated by a blank line, ``<br>`` becomes a newline,
    entities are decoded and source whitespace is collapsed as a browser does.
    Links keep their full text: Mastodon splits a long URL into
    ``invisible``/``ellipsis`` spans for display, and joining all of them gives
    back the whole URL instead of a truncated ``example.com/very/lo``.
    ``<script>``/``<style>`` contents are dropped.
    """
    if _BR in html or _BLOCK in html:
        html = html.replace(_BR, "").replace(_BLOCK, "")
    if "<" not in html and "&" not in html:
        return normalise_whitespace(html)
    tree = LexborHTMLParser(html, is_fragment=True)
    root = tree.root
    if root is None:
        return ""
    lowered = html.lower()
    if any(f"<{name}" in lowered for name in ("script", "style", "template", "noscript",
                                                "iframe", "object")):
        for node in root.css(_DROP_TAGS):
            node.decompose()
    if "<br" in lowered:
        for node in root.css("br"):
            node.replace_with(_BR)
    for node in root.css(_BLOCK_TAGS):
        node.insert_before(_BLOCK)
        node.insert_after(_BLOCK)
    if "<li" in lowered or "<tr" in lowered or "<d" in lowered:
        for node in root.css(_LINE_TAGS):
            node.insert_before(_BR)
    text = root.text(deep=True)
    text = _SPACE_RUN.sub(" ", text)
    text = _BLOCK_RUN.sub("\n\n", text)
    text = _BR_RUN.sub("\n", text)
    return text.strip()


def extract_hashtags(text: str) -> list[str]:
    """Normalised hashtags in *text*, in order of first appearance, without duplicates."""
    if "#" not in text and "＃" not in text:
        return []
    if "://" in text or "www." in text.lower():
        text = _URL.sub(" ", text)
    seen: dict[str, None] = {}
    for match in _TAG_CANDIDATE.finditer(text):
        tag = normalise_tag(match.group(1))
        if tag and tag not in seen and any(ch.isalpha() for ch in tag):
            seen[tag] = None
    return list(seen)


def merge_tags(platform_tags: Iterable[str], text_tags: Iterable[str]) -> tuple[str, ...]:
    """Platform tags (normalised) first, in their order, then new tags from the text."""
    seen: dict[str, None] = {}
    for raw in platform_tags:
        tag = normalise_tag(raw)
        if tag:
            seen.setdefault(tag, None)
    for tag in text_tags:
        if tag:
            seen.setdefault(tag, None)
    return tuple(seen)
