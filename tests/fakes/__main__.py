"""``python -m tests.fakes``: start every fake on 127.0.0.1 and print how to use them.

Options: ``--seed N`` (the post set), ``--hours H`` (time span of the seeded
posts), ``--auth`` (Bluesky search requires a login, as in production),
``--new-every S`` (add a post to each platform every S seconds, so a running
service keeps finding new posts), ``--port-base P`` (fixed ports P, P+1, ...).

:data:`FAKES` is the one list of fakes: ``make fakes`` starts every entry and
``tests/test_all_platforms.py`` runs the service against all of them at once.
A new platform appends one ``(name, starter)``; the starter takes the shared
:class:`~tests.fakes.data.World`, a port picker and the options, and returns a
:class:`Running` that says how to configure it and what the database must hold.
"""

from __future__ import annotations

import argparse
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.bluesky import APP_PASSWORD, IDENTIFIER, start_bluesky_fake
from tests.fakes.data import TAGS, World
from tests.fakes.hackernews import HackerNewsWorld, start_hackernews_fake
from tests.fakes.jetstream import JetstreamFake
from tests.fakes.lemmy import LemmyWorld, start_lemmy_fake
from tests.fakes.mastodon import start_mastodon_fake
from tests.fakes.misskey import MisskeyWorld, start_misskey_fake
from tests.fakes.nostr import NostrRelayFake, NostrWorld
from tests.fakes.reddit import CLIENT_ID, CLIENT_SECRET, start_reddit_fake
from tests.fakes.rss import FeedWorld, start_rss_fake
from tests.fakes.seeds import Expected
from tests.fakes.telegram import TelegramWorld, start_telegram_fake
from tests.fakes.x import BEARER, start_x_fake

__all__ = ["FAKES", "Options", "Running", "main", "start_all"]

Ports = Callable[[], int]  # the next port to bind (0 = any free one)


@dataclass
class Options:
    seed: int = 7
    auth: bool = False  # Bluesky search needs a login


@dataclass
class Running:
    """One started fake (possibly several servers) as the registry sees it."""

    name: str
    urls: list[tuple[str, str]]  # (label, url) printed by `make fakes`
    sources: Callable[[str], list[dict[str, Any]]]  # poll interval -> config `sources:` entries
    expected: Callable[[], Expected]  # (platform, key) -> (created_at, tags) to be stored
    add_post: Callable[[random.Random], None]  # a new post, as while the service is down
    stop: Callable[[], None]
    ready: Callable[[], bool] = lambda: True  # e.g. the websocket client has subscribed
    on_ready: Callable[[], None] = lambda: None  # e.g. publish the firehose's events
    drop: Callable[[], None] = lambda: None  # cut open websocket connections (soak faults)
    notes: list[str] = field(default_factory=list)


def _stops(*fakes: Any) -> Callable[[], None]:
    def stop() -> None:
        for fake in fakes:
            fake.stop()
    return stop


def _drops(*fakes: Any) -> Callable[[], None]:
    def drop() -> None:
        for fake in fakes:
            fake.drop_connections()
    return drop


def _seeded(world: World, platform: str) -> Expected:
    return {(p.platform, p.uri): (p.created_at, p.tags) for p in world.posts(platform)}


def _mastodon(world: World, port: Ports, opts: Options) -> Running:
    a, b = start_mastodon_fake(world, "a", port=port()), start_mastodon_fake(world, "b",
                                                                             port=port())
    return Running(
        "mastodon", [("mastodon instance a", a.url), ("mastodon instance b", b.url)],
        lambda every: [{"type": "mastodon", "instances": [a.url, b.url], "interval": every,
                        "jitter": "0.1s", "page_limit": 20, "backfill_pages": 50}],
        lambda: _seeded(world, "mastodon"),
        lambda rng: world.add_mastodon_post([rng.choice(TAGS)], instances=("a", "b")),
        _stops(b, a))


