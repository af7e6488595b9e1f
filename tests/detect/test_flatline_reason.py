"""A flatline caused by failing fetches says why ("every fetch failed for 70s: HTTP 503"),
not "no new posts", which reads as a quiet tag."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from monitor.config import parse_config
from monitor.detect.engine import evaluate
from monitor.models import StreamKey
from monitor.store.write import record_failure, write_batch
from tests.analyse.seed import scored

from .synth import START

STREAM = StreamKey("mastodon", "mastodon.social", "metoo")
RULE = {"name": "dead-stream", "kind": "flatline", "silent_for": "1m"}


def test_failing_fetches_are_named_with_their_error(engine: Engine) -> None:
    cfg = parse_config({"hashtags": ["metoo"], "rules": [RULE]}, env={})
    t0 = START + timedelta(days=3)
    # a good poll: posts stored, the newest written five minutes before the poll
    write_batch(engine, [scored(f"p{i}", t0 - timedelta(minutes=5 + i), ("metoo",), 0.1)
                         for i in range(3)], stream=STREAM, now=t0)
    # then every poll answers 503 (as the service records it, after the transport's retries)
    for k in range(1, 8):
        record_failure(engine, STREAM, "mastodon.social #metoo: HTTP 503 after 4 attempts",
                       t0 + timedelta(seconds=10 * k))
    report = evaluate(engine, cfg, t0 + timedelta(seconds=70))
    [alert] = report.firing
    assert alert.summary == ("mastodon mastodon.social#metoo: every fetch failed for 70s: "
                             "mastodon.social #metoo: HTTP 503 after 4 attempts")
    assert "no new posts" not in alert.summary


def test_a_quiet_stream_that_fetches_fine_still_says_no_new_posts(engine: Engine) -> None:
    cfg = parse_config({"hashtags": ["metoo"], "rules": [RULE]}, env={})
    t0 = START + timedelta(days=3)
    write_batch(engine, [scored("p", t0 - timedelta(minutes=5), ("metoo",), 0.1)],
                stream=STREAM, now=t0)
    record_failure(engine, STREAM, "HTTP 503", t0 + timedelta(seconds=10))  # one blip…
    write_batch(engine, [], stream=STREAM, now=t0 + timedelta(seconds=20))  # …then fine
    report = evaluate(engine, cfg, t0 + timedelta(minutes=3))
    [alert] = report.firing
    assert "no new posts for" in alert.summary and "fetch failed" not in alert.summary
