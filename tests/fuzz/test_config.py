"""Fuzz: config files (config.yaml with values, keys and whole sections changed, broken YAML,
MONITOR_* variables) → a Config, or one ConfigError line naming the file and the key."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from monitor.config import Config, load_config
from monitor.errors import MonitorError
from tests.fuzz.strategies import examples, run

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
# the sources config.yaml leaves commented out, so their validators are reached too
BASE["sources"] += [
    {"type": "rss", "feeds": ["https://blog.example/feed.atom"], "interval": "10m"},
    {"type": "telegram", "channels": ["@somechannel"], "interval": "5m"},
    {"type": "reddit", "client_id": "id", "client_secret": "secret", "subreddits": ["metoo"]},
    {"type": "x", "bearer_token": "token", "interval": "15m", "backfill_pages": 1},
    {"type": "bluesky_search", "identifier": "me.bsky.social", "app_password": "a-b-c-d"},
]

_plain = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(),
    st.text(_plain, max_size=12),
    st.sampled_from(["0s", "-5m", "1e9d", "999999999d", "10x", "2m", "", "${X}", "${X:-1}",
                     "${MISSING}", "$", "postgresql://u@h:notaport/db", "sqlite:///", "keep",
                     "hash", "drop", "forever", "off", "0.0.0.0", "mastodon", "jetstream",
                     "2017-13-45", "2017-02-30 10:00:00", "[" * 2000]),
    st.lists(st.text(_plain, max_size=6), max_size=3),
    st.dictionaries(st.text(_plain, max_size=6), st.text(_plain, max_size=6), max_size=2))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()
    for key, child in items:
        out.append((*prefix, key))
        out.extend(_paths(child, (*prefix, key)))
    return out


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def config_files(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(0, 4))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _at(doc, path[:-1]), path[-1]
        action = draw(st.integers(0, 3))
        if action == 0:
            del parent[key]
        elif action == 2 and isinstance(parent, dict):
            parent[draw(st.text(_plain, min_size=1, max_size=8))] = draw(values)
        else:
            parent[key] = draw(values)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    damage = draw(st.integers(0, 12))
    if damage == 0:
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == 1:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\t", ": :", "- [", "&a *b", "{", "'"])) \
            + text[at:]
    env = draw(st.dictionaries(
        st.sampled_from(["MONITOR_DB_URL", "MONITOR_DATABASE_URL", "MONITOR_HTTP_TIMEOUT",
                         "MONITOR_WEB_PORT", "MONITOR_HASHTAGS", "MONITOR_NOPE",
                         "MONITOR_PRIVACY_AUTHORS", "MASTODON_TOKEN"]),
        st.one_of(values.filter(lambda v: isinstance(v, str)), st.just("[a, b")), max_size=2))
    return text, env


@examples
def test_load_config(n_examples: int, tmp_path: Path) -> None:
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / "config.yaml"

    def check(case: tuple[str, dict[str, str]]) -> None:
        text, env = case
        path.write_text(text, encoding="utf-8")
        try:
            config = load_config(path, env=env)
        except MonitorError as exc:
            message = str(exc)
            assert message.strip() and "\n" not in message, message
            assert message.startswith("environment") or str(path) in message, message
            return
        assert isinstance(config, Config)

    run(config_files(), check, n_examples)