def _bluesky(world: World, port: Ports, opts: Options) -> Running:
    fake = start_bluesky_fake(world, require_auth=opts.auth, port=port())
    login = {"identifier": IDENTIFIER, "app_password": APP_PASSWORD} if opts.auth else {}
    return Running(
        "bluesky", [("bluesky appview+pds", fake.url)],
        lambda every: [{"type": "bluesky_search", "appview": fake.url, "pds": fake.url,
                        "interval": every, "jitter": "0.1s", "page_limit": 25,
                        "backfill_pages": 50, **login}],
        lambda: _seeded(world, "bluesky"),
        lambda rng: world.add_bluesky_post([rng.choice(TAGS)]) and None, fake.stop)


def _jetstream(world: World, port: Ports, opts: Options) -> Running:
    fake = JetstreamFake(port=port())

    def add(rng: random.Random) -> None:
        fake.publish_posts([world.add_bluesky_post([rng.choice(TAGS)])], noise=2)

    return Running(
        "jetstream", [("jetstream", fake.url)],
        lambda every: [{"type": "jetstream", "hosts": [fake.url], "rewind": "1s",
                        "batch_size": 50, "batch_interval": "0.2s"}],
        lambda: _seeded(world, "bluesky"), add, fake.stop,
        ready=lambda: fake.subscribers >= 1,
        # the world's Bluesky posts again (search finds them too) among noise
        on_ready=lambda: fake.publish_posts(world.bluesky_posts(), noise=2) and None,
        drop=fake.drop_connections)


def _misskey(world: World, port: Ports, opts: Options) -> Running:
    notes = MisskeyWorld(seed=opts.seed, count=60)
    a = start_misskey_fake(notes, "a", port=port())
    b = start_misskey_fake(notes, "b", port=port(), base_a=a.url)
    return Running(
        "misskey", [("misskey instance a", a.url), ("misskey instance b", b.url)],
        lambda every: [{"type": "misskey", "instances": [a.url, b.url], "interval": every,
                        "jitter": "0.1s", "page_limit": 20, "backfill_pages": 50}],
        lambda: notes.expected(a.url),
        lambda rng: notes.add((rng.choice(TAGS),), instances=("a", "b"), renoted=True)
        and None,
        _stops(b, a))


def _lemmy(world: World, port: Ports, opts: Options) -> Running:
    posts = LemmyWorld(seed=opts.seed, count=50)
    a, b = start_lemmy_fake(posts, "a", port=port()), start_lemmy_fake(posts, "b", port=port())
    return Running(
        "lemmy", [("lemmy instance a", a.url), ("lemmy instance b", b.url)],
        lambda every: [{"type": "lemmy", "instances": [a.url, b.url], "interval": every,
                        "jitter": "0.1s", "page_limit": 20, "backfill_pages": 50}],
        posts.expected,
        lambda rng: posts.add((rng.choice(TAGS),), instances=("a", "b")) and None,
        _stops(b, a))


def _hackernews(world: World, port: Ports, opts: Options) -> Running:
    items = HackerNewsWorld(seed=opts.seed, count=60)
    fake = start_hackernews_fake(items, port=port())
    return Running(
        "hackernews", [("hacker news (algolia)", fake.api)],
        lambda every: [{"type": "hackernews", "api": fake.api, "interval": every,
                        "jitter": "0.1s", "hits_per_page": 50}],
        items.expected, lambda rng: items.add((rng.choice(TAGS),)) and None, fake.stop)


def _rss(world: World, port: Ports, opts: Options) -> Running:
    feeds = FeedWorld(seed=opts.seed, count=30)
    fake = start_rss_fake(world, feeds, instance="a", port=port())
    urls = [f"{fake.url}/tags/{tag}.rss" for tag in TAGS] + [f"{fake.url}/feeds/blog.atom"]

    def expected() -> Expected:
        # the Mastodon statuses in the tag feeds are the API's posts: the same keys
        out = feeds.expected()
        for tag in TAGS:
            for post in fake.tag_items(tag):
                out[("mastodon", post.uri)] = (post.created_at, post.tags)
        return out

    return Running(
        "rss", [("feeds (mastodon tag rss)", f"{fake.url}/tags/metoo.rss"),
                ("feeds (atom)", f"{fake.url}/feeds/blog.atom")],
        lambda every: [{"type": "rss", "feeds": urls, "interval": every, "jitter": "0.1s"}],
        expected, lambda rng: feeds.add((rng.choice(TAGS),)) and None, fake.stop)


