"""Fuzz: X/Twitter API v2 answers → Post or TweetRejected naming the field."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from hypothesis import strategies as st

from monitor.sources.tweets import TweetRejected, tweet_post, users_by_id
from tests.fuzz.strategies import (
    Stored,
    examples,
    handles,
    iso_times,
    numeric_ids,
    outcome,
    payload,
    record,
    run,
    store_all,
    tags,
    texts,
)

tweet = record(
    id=numeric_ids | st.integers(0, 2**64), text=texts, created_at=iso_times,
    author_id=numeric_ids, lang=st.sampled_from(["en", "und", "qme", "", None, "pt-BR"]),
    entities=record(hashtags=st.lists(record(tag=tags, start=st.integers(), end=st.integers()),
                                      max_size=3)),
    referenced_tweets=st.lists(record(type=st.sampled_from(["retweeted", "quoted", "replied_to"]),
                                      id=numeric_ids), max_size=2),
    possibly_sensitive=st.booleans(), note_tweet=record(text=texts),
    author=record(username=handles))
answer = record(data=st.lists(payload(tweet), max_size=4),
                includes=record(users=st.lists(record(id=numeric_ids, username=handles),
                                               max_size=3)),
                meta=record(newest_id=numeric_ids, next_token=texts))


@examples
def test_search_answer(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()

    def check(body: object) -> None:
        data = body.get("data") if isinstance(body, dict) else None
        users = users_by_id(body.get("includes") if isinstance(body, dict) else None)
        for item in data if isinstance(data, list) else [body]:
            result = outcome(partial(tweet_post, item, users, raw_size=10), TweetRejected)
            if not isinstance(result, TweetRejected):
                stored.add(result)

    run(payload(answer), check, n_examples)
    store_all(stored.posts, tmp_path)
