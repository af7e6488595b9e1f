"""Shared Hypothesis strategies and the contract every parser is held to.

Payloads are structurally plausible: each platform's real shape, with every
field either a plausible value, a value of the wrong type (any JSON value),
or missing, and now and then an unknown key. The contract (:func:`outcome`):
a payload ends as a post, as "not ours" (None), or as the parser's own
rejection naming the field; any other exception fails the test. Posts that
come out are then stored (:func:`store_all`): enrich + ``write_batch`` must
take them too.

Each test runs :data:`FAST` examples in ``make test`` and :data:`LONG` under
``@pytest.mark.long`` (``make test-long``), through :func:`examples`.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import Config, DatabaseSettings, PrivacySettings
from monitor.enrich.pipeline import Enricher
from monitor.models import EARLIEST_POST, FUTURE_SLACK, Post
from monitor.store.db import make_engine, migrate
from monitor.store.write import write_batch

FAST = 300
LONG = 10_000

# one parametrised argument gives each fuzz test its fast and its long form
examples = pytest.mark.parametrize(
    "n_examples", [FAST, pytest.param(LONG, marks=pytest.mark.long)], ids=["fast", "long"])

MISSING: Any = object()
TAGS = ["metoo", "notallmen", "howiwillchange", "ididit"]


def run(strategy: st.SearchStrategy[Any], check: Callable[[Any], None], n: int) -> None:
    """Run *check* on *n* examples of *strategy* (no example database: nothing written
    to the repository; derandomised in the fast form so `make test` is repeatable)."""
    config = settings(max_examples=n, deadline=None, database=None, derandomize=n <= FAST,
                      suppress_health_check=list(HealthCheck))
    config(given(strategy)(check))()


# ------------------------------------------------------------------ values

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
junk: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)

# text with what breaks naive code: lone surrogates, NUL, RTL marks, emoji, tags
_chars = st.characters(codec=None, exclude_categories=())
words = st.sampled_from(["#metoo", "#MeToo", "#NotAllMen", "＃metoo", "#howiwillchange", "#ididit",
                         "metoo", "I", "believe", "survivors", "terrible", "great", "😡", "🙏",
                         "\u200f", "\x00", "\ud800", "<b>", "&amp;", "https://x.example/a"])
texts = st.one_of(st.text(_chars, max_size=60),
                  st.lists(words, max_size=12).map(" ".join),
                  st.lists(st.one_of(words, st.text(_chars, max_size=5)), max_size=8)
                  .map(" ".join))
html_texts = texts.map(lambda t: f"<p>{t}</p>") | texts
tags = st.one_of(st.sampled_from([*TAGS, "MeToo", "ＭｅＴｏｏ", "", "#metoo", "a" * 300]),
                 st.text(_chars, max_size=12))
hosts = st.sampled_from(["mastodon.social", "mas.to", "example.org", "", "ünï.example",
                         "127.0.0.1:8080"])
handles = st.one_of(st.from_regex(r"[a-z0-9_]{1,15}", fullmatch=True), st.text(max_size=12))
urls = st.one_of(hosts.map(lambda h: f"https://{h}/@u/1"), st.text(max_size=30),
                 st.just("javascript:alert(1)"))
numeric_ids = st.one_of(st.integers(min_value=0, max_value=2**64).map(str),
                        st.text(string.digits, min_size=1, max_size=25))

_offsets: st.SearchStrategy[Any] = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                            timezone(-timedelta(hours=8)), None])
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=_offsets)
recent = st.datetimes(min_value=datetime(2017, 10, 1), max_value=datetime(2026, 1, 1),
                      timezones=st.just(UTC))


def _iso(dt: datetime, style: int) -> str:
    text = dt.isoformat()
    if style == 1 and dt.tzinfo is not None:
        text = text.replace("+00:00", "Z")
    if style == 2:
        text = text[:10]
    return text


iso_times = st.one_of(
    st.builds(_iso, recent, st.integers(0, 2)), st.builds(_iso, moments, st.integers(0, 2)),
    st.sampled_from(["", "now", "2017-13-45T99:99:99Z", "0000-00-00", "2017-10-15T12:00:00+25:00",
                     "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z"]),
    st.text(max_size=30))
epochs = st.one_of(
    recent.map(lambda d: int(d.timestamp())), st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 253402300800]))


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field: mostly plausible, sometimes any JSON value, sometimes missing."""
    return st.one_of(valid, valid, valid, junk, st.just(MISSING))


def record(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object of *fields* (each via :func:`field`), now and then an extra key."""
    return st.builds(
        _assemble, st.fixed_dictionaries({k: field(v) for k, v in fields.items()}),
        st.dictionaries(st.text(max_size=6), junk, max_size=2))


def _assemble(values: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in extra.items() if k not in values}
    out.update({k: v for k, v in values.items() if v is not MISSING})
    return out


def payload(shape: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The shape, or (rarely) something else entirely where an object was expected."""
    return st.one_of(shape, shape, shape, shape, shape, shape, shape, junk)


# ------------------------------------------------------------------ the contract


Rejection = type[BaseException] | tuple[type[BaseException], ...]


def outcome(parse: Callable[[], Any], rejection: Rejection) -> Any:
    """Run *parse*; a rejection must name the field (``.field`` or its message)."""
    try:
        return parse()
    except rejection as exc:
        named = getattr(exc, "field", None) or str(exc)
        assert named and named.strip(), f"a rejection that names nothing: {exc!r}"
        assert "\n" not in str(exc), f"a rejection on several lines: {exc!r}"
        return exc


def check_post(post: Post) -> None:
    """What every parsed post must hold for the store."""
    assert isinstance(post, Post)
    assert isinstance(post.platform, str) and post.platform
    assert isinstance(post.key, str) and post.key, post.key
    assert isinstance(post.created_at, datetime) and post.created_at.tzinfo is not None
    assert post.created_at.utcoffset() == timedelta(0)
    # no year 0001 or 9999: it would fake the stream's last post and lag (issue 11)
    assert EARLIEST_POST <= post.created_at <= datetime.now(UTC) + FUTURE_SLACK, post.created_at
    for name in ("url", "author", "text", "html", "lang"):
        value = getattr(post, name)
        assert value is None or isinstance(value, str), (name, value)
    assert isinstance(post.tags, tuple) and all(isinstance(t, str) for t in post.tags)
    assert isinstance(post.is_repost, bool) and isinstance(post.sensitive, bool)


class Stored:
    """Collects the posts a fuzz run produced and stores them at the end."""

    def __init__(self) -> None:
        self.posts: list[Post] = []

    def add(self, post: Post) -> None:
        check_post(post)
        if len(self.posts) < 2000:
            self.posts.append(post)


def store_all(posts: list[Post], tmp: Path) -> None:
    """Enrich and store *posts* in a fresh SQLite database: every one must be taken."""
    if not posts:
        return
    engine = make_engine(f"sqlite:///{tmp / 'fuzz.db'}")
    migrate(engine)
    config = Config(database=DatabaseSettings(url=str(engine.url)),
                    privacy=PrivacySettings(hash_secret="fuzz-" + "f" * 32, store_text=True))
    enricher = Enricher.from_config(config)
    try:
        done = 0
        for start in range(0, len(posts), 500):
            chunk = posts[start:start + 500]
            result = write_batch(engine, enricher.enrich_many(chunk))
            done += result.inserted + result.duplicates
        assert done == len(posts)
    finally:
        engine.dispose()


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
