"""The alert email's chart ends with the hour that caused the alert: the running hour,
included and marked as partial (it used to stop at the hour before)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from monitor.models import ScoredPost, Sentiment
from monitor.notify.chart import SPARK_CHARS, chart_figure
from monitor.notify.email import EmailNotifier
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import build_notifiers
from monitor.store.windows import hourly_series
from monitor.store.write import write_batch
from tests.notify.conftest import NOW, SmtpServer, add_outbox, make_config, payload

AT = NOW + timedelta(minutes=40)  # 12:40: 40 minutes into the running hour


def _seed(engine: Engine) -> None:
    """3 posts/h for two days, 31 in the hour before, 100 in the running hour so far."""
    posts = []
    start = NOW - timedelta(days=2)
    for h in range(2 * 24 + 1):
        count = 100 if h == 48 else 31 if h == 47 else 3
        span = 2400 if h == 48 else 3600
        for i in range(count):
            posts.append(ScoredPost(
                platform="mastodon", key=f"k{h}-{i}",
                created_at=start + timedelta(hours=h, seconds=i * span // count),
                url=None, author=None, text=None, lang="en", tags=("metoo",),
                is_repost=False, sensitive=False, sentiment=Sentiment(0.1, 0.1, 0.9, 0.0)))
    write_batch(engine, posts, now=AT)


def test_hourly_series_can_end_with_the_running_hour(engine: Engine) -> None:
    _seed(engine)
    whole = hourly_series(engine, "metoo", AT - timedelta(days=1), AT)
    assert whole.hours[-1] == NOW - timedelta(hours=1) and whole.posts[-1] == 31
    assert whole.partial_until is None
    partial = hourly_series(engine, "metoo", AT - timedelta(days=1), AT, partial=True)
    assert partial.hours[-1] == NOW and partial.posts[-1] == 100
    assert partial.partial_until == AT
    assert partial.posts[:-1] == whole.posts
    # on the hour there is no running hour to add
    assert hourly_series(engine, "metoo", NOW - timedelta(days=1), NOW,
                         partial=True).partial_until is None


def test_chart_draws_the_partial_hour_hatched_and_labelled(engine: Engine) -> None:
    pytest.importorskip("matplotlib")
    _seed(engine)
    s = hourly_series(engine, "metoo", AT - timedelta(days=2), AT, partial=True)
    fig = chart_figure(s.hours, [float(x) for x in s.posts], tag="metoo",
                       partial_until=s.partial_until)
    ax = fig.axes[0]
    assert max(max(line.get_ydata()) for line in ax.get_lines()) == 100
    assert any("partial hour" in t.get_text() and "12:40" in t.get_text() for t in ax.texts)
    assert any(c.get_hatch() == "////" for c in ax.collections)


async def test_the_alert_email_shows_the_running_hour_as_partial(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    _seed(engine)
    add_outbox(engine, payload(since=NOW + timedelta(minutes=20)), created_at=AT)
    config = make_config(smtp_server.port, grouping={"group_wait": "0s"})
    notifiers = build_notifiers(config, engine)
    for n in notifiers:
        if isinstance(n, EmailNotifier):
            n._clock = lambda: AT
    assert await Dispatcher(engine, config, notifiers, clock=lambda: AT).run_once(AT) == 1
    [msg] = smtp_server.messages
    text = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "the last hour is partial, to 12:40 UTC" in text
    assert "partial (to 12:40 UTC)" in html
    spark = next(line.strip() for line in text.splitlines()
                 if line.strip() and set(line.strip()) <= set(SPARK_CHARS))
    # the 100 posts of the running hour are the top; the 31 before stay well below it
    assert spark[-1] == SPARK_CHARS[-1] and spark[-2] != SPARK_CHARS[-1]
