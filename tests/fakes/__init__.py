"""Fake platform servers on 127.0.0.1 for tests, benchmarks and trying the service by hand.

* ``data.World``: the seeded, known set of posts and the counts the database
  should end up with.
* ``mastodon.start_mastodon_fake(world, "a"|"b")``: a Mastodon instance.
* ``bluesky.start_bluesky_fake(world)``: a Bluesky AppView + PDS (search, sessions).
* ``jetstream`` (when present): the Jetstream websocket firehose.
* ``server``: running a Starlette app in a thread; the fault switchboard.

``python -m tests.fakes`` starts them all and prints a config.yaml snippet.
"""
