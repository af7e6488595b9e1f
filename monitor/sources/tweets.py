"""One mapping from an X (Twitter) API v2 tweet to a :class:`~monitor.models.Post`.

Both ways a v2 tweet comes in use it, so they cannot disagree on a field: the
``x`` collector (:mod:`monitor.sources.x`, recent search) and the
``twitter-v2`` import preset (:mod:`monitor.sources.files`), whose JSONL lines
are either single tweets or whole API answers (``{"data": [...],
"includes": {...}}``, as ``twarc2 search`` writes them).

=============  ==========================================================
Post field     from the tweet
=============  ==========================================================
key            ``id`` (a string; the platform's canonical id)
created_at     ``created_at`` (ISO-8601); if absent, the time in the id
               (a snowflake), as for ID-only datasets
text           ``note_tweet.text`` (posts over 280 characters) else ``text``
lang           ``lang``; X's non-languages (``und``, ``qme``, ``zxx``, ...)
               become None so the enrichment detects one
author         ``username`` of the author: from ``includes.users`` (the
               ``author_id`` expansion) or an embedded ``author`` object
               (twarc2's flattened lines); else the ``author_id``
tags           ``entities.hashtags[].tag``
url            ``https://x.com/<username>/status/<id>`` (``i/web`` when
               the username is unknown)
is_repost      a ``referenced_tweets`` entry of type ``retweeted``
sensitive      ``possibly_sensitive``
=============  ==========================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from monitor.models import ImplausibleDate, Post, plausible_created, utc

__all__ = ["PLATFORM", "TweetRejected", "tweet_lines", "tweet_post", "users_by_id"]

# Posts are stored under "twitter", the name the import examples use, so a tweet
# imported from a dataset and the same tweet collected live share one row.
PLATFORM = "twitter"

_TWITTER_EPOCH_MS = 1288834974657
# X's "language" codes that name no language: undetermined, media/hashtags/mentions/
# cashtags only, no linguistic content
_NOT_A_LANGUAGE = {"und", "qme", "qht", "qam", "qct", "qst", "zxx", "art"}


class TweetRejected(ValueError):
    """A malformed tweet; names the field and the problem, never the text."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def users_by_id(includes: Any) -> dict[str, Mapping[str, Any]]:
    """``includes.users`` of an API answer as {id: user}; malformed entries are left out."""
    users = includes.get("users") if isinstance(includes, Mapping) else None
    if not isinstance(users, list):
        return {}
    return {u["id"]: u for u in users
            if isinstance(u, Mapping) and isinstance(u.get("id"), str)}


def _created_at(tweet: Mapping[str, Any], key: str) -> datetime:
    raw = tweet.get("created_at")
    if raw is None:
        if key.isdigit() and int(key) >= (1 << 22):
            ms = (int(key) >> 22) + _TWITTER_EPOCH_MS
            try:
                return datetime.fromtimestamp(ms / 1000, tz=UTC)
            except (ValueError, OverflowError, OSError):  # a 22-digit id: past year 9999
                raise TweetRejected("id", "a snowflake id too large to carry a time") from None
        raise TweetRejected("created_at", "missing, and the id is not a snowflake")
    if not isinstance(raw, str):
        raise TweetRejected("created_at",
                            f"expected an ISO-8601 time, got {type(raw).__name__}")
    try:
        return utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        raise TweetRejected("created_at", "expected an ISO-8601 time") from None


def _text(tweet: Mapping[str, Any]) -> str:
    note = tweet.get("note_tweet")
    if isinstance(note, Mapping) and isinstance(note.get("text"), str) and note["text"]:
        return str(note["text"])
    text = tweet.get("text")
    if not isinstance(text, str):
        raise TweetRejected("text", "missing or not a string")
    return text


def _tags(tweet: Mapping[str, Any]) -> tuple[str, ...]:
    entities = tweet.get("entities")
    if entities is None:
        return ()
    if not isinstance(entities, Mapping):
        raise TweetRejected("entities", f"expected an object, got {type(entities).__name__}")
    hashtags = entities.get("hashtags", [])
    if not isinstance(hashtags, list):
        raise TweetRejected("entities.hashtags",
                            f"expected a list, got {type(hashtags).__name__}")
    tags: list[str] = []
    for index, item in enumerate(hashtags):
        tag = item.get("tag") if isinstance(item, Mapping) else None
        if not isinstance(tag, str) or not tag:
            raise TweetRejected(f"entities.hashtags[{index}].tag", "missing or not a string")
        tags.append(tag)
    return tuple(tags)


