"""Fuzz: Reddit listing children → Post, None (no tag word) or PostRejected naming the field."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from monitor.sources.reddit import PostRejected, parse_listing_post, tag_words
from tests.fuzz.strategies import (
    TAGS,
    Stored,
    epochs,
    examples,
    handles,
    outcome,
    payload,
    record,
    run,
    store_all,
    texts,
)

child = record(kind=st.just("t3"), data=record(
    name=st.one_of(st.from_regex(r"t3_[a-z0-9]{1,8}", fullmatch=True), texts),
    created_utc=epochs, title=texts, selftext=texts, author=handles | st.just("[deleted]"),
    permalink=st.sampled_from(["/r/x/comments/1/a/", "", "//evil.example"]) | texts,
    over_18=st.booleans(), spoiler=st.booleans(), crosspost_parent=texts, subreddit=handles))


@examples
def test_listing_child(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()
    words = tag_words(TAGS)

    def check(item: object) -> None:
        result = outcome(lambda: parse_listing_post(item, words, 10), PostRejected)
        if result is not None and not isinstance(result, PostRejected):
            stored.add(result)

    run(payload(child), check, n_examples)
    store_all(stored.posts, tmp_path)
