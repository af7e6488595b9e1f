"""What a Jetstream event means: is it a followed post, a delete, or nothing of ours.

We keep a post when one of its hashtags is followed, looking in this order at
the facet tags (``app.bsky.richtext.facet#tag``), ``record.tags``, and the
hashtags found in the text (the same rule the enrichment stage uses), all
compared after :func:`monitor.tags.normalise_tag`.

Speed: most events of the firehose are not ours, so an event is only decoded
when its raw bytes could hold a followed tag (see :meth:`EventFilter.may_match`);
the check is exact for ASCII events and conservative for the rest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from monitor.enrich.text import extract_hashtags
from monitor.models import ImplausibleDate, Post, plausible_created
from monitor.tags import normalise_tag

__all__ = ["PLATFORM", "POST_COLLECTION", "EventFilter", "EventRejected", "parse_event",
           "parse_with"]

POST_COLLECTION = "app.bsky.feed.post"
PLATFORM = "bluesky"  # the same platform as Bluesky search: one at:// uri is one post
_TAG_FEATURE = "app.bsky.richtext.facet#tag"


class EventFilter:
    """Which raw events are worth decoding, and which decoded posts are ours."""

    def __init__(self, tags: list[str]) -> None:
        self.tags = frozenset(tags)
        # ASCII text is unchanged by NFKC and casefold is lower(), so for an
        # all-ASCII event a followed tag must appear as lowercase bytes.
        self.needles = tuple(t.encode() for t in self.tags if t.isascii())

    def may_match(self, raw: bytes) -> bool:
        """False only when *raw* cannot be a followed post nor a post delete."""
        if b'"delete"' in raw:
            return True
        if raw.isascii() and b"\\u" not in raw:
            low = raw.lower()
            # a plain loop: measurably faster than any() over a generator on this hot path
            for needle in self.needles:  # noqa: SIM110
                if needle in low:
                    return True
            return False
        # Non-ASCII or escaped: NFKC can turn fullwidth or styled letters into
        # a followed tag, so decode whenever the event carries any hashtag signal.
        return (
            b"facet#tag" in raw
            or b'"tags"' in raw
            or b"\xef\xbc\x83" in raw  # fullwidth number sign
            or b"\\u" in raw
            or raw.count(b"#") > raw.count(b"facet#")
        )

    def matches(self, record: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
        """(is it ours, the platform's own tags: facet tags then record.tags)."""
        platform_tags: list[str] = []
        facets = record.get("facets")
        if isinstance(facets, list):
            for facet in facets:
                features = facet.get("features") if isinstance(facet, dict) else None
                if not isinstance(features, list):
                    continue
                for feature in features:
                    if (isinstance(feature, dict) and feature.get("$type") == _TAG_FEATURE
                            and isinstance(feature.get("tag"), str)):
                        platform_tags.append(feature["tag"])
        extra = record.get("tags")
        if isinstance(extra, list):
            platform_tags.extend(t for t in extra if isinstance(t, str))
        tags = self.tags
        if any(normalise_tag(t) in tags for t in platform_tags):
            return True, tuple(platform_tags)
        text = record.get("text")
        if isinstance(text, str) and any(t in tags for t in extract_hashtags(text)):
            return True, tuple(platform_tags)
        return False, tuple(platform_tags)


class EventRejected(Exception):
    """A followed post that cannot be stored; names the field, never the text."""

    def __init__(self, key: str, field: str, problem: str) -> None:
        self.key = key
        self.field = field
        self.problem = problem
        super().__init__(f"{key}: {field} {problem}")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _to_post(did: str, rkey: str, record: dict[str, Any], tags: tuple[str, ...],
             time_us: int | None, raw_size: int) -> Post:
    key = f"at://{did}/{POST_COLLECTION}/{rkey}"
    text = record.get("text", "")
    if not isinstance(text, str):
        raise EventRejected(key, "record.text", f"must be a string, got {type(text).__name__}")
    created = _parse_time(record.get("createdAt"))
    if created is None:
        raise EventRejected(key, "record.createdAt", "is missing or not an ISO-8601 time")
    if time_us is not None:
        # createdAt is set by the client; like Bluesky's sortAt, a post cannot
        # be newer than the moment the network saw it.
        seen = datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)
        created = min(created, seen)
    try:
        created = plausible_created(created)  # year 0001 is not clamped by the above
    except ImplausibleDate as exc:
        raise EventRejected(key, "record.createdAt", str(exc)) from None
    langs = record.get("langs")
    lang = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    # self-labels (content warnings) as Bluesky search reads them
    labels = record.get("labels")
    values = labels.get("values") if isinstance(labels, dict) else None
    sensitive = isinstance(values, list) and any(
        isinstance(v, dict) and v.get("val") for v in values)
    return Post(
        platform=PLATFORM,
        key=key,
        created_at=created,
        url=f"https://bsky.app/profile/{did}/post/{rkey}",
        author=did,
        text=text,
        lang=lang,
        tags=tags,
        is_repost=False,
        sensitive=sensitive,
        raw_size=raw_size,
    )


def parse_event(raw: bytes | str, tags: list[str]) -> tuple[str, Post | str | None]:
    """Decode one Jetstream event: ("post", Post) / ("delete", key) / ("skip", None).

    Raises ``ValueError`` for a frame that is not a Jetstream event and
    :class:`EventRejected` (a ``ValueError`` too) for a followed post with a bad field.
    """
    return parse_with(raw, EventFilter(tags))


def parse_with(raw: bytes | str, flt: EventFilter) -> tuple[str, Post | str | None]:
    try:
        event = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "bad UTF-8"
        raise ValueError(f"not JSON ({reason})") from None
    if not isinstance(event, dict):
        raise ValueError(f"expected an event object, got {type(event).__name__}")
    if event.get("kind") != "commit":
        return "skip", None  # identity / account events only move the cursor
    commit = event.get("commit")
    did = event.get("did")
    if not isinstance(commit, dict) or not isinstance(did, str) or not did:
        raise ValueError("commit event without 'did' or 'commit'")
    if commit.get("collection") != POST_COLLECTION:
        return "skip", None
    rkey = commit.get("rkey")
    if not isinstance(rkey, str) or not rkey:
        raise ValueError("commit event without 'rkey'")  # no DID in logs without a post key
    operation = commit.get("operation")
    if operation == "delete":
        return "delete", f"at://{did}/{POST_COLLECTION}/{rkey}"
    if operation not in ("create", "update"):
        return "skip", None
    record = commit.get("record")
    if not isinstance(record, dict):
        raise EventRejected(f"at://{did}/{POST_COLLECTION}/{rkey}", "commit.record", "is missing")
    ours, platform_tags = flt.matches(record)
    if not ours:
        return "skip", None
    time_us = event.get("time_us")
    return "post", _to_post(did, rkey, record, platform_tags,
                            time_us if isinstance(time_us, int) else None, len(raw))
