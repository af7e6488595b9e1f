"""The known world the fake platforms serve: a seeded, reproducible set of posts.

Every post's hashtags appear both in the platform's metadata and in its text
(Bluesky posts may carry one extra tag only in ``record.tags``, as the real
app allows), so the tags the enrichment stage derives are exactly
``SeedPost.tags``. That makes the expected counts per tag and per 5-minute
bucket computable here, for the end-to-end test to compare with the database.

Mastodon posts are federated to one or both fake instances ("a", "b"): the
same ``uri`` with a different instance-local ``id``.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.store.buckets import bucket_start

__all__ = ["INSTANCES", "TAGS", "SeedPost", "World", "bluesky_record", "snowflake"]

TAGS = ("metoo", "notallmen", "howiwillchange", "ididit")
DISPLAY = {"metoo": "MeToo", "notallmen": "NotAllMen", "howiwillchange": "HowIWillChange",
           "ididit": "IDidIt"}
INSTANCES = ("a", "b")

# Sentences in several languages, some with emoji; none contains '#' so the only
# hashtags in a text are the ones appended from SeedPost.tags.
_SENTENCES: tuple[tuple[str, str | None], ...] = (
    ("Still listening, still learning.", "en"),
    ("This thread made me cry 😢 but I'm glad people speak up.", "en"),
    ("Seven years on and nothing has changed. Angry and tired.", "en"),
    ("I will call it out when I see it at work. 💪", "en"),
    ("Not every story gets heard; this one should.", "en"),
    ("Great panel tonight, thank you all ❤️", "en"),
    ("Honestly this is exhausting & infuriating <br> stuff", "en"),
    ("Je vous crois. Toujours. ✊", "fr"),
    ("Ich glaube dir. Wir müssen zuhören.", "de"),
    ("Yo también. No estás sola 💜", "es"),
    ("私も。声を上げた人を支持します。", "ja"),
    ("Jag tror på dig.", "sv"),
    ("what a day… 🙃", None),
)


def snowflake(created_at: datetime, seq: int) -> str:
    """A Mastodon-style id: milliseconds << 16 | sequence, as a decimal string."""
    return str((int(created_at.timestamp() * 1000) << 16) | (seq & 0xFFFF))


@dataclass(frozen=True, slots=True)
class SeedPost:
    """One post of the fake world, platform-neutral."""

    n: int
    platform: str  # "mastodon" | "bluesky"
    created_at: datetime
    tags: tuple[str, ...]  # normalised
    text: str  # plain text including the hashtags
    lang: str | None
    author: str  # mastodon: username; bluesky: did
    sensitive: bool = False
    spoiler_text: str = ""
    instances: tuple[str, ...] = ()  # mastodon: which fake instances received it
    extra_tags: tuple[str, ...] = ()  # bluesky: tags only in record.tags
    ids: dict[str, str] = field(default_factory=dict)  # mastodon: instance → local id
    origin: str = "origin.example"  # mastodon: the host the status was posted on

    @property
    def uri(self) -> str:
        """The canonical key (Mastodon status uri / Bluesky at:// uri)."""
        if self.platform == "mastodon":
            return f"https://{self.origin}/users/{self.author}/statuses/{self.n:08d}"
        return f"at://{self.author}/app.bsky.feed.post/{self.rkey}"

    @property
    def did(self) -> str:
        return self.author

    @property
    def rkey(self) -> str:
        return f"3lfake{self.n:07d}"

    @property
    def indexed_at(self) -> datetime:
        return self.created_at + timedelta(milliseconds=400)

    def html(self) -> str:
        """Mastodon-style sanitised HTML with hashtag links."""
        # escape first (sentences may hold a literal '<br>' or '&'), then link the tags
        body = self.text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for tag in self.tags:
            word = "#" + DISPLAY.get(tag, tag)
            link = (f'<a href="https://origin.example/tags/{tag}" class="mention hashtag" '
                    f'rel="tag">#<span>{DISPLAY.get(tag, tag)}</span></a>')
            body = body.replace(word, link)
        return f"<p>{body}</p>"


def _text_with_tags(sentence: str, tags: Iterable[str]) -> str:
    return sentence + " " + " ".join("#" + DISPLAY.get(t, t) for t in tags)


def bluesky_record(post: SeedPost) -> dict[str, Any]:
    """The app.bsky.feed.post record of a Bluesky seed post (facets on UTF-8 byte ranges)."""
    facets = []
    raw = post.text.encode("utf-8")
    for tag in post.tags:
        if tag in post.extra_tags:
            continue
        needle = ("#" + DISPLAY.get(tag, tag)).encode("utf-8")
        start = raw.find(needle)
        if start < 0:
            continue
        facets.append({
            "$type": "app.bsky.richtext.facet",
            "index": {"byteStart": start, "byteEnd": start + len(needle)},
            "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": DISPLAY.get(tag, tag)}],
        })
    record: dict[str, Any] = {
        "$type": "app.bsky.feed.post",
        "text": post.text,
        "createdAt": post.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "facets": facets,
    }
    if post.lang:
        record["langs"] = [post.lang]
    if post.extra_tags:
        record["tags"] = list(post.extra_tags)
    if post.sensitive:
        record["labels"] = {"$type": "com.atproto.label.defs#selfLabels",
                            "values": [{"val": "graphic-media"}]}
    return record


