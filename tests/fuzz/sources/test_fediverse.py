"""Fuzz: Misskey notes, Lemmy post views and Hacker News hits → Post, None or Rejected."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from monitor.sources.fields import Rejected
from monitor.sources.hackernews import parse_hit
from monitor.sources.lemmy import parse_post_view
from monitor.sources.misskey import parse_note
from tests.fuzz.strategies import (
    TAGS,
    Stored,
    epochs,
    examples,
    handles,
    hosts,
    html_texts,
    iso_times,
    junk,
    outcome,
    payload,
    record,
    run,
    store_all,
    tags,
    texts,
    urls,
)

user = record(username=handles, host=st.one_of(st.none(), hosts))
_note = dict(id=st.from_regex(r"[a-z0-9]{10}", fullmatch=True) | texts, uri=urls, url=urls,
             createdAt=iso_times, user=user, text=st.one_of(st.none(), texts),
             cw=st.one_of(st.none(), texts), tags=st.lists(tags, max_size=3),
             fileIds=st.lists(texts, max_size=1), poll=st.one_of(st.none(), junk))
note = record(**_note, renote=st.one_of(st.none(), record(**_note)))


@examples
def test_misskey_note(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()

    def check(item: object) -> None:
        result = outcome(lambda: parse_note(item, "https://misskey.example", 10), Rejected)
        if not isinstance(result, Rejected):
            stored.add(result)

    run(payload(note), check, n_examples)
    store_all(stored.posts, tmp_path)


post_view = record(
    post=record(id=st.integers(), ap_id=urls, name=texts, body=st.one_of(st.none(), texts),
                published=iso_times, deleted=st.booleans(), removed=st.booleans(),
                nsfw=st.booleans(), url=urls),
    creator=record(name=handles, actor_id=st.one_of(st.none(), urls)),
    community=record(name=handles))


@examples
def test_lemmy_post_view(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()

    def check(item: object) -> None:
        result = outcome(lambda: parse_post_view(item, TAGS, 10), Rejected)
        if result is not None and not isinstance(result, Rejected):
            stored.add(result)

    run(payload(post_view), check, n_examples)
    store_all(stored.posts, tmp_path)


hit = record(objectID=st.integers(0, 10**9).map(str) | texts, created_at_i=epochs,
             title=st.one_of(st.none(), texts), story_text=st.one_of(st.none(), html_texts),
             comment_text=st.one_of(st.none(), html_texts), author=handles,
             _tags=st.lists(st.sampled_from(["story", "comment"]), max_size=2))


@examples
def test_hackernews_hit(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()

    def check(item: object) -> None:
        result = outcome(lambda: parse_hit(item, TAGS, 10), Rejected)
        if result is not None and not isinstance(result, Rejected):
            stored.add(result)

    run(payload(hit), check, n_examples)
    store_all(stored.posts, tmp_path)
