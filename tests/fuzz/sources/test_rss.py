"""Fuzz: RSS and Atom feeds, through feedparser as the collector reads them → Post, None or
Rejected naming the field."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import feedparser
import pytest
from hypothesis import strategies as st

from monitor.sources.fields import Rejected
from monitor.sources.rss import parse_entry
from tests.fuzz.strategies import (
    TAGS,
    Stored,
    examples,
    handles,
    iso_times,
    outcome,
    recent,
    run,
    store_all,
    tags,
    texts,
    urls,
)

dates = st.one_of(recent.map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S +0000")), iso_times,
                  st.sampled_from(["Mon, 31 Dec 9999 23:59:59 +0000",
                                   "Sat, 01 Jan 0001 00:00:00 +0000"]))
links = st.one_of(urls, st.from_regex(r"https://mastodon\.example/@[a-z]{1,8}/[0-9]{1,18}",
                                      fullmatch=True))


def _opt(tag: str, value: str | None) -> str:
    return "" if value is None else f"<{tag}>{escape(value)}</{tag}>"


@st.composite
def rss_item(draw: st.DrawFn) -> str:
    parts = [_opt("title", draw(st.none() | texts)), _opt("link", draw(st.none() | links)),
             _opt("guid", draw(st.none() | texts)), _opt("pubDate", draw(st.none() | dates)),
             _opt("description", draw(st.none() | texts)),
             _opt("author", draw(st.none() | handles))]
    parts += [_opt("category", t) for t in draw(st.lists(tags, max_size=3))]
    return "<item>" + "".join(draw(st.permutations(parts))) + "</item>"


@st.composite
def atom_entry(draw: st.DrawFn) -> str:
    link = draw(st.none() | links)
    parts = [_opt("title", draw(st.none() | texts)), _opt("id", draw(st.none() | texts)),
             _opt("updated", draw(st.none() | dates)), _opt("published", draw(st.none() | dates)),
             _opt("content", draw(st.none() | texts)),
             "" if link is None else f'<link href="{escape(link, {chr(34): "&quot;"})}"/>']
    parts += [f'<category term="{escape(t, {chr(34): "&quot;"})}"/>'
              for t in draw(st.lists(tags, max_size=3))]
    return "<entry>" + "".join(parts) + "</entry>"


@st.composite
def feeds(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        body = ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
                + "".join(draw(st.lists(rss_item(), max_size=4))) + "</channel></rss>")
    else:
        body = ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
                + "".join(draw(st.lists(atom_entry(), max_size=4))) + "</feed>")
    raw = body.encode("utf-8", "surrogatepass")
    cut = draw(st.one_of(st.none(), st.none(), st.integers(0, len(raw))))
    return raw if cut is None else raw[:cut]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # feedparser's own, about itself
@examples
def test_feed(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()

    def check(raw: bytes) -> None:
        parsed: Any = feedparser.parse(raw, response_headers={"content-type": "application/xml"})
        for entry in parsed.get("entries") or []:
            for tag_feed in (True, False):
                result = outcome(partial(parse_entry, entry, TAGS, tag_feed=tag_feed,
                                         raw_size=len(raw)), Rejected)
                if result is not None and not isinstance(result, Rejected):
                    stored.add(result)

    run(feeds(), check, n_examples)
    store_all(stored.posts, tmp_path)
