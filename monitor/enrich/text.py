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
:func:`monitor.tags.normalise_tag`, which cuts at the first character that
is not a letter, digit, mark or ``_``: ``#MeToo.`` and ``#MeToo's`` are both
``metoo``, as Mastodon links them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser, LexborNode

from monitor.tags import normalise_tag

__all__ = [
    "extract_hashtags",
    "html_to_text",
    "merge_tags",
    "normalise_tag",
    "normalise_whitespace",
]

# Private-use characters mark line and block breaks while the HTML whitespace
# is collapsed; they are removed from the input first so a post cannot forge one.
_BR = "\ue000"
_BLOCK = "\ue001"

# elements that start a new paragraph (blank line) or a new line
_BLOCK_TAGS = frozenset({"p", "div", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "pre",
                         "ul", "ol", "table", "section", "article", "header", "footer",
                         "figure", "hr"})
_LINE_TAGS = frozenset({"li", "tr", "dt", "dd"})
_MARKED_TAGS = _BLOCK_TAGS | _LINE_TAGS | {"br"}
# never post text: code, styles and embedded documents
_DROP_TAGS = ("script", "style", "template", "noscript", "iframe", "object", "svg", "math")
_DROP_OPEN = re.compile(f"(?i)<(?:{'|'.join(_DROP_TAGS)})")

# whitespace that is not already a single space (a single space needs no rewrite)
_SPACE_RUN = re.compile(r"[\t\n\r\f\v][ \t\n\r\f\v]*| [ \t\n\r\f\v]+")
_OTHER_SPACES = ("\n", "\t", "\r", "\f", "\v")  # what _SPACE_RUN rewrites, with "  "

# Where a hashtag may start (Mastodon's HASHTAG_RE: not after a word character,
# '/' or ')'); '&' keeps '&#39;' out, '#' keeps '##x' to one tag at most.
_TAG_CANDIDATE = re.compile(r"(?<![\w/)&#＃])[#＃]([^\s#＃]+)")
# what separates a link from the text around it
_SPACES = (" ", "\n", "\t", "\r", "\u00a0", "\u3000")


def normalise_whitespace(text: str) -> str:
    """Strip each line, collapse runs of spaces, keep at most one blank line between paragraphs."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


class _Scratch(threading.local):
    """A parsed document reused for fragments (one per thread).

    Creating a lexbor document costs ~20 µs, ten times the parse of a typical
    post, so posts are parsed into a reused ``<div>`` instead. lexbor frees a
    document's memory only with the document, so it is replaced every
    ``_REUSES`` posts (~1.6 KB each) to keep memory flat.
    """

    def __init__(self) -> None:
        self.uses = 0
        self.container = self._fresh()

    @staticmethod
    def _fresh() -> LexborNode:
        container = LexborHTMLParser("<div></div>").css_first("div")
        assert container is not None
        return container

    def parse(self, html: str) -> LexborNode:
        self.uses += 1
        if self.uses > _REUSES:
            self.uses = 1
            self.container = self._fresh()
        self.container.inner_html = html
        return self.container


_REUSES = 2000
_scratch = _Scratch()


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment (Mastodon ``content`` and similar).

    Paragraphs are separated by a blank line, ``<br>`` becomes a newline,
    entities are decoded and source whitespace is collapsed as a browser does.
    Links keep their full text: Mastodon splits a long URL into
    ``invisible``/``ellipsis`` spans for display, and joining all of them gives
    back the whole URL instead of a truncated ``example.com/very/lo``.
    ``<script>``/``<style>`` and similar non-text elements are dropped.
    """
    if _BR in html or _BLOCK in html:
        html = html.replace(_BR, "").replace(_BLOCK, "")
    if "<" not in html and "&" not in html:
        return normalise_whitespace(html)
    root = _scratch.parse(html)
    if _DROP_OPEN.search(html):
        for node in root.css(", ".join(_DROP_TAGS)):
            node.decompose()
    # collect first, then edit: inserting text while traversing would be walked too
    root_id = root.mem_id  # traverse() starts with the container itself
    marked = [n for n in root.traverse() if n.tag in _MARKED_TAGS and n.mem_id != root_id]
    for node in marked:
        tag = node.tag
        if tag == "br":
            node.replace_with(_BR)
        elif tag in _LINE_TAGS:
            node.insert_before(_BR)
        else:
            node.insert_before(_BLOCK)
            node.insert_after(_BLOCK)
    return _assemble(root.text(deep=True))


def _assemble(marked: str) -> str:
    """Collapse HTML whitespace, then turn the break markers into newlines."""
    paragraphs = []
    # most posts' text nodes hold single spaces only (their breaks are <p>/<br>
    # markers): then the collapsing regex, which scans every character, changes nothing
    if "  " in marked or any(space in marked for space in _OTHER_SPACES):
        marked = _SPACE_RUN.sub(" ", marked)
    for block in marked.split(_BLOCK):
        if _BR in block:
            block = "\n".join(line.strip() for line in block.split(_BR))
        block = block.strip()
        if block:
            paragraphs.append(block)
    return "\n\n".join(paragraphs)


def extract_hashtags(text: str) -> list[str]:
    """Normalised hashtags in *text*, in order of first appearance, without duplicates."""
    if "#" not in text and "＃" not in text:
        return []
    links = "://" in text or "www." in text or "WWW." in text
    seen: dict[str, None] = {}
    for match in _TAG_CANDIDATE.finditer(text):
        if links and _inside_link(text, match.start()):
            continue
        tag = _tag_in_text(match.group(1))
        if tag:
            seen[tag] = None
    return list(seen)


def _inside_link(text: str, at: int) -> bool:
    """Whether position *at* is inside a URL ('https://x/?q=#y', 'www.x.org/a-#b')."""
    start = max(text.rfind(space, 0, at) for space in _SPACES) + 1
    token = text[start:at]
    return "://" in token or token[:4].lower() == "www."


@lru_cache(maxsize=16384)
def _tag_in_text(candidate: str) -> str:
    """The tag a '#candidate' in text stands for, or '' (a tag needs a letter: '#1' is not one)."""
    tag = normalise_tag(candidate)
    return tag if any(ch.isalpha() for ch in tag) else ""


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
