"""Fuzz: Bluesky search postViews and Jetstream events → Post or a rejection naming the field."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import strategies as st

from monitor.sources.bluesky import parse_post_view
from monitor.sources.jetstream_events import EventFilter, EventRejected, parse_with
from tests.fuzz.strategies import (
    TAGS,
    Stored,
    epochs,
    examples,
    handles,
    iso_times,
    outcome,
    payload,
    record,
    run,
    store_all,
    tags,
    texts,
)

dids = st.one_of(st.from_regex(r"did:plc:[a-z2-7]{24}", fullmatch=True), st.text(max_size=20))
rkeys = st.one_of(st.from_regex(r"[a-z2-7]{13}", fullmatch=True), st.text(max_size=15))
feature = record(**{"$type": st.sampled_from(["app.bsky.richtext.facet#tag",
                                               "app.bsky.richtext.facet#link"]),
                    "tag": tags, "uri": texts})
facet = record(index=record(byteStart=st.integers(-5, 500), byteEnd=st.integers(-5, 500)),
               features=st.lists(feature, max_size=3))
_vals = st.sampled_from(["porn", "nudity", "", "graphic-media"])
labels = record(values=st.lists(record(val=_vals), max_size=2))
post_record = record(
    **{"$type": st.just("app.bsky.feed.post")}, text=texts, createdAt=iso_times,
    facets=st.lists(facet, max_size=3), tags=st.lists(tags, max_size=3),
    langs=st.lists(st.sampled_from(["en", "de", "ja", "", "en-US"]), max_size=2), labels=labels)
view = record(uri=st.builds("at://{}/app.bsky.feed.post/{}".format, dids, rkeys) | texts,
              cid=texts, author=record(did=dids, handle=handles), record=post_record,
              indexedAt=iso_times, labels=st.lists(record(val=st.sampled_from(["porn", "x"])),
                                                   max_size=2))


@examples
def test_post_view(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()

    def check(item: object) -> None:
        result = outcome(lambda: parse_post_view(item, 100), ValueError)
        if not isinstance(result, ValueError):
            post, indexed = result
            assert indexed.tzinfo is not None
            stored.add(post)

    run(payload(view), check, n_examples)
    store_all(stored.posts, tmp_path)


commit = record(rev=texts, operation=st.sampled_from(["create", "update", "delete", "x"]),
                collection=st.sampled_from(["app.bsky.feed.post", "app.bsky.feed.like"]),
                rkey=rkeys, record=post_record, cid=texts)
event = record(did=dids, time_us=epochs, kind=st.sampled_from(["commit", "identity", "account"]),
               commit=commit)


def _frame(value: object, cut: int | None, as_text: bool) -> bytes | str:
    raw = json.dumps(value, default=str)
    if cut is not None:
        raw = raw[:cut]  # a truncated frame
    return raw if as_text else raw.encode("utf-8", "surrogatepass")


frames = st.builds(_frame, payload(event), st.one_of(st.none(), st.integers(0, 80)),
                   st.booleans()) | st.binary(max_size=40)


@examples
def test_jetstream_event(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()
    flt = EventFilter(TAGS)

    def check(raw: bytes | str) -> None:
        # EventRejected names the field; a frame that is no event says what it lacks
        result = outcome(lambda: parse_with(raw, flt), (EventRejected, ValueError))
        if isinstance(result, EventRejected | ValueError):
            return
        what, value = result
        assert what in ("post", "delete", "skip")
        if what == "post":
            stored.add(value)
        elif what == "delete":
            assert isinstance(value, str) and value.startswith("at://")
        if isinstance(raw, bytes) and not flt.may_match(raw):
            assert what != "post", "the prefilter dropped a followed post"

    run(frames, check, n_examples)
    store_all(stored.posts, tmp_path)
