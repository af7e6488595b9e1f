"""vanished(): which stored posts a polled platform says are gone (the re-check job)."""

from __future__ import annotations

from monitor.sources.http import HttpClient
from monitor.sources.protocols import Rechecking
from tests.fakes.bluesky import BlueskyFake
from tests.fakes.data import World
from tests.fakes.mastodon import MastodonFake
from tests.sources import test_bluesky, test_mastodon


async def test_mastodon_asks_the_origin_and_only_404_means_gone(
        http: HttpClient, world: World, masto_a: MastodonFake) -> None:
    src = test_mastodon.collector(http, masto_a)
    assert isinstance(src, Rechecking)
    here = [world.add_mastodon_post(["metoo"], origin=masto_a.host) for _ in range(3)]
    world.delete(here[1])
    remote = world.mastodon_posts("a")[0]  # posted on origin.example: not reachable here
    keys = [p.uri for p in here] + [remote.uri, "https://misskey.example/notes/9xyz"]
    assert await src.vanished(keys) == {here[1].uri}
    asked = [r.path for r in masto_a.requests if r.path.startswith("/api/v1/statuses/")]
    # one request per key of a reachable Mastodon origin; other shapes are not asked
    assert sorted(asked) == sorted(f"/api/v1/statuses/{p.n:08d}" for p in here)


async def test_mastodon_cannot_tell_on_errors(http: HttpClient, world: World,
                                              masto_a: MastodonFake) -> None:
    src = test_mastodon.collector(http, masto_a)
    post = world.add_mastodon_post(["metoo"], origin=masto_a.host)
    world.delete(post)
    masto_a.faults.fail_next(1, status=403)
    assert await src.vanished([post.uri]) == set()  # a refusal is not a deletion
    masto_a.faults.fail_next(5, status=503)
    assert await src.vanished([post.uri]) == set()  # nor is a server that does not answer
    while masto_a.faults.take() is not None:
        pass
    assert await src.vanished([post.uri]) == {post.uri}


async def test_bluesky_getposts_in_chunks_missing_means_gone(
        http: HttpClient, world: World, bsky: BlueskyFake) -> None:
    src = test_bluesky.collector(http, bsky)
    assert isinstance(src, Rechecking)
    posts = world.bluesky_posts()
    assert len(posts) > 30  # more than one getPosts request
    gone = [posts[0], posts[27], posts[-1]]
    for post in gone:
        world.delete(post)
    assert await src.vanished([p.uri for p in posts]) == {p.uri for p in gone}
    calls = [r for r in bsky.requests if r.path == "/xrpc/app.bsky.feed.getPosts"]
    assert len(calls) == -(-len(posts) // 25)
