"""Fuzz: Telegram t.me/s preview pages → posts and message rejections, never an exception."""

from __future__ import annotations

import html
from pathlib import Path

from hypothesis import strategies as st

from monitor.sources.telegram import MessageRejected, parse_page
from tests.fuzz.strategies import (
    TAGS,
    Stored,
    examples,
    iso_times,
    run,
    store_all,
    tags,
    texts,
)


@st.composite
def messages(draw: st.DrawFn) -> str:
    ref = draw(st.one_of(st.from_regex(r"newsroom/[0-9]{1,6}", fullmatch=True), texts))
    body = html.escape(draw(texts)) if draw(st.booleans()) else draw(texts)
    links = "".join(f'<a href="?q=%23{html.escape(t)}">#{html.escape(t)}</a> '
                    for t in draw(st.lists(tags, max_size=3)))
    when = draw(st.one_of(iso_times, st.none()))
    time_tag = (f'<a class="tgme_widget_message_date"><time datetime="{html.escape(when)}">'
                "</time></a>" if when is not None else "")
    forwarded = '<div class="tgme_widget_message_forwarded_from">x</div>' if draw(
        st.booleans()) else ""
    text = (f'<div class="tgme_widget_message_text">{body} {links}</div>'
            if draw(st.integers(0, 5)) else "")
    return (f'<div class="tgme_widget_message" data-post="{html.escape(ref)}">'
            f"{forwarded}{text}{time_tag}</div>")


@st.composite
def pages(draw: st.DrawFn) -> str:
    items = "".join(draw(st.lists(messages(), max_size=5)))
    before = draw(st.one_of(st.none(), st.integers(0, 10**6).map(str), texts))
    more = (f'<a class="tme_messages_more" data-before="{html.escape(before)}"></a>'
            if before is not None else "")
    page = f"<html><body><section>{items}{more}</section></body></html>"
    cut = draw(st.one_of(st.none(), st.integers(0, len(page))))
    return page if cut is None else page[:cut]  # a truncated page


@examples
def test_preview_page(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()

    def check(page: str) -> None:
        posts, ids, rejected, before = parse_page(page, "newsroom", frozenset(TAGS), len(page))
        for post in posts:
            stored.add(post)
        assert all(isinstance(i, str) for i in ids)
        for item in rejected:
            assert isinstance(item, MessageRejected) and item.field
        assert before is None or before.isdigit()

    run(st.one_of(pages(), pages(), st.text(max_size=200)), check, n_examples)
    store_all(stored.posts, tmp_path)
