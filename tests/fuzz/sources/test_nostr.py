"""Fuzz: Nostr events (validly signed, then perhaps tampered with) → Post, deletion, skip,
or EventRejected naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from monitor.sources.nostr_events import EventRejected, NostrFilter, parse_event
from tests.fakes.nostr import sign_event
from tests.fuzz.strategies import (
    TAGS,
    Stored,
    examples,
    junk,
    outcome,
    payload,
    recent,
    run,
    store_all,
    tags,
    texts,
)

hex64 = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
tag_lists = st.lists(st.one_of(
    st.tuples(st.just("t"), tags).map(list),
    st.tuples(st.just("e"), hex64 | texts).map(list),
    st.just(["content-warning", "cw"]),
    st.tuples(st.just("l"), st.sampled_from(["en", "de", ""]), st.just("ISO-639-1")).map(list),
    st.lists(texts, max_size=3)), max_size=4)
created = st.one_of(recent.map(lambda d: int(d.timestamp())), st.integers(-5, 2**40))


@st.composite
def events(draw: st.DrawFn) -> Any:
    author, when = draw(st.sampled_from(["alice", "bob"])), draw(created)
    kind, tag_list, content = draw(st.sampled_from([1, 1, 1, 5, 7, 30023])), draw(tag_lists), \
        draw(texts)
    try:
        event = sign_event(author, when, kind, tag_list, content)
    except UnicodeEncodeError:  # a lone surrogate: no client can sign it, a relay may send it
        event = sign_event(author, when, kind, [], "")
        event.update(tags=tag_list, content=content)
    # now and then one field tampered with: a wrong type, a missing key, a changed value
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(event)))
        how = draw(st.integers(0, 2))
        if how == 0:
            del event[name]
        elif how == 1:
            event[name] = draw(junk)
        elif isinstance(event[name], str):
            event[name] = event[name][::-1]
    return event


@examples
def test_event(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()
    flt = NostrFilter(TAGS)

    def check(event: object) -> None:
        result = outcome(lambda: parse_event(event, flt, 10), EventRejected)
        if isinstance(result, EventRejected):
            return
        what, value, eid, when = result
        assert what in ("post", "delete", "skip") and isinstance(eid, str)
        assert isinstance(when, int)
        if what == "post":
            stored.add(value)
        elif what == "delete":
            assert all(isinstance(k, str) for k in value)

    run(payload(events()), check, n_examples)
    store_all(stored.posts, tmp_path)