def _username(tweet: Mapping[str, Any], users: Mapping[str, Mapping[str, Any]] | None
              ) -> str | None:
    embedded = tweet.get("author")
    if isinstance(embedded, Mapping) and isinstance(embedded.get("username"), str):
        return str(embedded["username"])
    author_id = tweet.get("author_id")
    user = users.get(author_id) if users and isinstance(author_id, str) else None
    name = user.get("username") if user is not None else None
    return name if isinstance(name, str) and name else None


def tweet_post(tweet: Any, users: Mapping[str, Mapping[str, Any]] | None = None, *,
               platform: str = PLATFORM, raw_size: int = 0) -> Post:
    """A v2 tweet object → Post (see the module docstring for each field).

    *users* is ``includes.users`` by id (:func:`users_by_id`). Raises
    :class:`TweetRejected` naming the field for a malformed tweet.
    """
    if not isinstance(tweet, Mapping):
        raise TweetRejected("(tweet)", f"expected an object, got {type(tweet).__name__}")
    raw_id = tweet.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)  # an old export may hold the id as a JSON number
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise TweetRejected("id", "missing or not a string")
    key = raw_id.strip()
    try:  # a year-9999 time would fake the stream's last post and lag
        created_at = plausible_created(_created_at(tweet, key))
    except ImplausibleDate as exc:
        raise TweetRejected("created_at", str(exc)) from None
    text = _text(tweet)
    lang = tweet.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise TweetRejected("lang", f"expected a string or null, got {type(lang).__name__}")
    author_id = tweet.get("author_id")
    if author_id is not None and not isinstance(author_id, str):
        raise TweetRejected("author_id", f"expected a string, got {type(author_id).__name__}")
    username = _username(tweet, users)
    refs = tweet.get("referenced_tweets") or []
    if not isinstance(refs, list):
        raise TweetRejected("referenced_tweets", f"expected a list, got {type(refs).__name__}")
    sensitive = tweet.get("possibly_sensitive", False)
    if not isinstance(sensitive, bool):
        raise TweetRejected("possibly_sensitive",
                            f"expected true/false, got {type(sensitive).__name__}")
    return Post(
        platform=platform,
        key=key,
        created_at=created_at,
        url=f"https://x.com/{username or 'i/web'}/status/{key}",
        author=username or author_id or None,
        text=text,
        lang=None if not lang or lang.lower() in _NOT_A_LANGUAGE else lang,
        tags=_tags(tweet),
        is_repost=any(isinstance(r, Mapping) and r.get("type") == "retweeted" for r in refs),
        sensitive=sensitive,
        raw_size=raw_size,
    )


def tweet_lines(lines: Iterable[str], *, platform: str, start_line: int = 0,
                default_tags: tuple[str, ...] = ()) -> Iterator[tuple[int, Post | str]]:
    """The ``twitter-v2`` import: (line number, Post or why the item was skipped).

    A line is one tweet object or one whole API answer (``data`` + ``includes``;
    its authors come from ``includes.users``, as in the collector). Lines up to
    *start_line* are skipped (resuming); a bad item of an answer is skipped
    alone, named by its id.
    """
    for number, line in enumerate(lines, start=1):
        if number <= start_line or not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON ({exc.msg} at column {exc.colno})"
            continue
        except RecursionError:  # "[[[[…" nested deeper than the decoder's stack (fuzzing)
            yield number, "invalid JSON (nested too deeply)"
            continue
        if not isinstance(record, dict):
            yield number, f"expected a JSON object, got {type(record).__name__}"
            continue
        data = record.get("data")
        if "id" in record or not isinstance(data, list):
            items: list[Any] = [record]
            users: dict[str, Mapping[str, Any]] = {}
        else:
            items, users = data, users_by_id(record.get("includes"))
        size = len(line) // max(1, len(items))
        for item in items:
            try:
                post = tweet_post(item, users, platform=platform, raw_size=size)
            except TweetRejected as exc:
                ref = item.get("id") if isinstance(item, Mapping) and len(items) > 1 else None
                yield number, (f"tweet {ref}: {exc}" if isinstance(ref, str) else str(exc))
                continue
            if default_tags:
                post = replace(post, tags=post.tags + default_tags)
            yield number, post
