"""A fake X API v2 (recent search) on 127.0.0.1 with its own seeded tweets.

``GET /2/tweets/search/recent`` as documented: ``Authorization: Bearer``
required (401 ``Unauthorized`` otherwise); ``query`` with ``#tag`` terms (AND)
and ``-is:retweet``; ``max_results`` 10–100 (400 outside); ``since_id`` /
``until_id``; an opaque ``next_token``; newest first;
``{"data", "includes": {"users"}, "meta": {newest_id, oldest_id,
result_count, next_token?}}`` and ``{"meta": {"result_count": 0}}`` when
empty; ``tweet.fields`` / ``expansions=author_id`` honoured for
``includes.users``. Every answer has ``x-rate-limit-limit/remaining/reset``
(reset in epoch seconds); over the window, 429 with the same headers and no
Retry-After. A ``since_id`` older than the fake's 7-day horizon answers 400
``Invalid Request``. Faults come from the shared queue (``fake.faults``).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.store.buckets import bucket_start
from tests.fakes.data import DISPLAY, TAGS
from tests.fakes.server import (
    FakeBase,
    RateWindow,
    RunningServer,
    admin_routes,
    apply_fault,
    iso,
    run_app,
)

__all__ = ["BEARER", "PLATFORM", "FakeTweet", "XFake", "start_x_fake", "tweet_snowflake"]

PLATFORM = "twitter"
BEARER = "fake-x-bearer-token"
_EPOCH_MS = 1288834974657
_SENTENCES = (
    ("Believe survivors.", "en"), ("This has to stop, everywhere.", "en"),
    ("Je te crois.", "fr"), ("Wir hören zu.", "de"), ("Yo también.", "es"),
    ("So proud of everyone speaking up today ❤️", "en"), ("...", None),
)


def tweet_snowflake(created_at: datetime, seq: int) -> str:
    """An X id: (milliseconds since the Twitter epoch) << 22 | sequence, as a string."""
    return str(((int(created_at.timestamp() * 1000) - _EPOCH_MS) << 22) | (seq & 0x3FFFFF))


def _key(value: str) -> tuple[int, str]:
    return (len(value), value)


@dataclass(frozen=True, slots=True)
class FakeTweet:
    id: str
    created_at: datetime
    text: str
    tags: tuple[str, ...]  # normalised
    lang: str | None
    author_id: str
    retweet: bool = False
    sensitive: bool = False


class XFake(FakeBase):
    """One fake api.x.com serving its own tweets (see the module docstring)."""

    def __init__(self, *, seed: int = 5, tweets: int = 60, hours: float = 2.0,
                 start: datetime | None = None, token: str = BEARER) -> None:
        super().__init__()
        self.token = token
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.tweets: list[FakeTweet] = []
        self.corruptions: dict[str, dict[str, Any]] = {}
        self.server: RunningServer | None = None
        self.rate = RateWindow(450, 900.0)  # the documented app-auth window shape
        self._seq = 0
        if start is None:
            start = bucket_start(datetime.now(UTC) - timedelta(hours=hours, minutes=5))
        offsets = sorted(self.rng.uniform(0, hours * 3600) for _ in range(tweets))
        for offset in offsets:
            created = (start + timedelta(seconds=offset)).replace(microsecond=0)
            count = self.rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
            # every tenth is a retweet: -is:retweet must keep it out
            self._add(created, tuple(self.rng.sample(TAGS, count)),
                      retweet=len(self.tweets) % 10 == 9)
        self.app = Starlette(routes=[
            Route("/2/tweets/search/recent", self.search),
            *admin_routes(self, self._admin_add, self._admin_expected),
        ])

    # -- control ----------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None, "fake not started"
        return self.server.url

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def _add(self, created: datetime, tags: tuple[str, ...], *, retweet: bool = False
             ) -> FakeTweet:
        with self.lock:
            self._seq += 1
            sentence, lang = self.rng.choice(_SENTENCES)
            text = sentence + " " + " ".join("#" + DISPLAY.get(t, t) for t in tags)
            tweet = FakeTweet(
                id=tweet_snowflake(created, self._seq), created_at=created,
                text=("RT @someone: " + text) if retweet else text, tags=tags, lang=lang,
                author_id=str(9000 + self.rng.randrange(30)), retweet=retweet,
                sensitive=self.rng.random() < 0.05)
            self.tweets.append(tweet)
            return tweet

    def add_tweet(self, tags: tuple[str, ...] = ("metoo",), *,
                  created_at: datetime | None = None) -> FakeTweet:
        """A new tweet, as if just posted (ids grow with time)."""
        # whole seconds: the API writes milliseconds, the expected times must match
        return self._add(created_at or datetime.now(UTC).replace(microsecond=0), tags)

    def corrupt(self, tweet: FakeTweet, field: str, value: Any) -> None:
        self.corruptions.setdefault(tweet.id, {})[field] = value

    def set_rate_limit(self, limit: int, window: float) -> None:
        self.rate = RateWindow(limit, window)

    # what a correct collector stores (retweets excluded, as -is:retweet asks)
    def kept(self) -> list[FakeTweet]:
        with self.lock:
            return [t for t in self.tweets if not t.retweet]

    def expected(self) -> dict[tuple[str, str], tuple[datetime, tuple[str, ...]]]:
        """(platform, key) → (created_at, tags) of every tweet the database must hold."""
        return {(PLATFORM, t.id): (t.created_at, t.tags) for t in self.kept()}

    def expected_keys(self) -> set[tuple[str, str]]:
        return {(PLATFORM, t.id) for t in self.kept()}

    def expected_tag_counts(self) -> dict[str, int]:
        return dict(Counter(tag for t in self.kept() for tag in t.tags))

    def expected_bucket_counts(self) -> dict[tuple[str, datetime], int]:
        return dict(Counter((tag, bucket_start(t.created_at))
                            for t in self.kept() for tag in t.tags))

    # -- payloads ---------------------------------------------------------------

    def payload(self, tweet: FakeTweet) -> dict[str, Any]:
        hashtags = []
        for tag in tweet.tags:
            word = "#" + DISPLAY.get(tag, tag)
            start = tweet.text.find(word)
            hashtags.append({"start": start, "end": start + len(word), "tag": word[1:]})
        data: dict[str, Any] = {
            "id": tweet.id, "text": tweet.text, "created_at": iso(tweet.created_at),
            "author_id": tweet.author_id, "lang": tweet.lang or "und",
            "possibly_sensitive": tweet.sensitive,
            "edit_history_tweet_ids": [tweet.id],
            "entities": {"hashtags": hashtags},
            "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": 1,
                               "quote_count": 0},
        }
        if tweet.retweet:
            data["referenced_tweets"] = [{"type": "retweeted", "id": "1"}]
        for field, value in self.corruptions.get(tweet.id, {}).items():
            data[field] = value
        return data

    def _headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {"x-rate-limit-limit": str(self.rate.limit if self.rate else 450),
                "x-rate-limit-remaining": str(remaining),
                "x-rate-limit-reset": str(int(reset) + 1)}

    def _limited(self, seconds: float) -> Response:
        reset = datetime.now(UTC).timestamp() + seconds
        return JSONResponse({"title": "Too Many Requests", "detail": "Too Many Requests",
                             "type": "about:blank", "status": 429}, status_code=429,
                            headers=self._headers(0, reset - 1))

    @staticmethod
    def _invalid(message: str, headers: dict[str, str]) -> Response:
        return JSONResponse({"errors": [{"message": message}], "title": "Invalid Request",
                             "detail": "One or more parameters to your request was invalid.",
                             "type": "https://api.twitter.com/2/problems/invalid-request"},
                            status_code=400, headers=headers)

    # -- handler ----------------------------------------------------------------

    async def search(self, request: Request) -> Response:
        self.record(request)
        fault = self.faults.take()
        if fault is not None:
            return await apply_fault(fault, lambda: self._search(request), self._limited)
        return self._search(request)

    def _search(self, request: Request) -> Response:
        headers: dict[str, str] = {}
        if self.rate is not None:
            allowed, remaining, reset = self.rate.hit()
            if not allowed:
                return self._limited(reset - datetime.now(UTC).timestamp())
            headers = self._headers(remaining, reset)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"title": "Unauthorized", "type": "about:blank",
                                 "status": 401, "detail": "Unauthorized"}, status_code=401,
                                headers=headers)
        q = request.query_params
        terms = (q.get("query") or "").split()
        wanted = {t[1:].lower() for t in terms if t.startswith("#")}
        if not wanted:
            return self._invalid("query: expected at least one #hashtag term", headers)
        no_retweets = "-is:retweet" in terms
        try:
            limit = int(q.get("max_results", "10"))
        except ValueError:
            limit = 0
        if not 10 <= limit <= 100:
            return self._invalid(f"The `max_results` query parameter value "
                                 f"[{q.get('max_results')}] is not between 10 and 100", headers)
        horizon = tweet_snowflake(datetime.now(UTC) - timedelta(days=7), 0)
        since = q.get("since_id")
        if since and _key(since) < _key(horizon):
            return self._invalid(f"Invalid 'since_id':'{since}'. 'since_id' must be a tweet "
                                 "id created after the last 7 days", headers)
        with self.lock:
            found = [t for t in self.tweets if wanted <= set(t.tags)
                     and not (no_retweets and t.retweet)]
        if since:
            found = [t for t in found if _key(t.id) > _key(since)]
        if q.get("until_id"):
            found = [t for t in found if _key(t.id) < _key(q["until_id"])]
        found.sort(key=lambda t: _key(t.id), reverse=True)
        offset = 0
        token = q.get("next_token") or q.get("pagination_token")
        if token:
            try:
                offset = int(token.removeprefix("b26v89c19zqg8o3f"), 36)
            except ValueError:
                return self._invalid("next_token: invalid", headers)
        page = found[offset:offset + limit]
        if not page:
            return JSONResponse({"meta": {"result_count": 0}}, headers=headers)
        meta: dict[str, Any] = {"newest_id": page[0].id, "oldest_id": page[-1].id,
                                "result_count": len(page)}
        if offset + limit < len(found):
            meta["next_token"] = "b26v89c19zqg8o3f" + _base36(offset + limit)
        body: dict[str, Any] = {"data": [self.payload(t) for t in page], "meta": meta}
        if "author_id" in (q.get("expansions") or ""):
            ids = sorted({t.author_id for t in page})
            body["includes"] = {"users": [{"id": i, "name": f"User {i}",
                                           "username": f"user{i}"} for i in ids]}
        return JSONResponse(body, headers=headers)

    # -- admin ------------------------------------------------------------------

    def _admin_add(self, data: dict[str, Any]) -> dict[str, Any]:
        tweet = self.add_tweet(tuple(data.get("tags") or ["metoo"]))
        return {"id": tweet.id}

    def _admin_expected(self) -> dict[str, Any]:
        return {"tags": self.expected_tag_counts(), "posts": len(self.expected_keys())}


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if not value:
            return out


def start_x_fake(*, seed: int = 5, tweets: int = 60, hours: float = 2.0,
                 start: datetime | None = None, port: int = 0) -> XFake:
    """Start a fake X API on 127.0.0.1; ``stop()`` it when done."""
    fake = XFake(seed=seed, tweets=tweets, hours=hours, start=start)
    fake.server = run_app(fake.app, "x", port)
    return fake