class World:
    """The posts every fake serves; thread-safe so tests can add posts while fakes run.

    ``start`` defaults to three hours before now, floored to a 5-minute bucket;
    posts are spread over ``hours`` from there, so none lies in the future.
    """

    def __init__(
        self,
        *,
        seed: int = 7,
        start: datetime | None = None,
        hours: float = 3.0,
        mastodon_posts: int = 120,
        bluesky_posts: int = 80,
    ) -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        if start is None:
            now = datetime.now(UTC) - timedelta(hours=hours, minutes=5)
            start = bucket_start(now)
        self.start = start
        self.hours = hours
        self._posts: list[SeedPost] = []
        self._seq: dict[str, int] = {i: 0 for i in INSTANCES}
        span = hours * 3600
        offsets = sorted(self.rng.uniform(0, span) for _ in range(mastodon_posts + bluesky_posts))
        platforms = ["mastodon"] * mastodon_posts + ["bluesky"] * bluesky_posts
        self.rng.shuffle(platforms)
        for offset, platform in zip(offsets, platforms, strict=True):
            created = (start + timedelta(seconds=offset)).replace(microsecond=0)
            created += timedelta(milliseconds=self.rng.randrange(1000))
            if platform == "mastodon":
                self._add_mastodon(created)
            else:
                self._add_bluesky(created)

    # -- generation -----------------------------------------------------------------

    def _pick_tags(self) -> tuple[str, ...]:
        count = self.rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
        return tuple(self.rng.sample(TAGS, count))

    def _add_mastodon(self, created: datetime, tags: tuple[str, ...] | None = None,
                      instances: tuple[str, ...] | None = None,
                      origin: str = "origin.example") -> SeedPost:
        tags = tags or self._pick_tags()
        if instances is None:
            instances = self.rng.choices([("a",), ("b",), ("a", "b")], weights=[4, 3, 3])[0]
        sentence, lang = self.rng.choice(_SENTENCES)
        spoiler = "cw: violence" if self.rng.random() < 0.08 else ""
        n = len(self._posts) + 1
        ids = {}
        for instance in instances:
            self._seq[instance] += 1
            # a per-instance salt in the low bits: same post, different id on each instance
            ids[instance] = snowflake(created, self._seq[instance] * 2 + INSTANCES.index(instance))
        post = SeedPost(
            n=n, platform="mastodon", created_at=created, tags=tags,
            text=_text_with_tags(sentence, tags), lang=lang,
            author=f"user{self.rng.randrange(40)}", sensitive=bool(spoiler),
            spoiler_text=spoiler, instances=instances, ids=ids, origin=origin,
        )
        self._posts.append(post)
        return post

    def _add_bluesky(self, created: datetime, tags: tuple[str, ...] | None = None) -> SeedPost:
        tags = tags or self._pick_tags()
        extra: tuple[str, ...] = ()
        if len(tags) > 1 and self.rng.random() < 0.3:
            extra = (tags[-1],)
        in_text = tuple(t for t in tags if t not in extra)
        sentence, lang = self.rng.choice(_SENTENCES)
        n = len(self._posts) + 1
        post = SeedPost(
            n=n, platform="bluesky", created_at=created, tags=tags,
            text=_text_with_tags(sentence, in_text), lang=lang,
            author=f"did:plc:fake{self.rng.randrange(60):04d}",
            sensitive=self.rng.random() < 0.05, extra_tags=extra,
        )
        self._posts.append(post)
        return post

    # -- public ---------------------------------------------------------------------

    def add_mastodon_post(self, tags: Iterable[str] = ("metoo",), *,
                          instances: tuple[str, ...] = ("a",),
                          created_at: datetime | None = None,
                          origin: str = "origin.example") -> SeedPost:
        """A new status, as if just posted (ids grow, so polling picks it up).

        *origin*: the host it was posted on (its uri's host; a fake's ``host``
        makes that fake the origin, which answers ``/api/v1/statuses/:id``)."""
        with self.lock:
            created = created_at or datetime.now(UTC)
            return self._add_mastodon(created, tuple(tags), instances, origin)

    def delete(self, post: SeedPost) -> None:
        """The author deleted *post*: no fake serves it any more."""
        with self.lock:
            self._posts = [p for p in self._posts if p.uri != post.uri]

    def add_bluesky_post(self, tags: Iterable[str] = ("metoo",), *,
                         created_at: datetime | None = None) -> SeedPost:
        with self.lock:
            return self._add_bluesky(created_at or datetime.now(UTC), tuple(tags))

    def posts(self, platform: str | None = None) -> list[SeedPost]:
        with self.lock:
            return [p for p in self._posts if platform is None or p.platform == platform]

    def mastodon_posts(self, instance: str | None = None) -> list[SeedPost]:
        return [p for p in self.posts("mastodon") if instance is None or instance in p.instances]

    def bluesky_posts(self) -> list[SeedPost]:
        return self.posts("bluesky")

    def by_uri(self, uri: str) -> SeedPost:
        for post in self.posts():
            if post.uri == uri:
                return post
        raise KeyError(uri)

    def expected_keys(self, platforms: Iterable[str] = ("mastodon", "bluesky"),
                      tags: Iterable[str] = TAGS) -> set[tuple[str, str]]:
        """(platform, key) of every distinct post carrying one of *tags*."""
        wanted, plats = set(tags), set(platforms)
        return {(p.platform, p.uri) for p in self.posts()
                if p.platform in plats and wanted & set(p.tags)}

    def expected_tag_counts(self, platforms: Iterable[str] = ("mastodon", "bluesky")
                            ) -> dict[str, int]:
        plats = set(platforms)
        counts: Counter[str] = Counter()
        for post in self.posts():
            if post.platform in plats:
                counts.update(post.tags)
        return dict(counts)

    def expected_bucket_counts(self, platforms: Iterable[str] = ("mastodon", "bluesky")
                               ) -> dict[tuple[str, datetime], int]:
        """Posts per (tag, 5-minute bucket start, UTC)."""
        plats = set(platforms)
        counts: Counter[tuple[str, datetime]] = Counter()
        for post in self.posts():
            if post.platform in plats:
                bucket = bucket_start(post.created_at)
                counts.update((tag, bucket) for tag in post.tags)
        return dict(counts)
