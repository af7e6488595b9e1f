"""Seeded posts for the fakes of the open platforms (Misskey, Lemmy, Hacker News, feeds).

Each of those fakes keeps its own list of :class:`Seed` (the shared
:class:`~tests.fakes.data.World` stays Mastodon/Bluesky), built from the same
sentences, so every fake can say exactly which posts the database should hold
(:meth:`Seed.expected`) and the end-to-end test can add them up per tag and
5-minute bucket.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from monitor.store.buckets import bucket_start
from tests.fakes.data import _SENTENCES, DISPLAY, TAGS

__all__ = ["Expected", "Seed", "SeedList", "default_start"]

# (platform, key) -> (created_at, tags): what one distinct stored post must look like
Expected = dict[tuple[str, str], tuple[datetime, tuple[str, ...]]]


def default_start(hours: float) -> datetime:
    return bucket_start(datetime.now(UTC) - timedelta(hours=hours, minutes=5))


@dataclass(slots=True)
class Seed:
    """One post of an open-platform fake; ``extra`` holds platform-specific bits."""

    n: int
    created_at: datetime
    tags: tuple[str, ...]
    sentence: str
    lang: str | None
    author: str
    hashed: bool = True  # tags written as "#MeToo" (else as the bare word "MeToo")
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def text(self) -> str:
        words = [("#" if self.hashed else "") + DISPLAY.get(t, t) for t in self.tags]
        return f"{self.sentence} {' '.join(words)}"


class SeedList:
    """A thread-safe, growing list of seeds (tests add posts while a fake serves)."""

    def __init__(self, seed: int, count: int, *, start: datetime | None = None,
                 hours: float = 3.0, first_n: int = 1) -> None:
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.hours = hours
        self.start = start or default_start(hours)
        self._next = first_n
        self.items: list[Seed] = []
        offsets = sorted(self.rng.uniform(0, hours * 3600) for _ in range(count))
        for offset in offsets:
            created = (self.start + timedelta(seconds=offset)).replace(microsecond=0)
            self.add(created_at=created)

    def add(self, tags: tuple[str, ...] | None = None, *, created_at: datetime | None = None,
            **extra: object) -> Seed:
        with self.lock:
            if tags is None:
                count = self.rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
                tags = tuple(self.rng.sample(TAGS, count))
            sentence, lang = self.rng.choice(_SENTENCES)
            created = created_at or datetime.now(UTC).replace(microsecond=0)
            seed = Seed(n=self._next, created_at=created, tags=tuple(tags), sentence=sentence,
                        lang=lang, author=f"user{self.rng.randrange(40)}",
                        hashed=self.rng.random() < 0.6, extra=dict(extra))
            self._next += 1
            self.items.append(seed)
            return seed

    def all(self) -> list[Seed]:
        with self.lock:
            return list(self.items)