def _reddit(world: World, port: Ports, opts: Options) -> Running:
    fake = start_reddit_fake(seed=opts.seed, posts=60, port=port())
    fake.set_rate_limit(100_000, 600.0)  # many fast polls: stay clear of the pacing
    return Running(
        "reddit", [("reddit (www + oauth)", fake.url)],
        lambda every: [{"type": "reddit", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                        "auth_url": fake.url, "api_url": fake.url, "interval": every,
                        "jitter": "0.1s", "page_limit": 20, "backfill_pages": 50,
                        "max_pages": 50}],
        fake.expected, lambda rng: fake.add_post((rng.choice(TAGS),)) and None, fake.stop,
        notes=[f"reddit app: client_id {CLIENT_ID}, client_secret {CLIENT_SECRET}"])


def _x(world: World, port: Ports, opts: Options) -> Running:
    fake = start_x_fake(seed=opts.seed, tweets=60, port=port())
    fake.set_rate_limit(100_000, 900.0)
    return Running(
        "x", [("x api v2", fake.url)],
        lambda every: [{"type": "x", "api_url": fake.url, "bearer_token": BEARER,
                        "interval": every, "jitter": "0.1s", "max_results": 20,
                        "backfill_pages": 50, "max_pages": 50}],
        fake.expected, lambda rng: fake.add_tweet((rng.choice(TAGS),)) and None, fake.stop,
        notes=[f"x bearer token: {BEARER}"])


def _nostr(world: World, port: Ports, opts: Options) -> Running:
    notes = NostrWorld(seed=opts.seed, posts=40)
    # two relays holding the same events (a bad signature and a duplicate among them)
    a = NostrRelayFake(notes.events(), port=port())
    b = NostrRelayFake(notes.events(), port=port())

    def add(rng: random.Random) -> None:
        event = notes.add((rng.choice(TAGS),))
        a.publish([event])
        b.publish([event])

    return Running(
        "nostr", [("nostr relay a", a.url), ("nostr relay b", b.url)],
        lambda every: [{"type": "nostr", "relays": [a.url, b.url], "overlap": "5s",
                        "batch_size": 50, "batch_interval": "0.2s"}],
        notes.expected, add, _stops(b, a),
        drop=_drops(a, b))


def _telegram(world: World, port: Ports, opts: Options) -> Running:
    channels = TelegramWorld(seed=opts.seed)
    fake = start_telegram_fake(channels, port=port())
    return Running(
        "telegram", [("telegram t.me/s preview", f"{fake.url}/s/newsroom")],
        lambda every: [{"type": "telegram", "base_url": fake.url,
                        "channels": list(channels.messages), "interval": every,
                        "jitter": "0.1s", "backfill_pages": 50}],
        channels.expected,
        lambda rng: channels.add(rng.choice(list(channels.messages)), (rng.choice(TAGS),))
        and None,
        fake.stop)


# The registry: every fake platform. Append (name, starter) for a new one.
FAKES: list[tuple[str, Callable[[World, Ports, Options], Running]]] = [
    ("mastodon", _mastodon),
    ("bluesky", _bluesky),
    ("jetstream", _jetstream),
    ("misskey", _misskey),
    ("lemmy", _lemmy),
    ("hackernews", _hackernews),
    ("rss", _rss),
    ("reddit", _reddit),
    ("x", _x),
    ("nostr", _nostr),
    ("telegram", _telegram),
]


def start_all(world: World, opts: Options, port_base: int = 0) -> list[Running]:
    """Start every registered fake; each ``on_ready`` runs once its ``ready()`` holds."""
    counter = iter(range(10_000))

    def port() -> int:
        return port_base + next(counter) if port_base else 0

    running: list[Running] = []
    try:
        for _, start in FAKES:
            running.append(start(world, port, opts))
    except BaseException:
        for fake in reversed(running):
            fake.stop()
        raise
    for fake in running:
        threading.Thread(target=_when_ready, args=(fake,), daemon=True,
                         name=f"fake-{fake.name}-ready").start()
    return running


def _when_ready(fake: Running) -> None:
    deadline = time.monotonic() + 24 * 3600
    try:
        while not fake.ready():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        fake.on_ready()
    except RuntimeError:
        return  # the fake was stopped first


