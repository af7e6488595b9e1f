"""``python -m tests.fakes``: start every fake on 127.0.0.1 and print how to use them.

Options: ``--seed N`` (the post set), ``--hours H`` (time span of the seeded
posts), ``--auth`` (Bluesky search requires a login, as in production),
``--new-every S`` (add a post to each platform every S seconds, so a running
service keeps finding new posts), ``--port-base P`` (fixed ports P, P+1, ...).
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from tests.fakes.bluesky import APP_PASSWORD, IDENTIFIER, start_bluesky_fake
from tests.fakes.data import TAGS, World
from tests.fakes.jetstream import start_jetstream_fake
from tests.fakes.mastodon import start_mastodon_fake


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--auth", action="store_true", help="Bluesky search needs a login")
    parser.add_argument("--new-every", type=float, default=0.0, metavar="S")
    parser.add_argument("--port-base", type=int, default=0, metavar="P")
    args = parser.parse_args(argv)

    def port(offset: int) -> int:
        return args.port_base + offset if args.port_base else 0

    world = World(seed=args.seed, hours=args.hours)
    fakes: list[Any] = [
        start_mastodon_fake(world, "a", port=port(0)),
        start_mastodon_fake(world, "b", port=port(1)),
        start_bluesky_fake(world, require_auth=args.auth, port=port(2)),
    ]
    jet = start_jetstream_fake(world, port=port(3))
    fakes.append(jet)
    jetstream_url = jet.url
    masto_a, masto_b, bsky = fakes[0], fakes[1], fakes[2]

    counts = world.expected_tag_counts()
    print("Fake platforms running on 127.0.0.1 (Ctrl-C stops them):")
    print(f"  mastodon instance a  {masto_a.url}")
    print(f"  mastodon instance b  {masto_b.url}")
    print(f"  bluesky appview+pds  {bsky.url}")
    if jetstream_url:
        print(f"  jetstream            {jetstream_url}")
    print(f"Seeded posts: {len(world.posts('mastodon'))} Mastodon (some on both instances), "
          f"{len(world.posts('bluesky'))} Bluesky; per tag: "
          + ", ".join(f"#{t} {counts.get(t, 0)}" for t in TAGS))
    print("Faults: curl -X POST <url>/_fake/faults -d '{\"kind\":\"status\",\"count\":3,"
          "\"status\":503}'  (kinds: status, rate_limit, stall, truncate, wrong_type)")
    print("New post: curl -X POST <url>/_fake/posts -d '{\"tags\":[\"metoo\"]}'; "
          "known counts: curl <url>/_fake/expected")
    print()
    print("# config.yaml snippet")
    print("http:\n  contact: you@example.org\n  timeout: 5s\n  backoff_max: 30s")
    print("sources:")
    print(f"  - type: mastodon\n    instances: [\"{masto_a.url}\", \"{masto_b.url}\"]\n"
          "    interval: 20s\n    jitter: 2s")
    print(f"  - type: bluesky_search\n    appview: \"{bsky.url}\"\n    pds: \"{bsky.url}\"\n"
          "    interval: 20s\n    jitter: 2s")
    if args.auth:
        print(f"    identifier: {IDENTIFIER}\n    app_password: {APP_PASSWORD}")
    if jetstream_url:
        print(f"  - type: jetstream\n    hosts: [\"{jetstream_url}\"]")
    print(flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(args.new_every or 3600):
            if args.new_every:
                tag = TAGS[world.rng.randrange(len(TAGS))]
                world.add_mastodon_post([tag], instances=("a", "b"))
                world.add_bluesky_post([tag])
    except KeyboardInterrupt:
        pass
    finally:
        for fake in reversed(fakes):
            fake.stop()


if __name__ == "__main__":
    main()