# `make fakes`: the seeded history (spread over --hours) and the burst that trips the spike
SEED_POSTS = 400
BURST_POSTS = 30
# the rules printed with the config snippet, so alerts appear while trying the fakes: a
# spike judged after a day of history (the fakes seed 26 h), and a silent collector; the
# fakes post every --new-every seconds spread over ~50 streams, so a stream can be quiet
# for a quarter of an hour: a 10-minute flatline paged on healthy streams at start
DEMO_RULES: list[dict[str, Any]] = [
    # one window is enough here: the demo's burst is a single 5-minute bucket, which the
    # default second agreeing window (an hour around it) would not confirm for minutes
    {"name": "spike", "kind": "spike", "labels": {"severity": "page"}, "factor": 3,
     "min_posts": 5, "smooth": 1, "min_history": "1d", "for": "0m", "agree": 1},
    {"name": "collector-silent", "kind": "flatline", "labels": {"severity": "page"},
     "silent_for": "45m"},
]


def burst(world: World) -> None:
    """BURST_POSTS new #metoo statuses now, on both Mastodon instances."""
    for _ in range(BURST_POSTS):
        world.add_mastodon_post(["metoo"], instances=("a", "b"))


def main(argv: list[str] | None = None) -> None:
    import yaml

    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    # a day and more of history: the spike rule needs a day before it judges a tag
    parser.add_argument("--hours", type=float, default=26.0)
    parser.add_argument("--auth", action="store_true", help="Bluesky search needs a login")
    # new posts on every platform (the Jetstream fake too) while the service runs
    parser.add_argument("--new-every", type=float, default=10.0, metavar="S")
    parser.add_argument("--burst-after", type=float, default=60.0, metavar="S",
                        help="then a burst of #metoo posts, so the spike rule fires (0: none)")
    parser.add_argument("--port-base", type=int, default=0, metavar="P")
    args = parser.parse_args(argv)

    world = World(seed=args.seed, hours=args.hours, mastodon_posts=SEED_POSTS,
                  bluesky_posts=SEED_POSTS // 2)
    fakes = start_all(world, Options(seed=args.seed, auth=args.auth), args.port_base)
    print("Fake platforms running on 127.0.0.1 (Ctrl-C stops them):")
    for fake in fakes:
        for label, url in fake.urls:
            print(f"  {label:<26} {url}")
    counts: dict[str, int] = {}
    total = 0
    merged: Expected = {}
    for fake in fakes:
        merged.update(fake.expected())
    for _, tags in merged.values():
        total += 1
        for tag in tags:
            counts[tag] = counts.get(tag, 0) + 1
    print(f"Seeded posts: {total} distinct across all fakes; per tag: "
          + ", ".join(f"#{t} {counts.get(t, 0)}" for t in TAGS))
    print("Faults: curl -X POST <url>/_fake/faults -d '{\"kind\":\"status\",\"count\":3,"
          "\"status\":503}'  (kinds: status, rate_limit, stall, truncate, wrong_type)")
    print("New post: curl -X POST <url>/_fake/posts -d '{\"tags\":[\"metoo\"]}'; "
          "known counts: curl <url>/_fake/expected")
    print()
    print("# config.yaml snippet")
    print("http:\n  contact: you@example.org\n  timeout: 5s\n  backoff_max: 30s")
    print(yaml.safe_dump({"sources": [s for fake in fakes for s in fake.sources("20s")],
                          "rules": DEMO_RULES}, sort_keys=False), flush=True)
    if args.burst_after:
        print(f"# In {args.burst_after:g}s: a burst of {BURST_POSTS} #metoo posts on Mastodon; "
              "the spike rule fires once its 5-minute bucket closes (`monitor alerts`).",
              flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = random.Random(args.seed)
    if args.burst_after:
        timer = threading.Timer(args.burst_after, burst, args=(world,))
        timer.daemon = True
        timer.start()
    try:
        while not stop.wait(args.new_every or 3600):
            if args.new_every:
                for fake in fakes:
                    fake.add_post(rng)
    except KeyboardInterrupt:
        pass
    finally:
        for fake in reversed(fakes):
            fake.stop()


if __name__ == "__main__":
    main()
