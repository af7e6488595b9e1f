"""Registries: a new source type, rule kind or notifier is one registration away.

Each path is proved with a tiny one, registered as a plugin would, then used
the way the service uses the built-ins: the source type from config.yaml
through build_sources, the rule kind through the engine, and the notifier
through the dispatcher. Last, a real package (a dist-info directory on the
path of a fresh interpreter) adds all of them through entry points.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import Connection, Engine

from monitor.config import Config, load_config, parse_config
from monitor.detect.engine import evaluate
from monitor.detect.registry import RULES, RuleKind, evaluate_rule
from monitor.detect.rules import Finding
from monitor.detect.settings import RuleContext, RuleSettings
from monitor.durations import Duration
from monitor.errors import ConfigError
from monitor.models import Batch, Cursor, StreamKey
from monitor.notify.base import Notification, Notifier
from monitor.notify.outbox import Dispatcher
from monitor.notify.registry import NOTIFIERS, NotifierKind, build_notifiers
from monitor.registry import UnknownKind
from monitor.sources import HttpClient, PolledSource
from monitor.sources.registry import SOURCES, SourceKind, build_sources
from monitor.sources.settings import HttpSettings, SourceContext, SourceSettings

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 26, 12, 1, tzinfo=UTC)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ unknown kinds


def builtin_sources() -> str:
    """The registered source types as the error lists them (every collector adds one)."""
    return ", ".join(repr(name) for name in SOURCES.names())


def test_an_unknown_source_type_names_file_line_key_and_the_known_types(tmp_path: Path) -> None:
    path = write(tmp_path, "hashtags: [metoo]\nsources:\n  - type: mastodon\n"
                           "    instances: [mastodon.social]\n  - type: myspace\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == (
        f"{path}:5: sources[1].type: expected one of {builtin_sources()}, got 'myspace'")


def test_an_unknown_or_missing_rule_kind_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  - name: a\n    kind: spike\n  - name: b\n    kind: spikes\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == (
        f"{path}:5: rules[1].kind: expected one of 'spike', 'sentiment_shift', "
        "'emerging_cotag', 'flatline', got 'spikes'")
    path = write(tmp_path, "rules:\n  - name: a\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == (
        f"{path}:2: rules[0].kind: required key is missing; expected one of 'spike', "
        "'sentiment_shift', 'emerging_cotag', 'flatline'")


def test_a_rule_kind_nobody_registered_is_never_evaluated_as_another(engine: Engine) -> None:
    class Orphan(RuleSettings):
        kind: Literal["orphan"] = "orphan"

    with engine.connect() as conn, pytest.raises(UnknownKind) as err:
        evaluate_rule(conn, Orphan(name="o"), Config(), NOW)
    assert str(err.value) == ("unknown rule kind 'orphan'; known: 'spike', 'sentiment_shift', "
                              "'emerging_cotag', 'flatline'")


def test_a_kind_whose_model_names_another_or_a_taken_name_is_refused() -> None:
    class Wrong(SourceSettings):
        type: Literal["other"]

    with pytest.raises(TypeError, match=r"Wrong.type must be Literal\['wrong'\]"):
        SOURCES.register(SourceKind("wrong", Wrong, lambda cfg, config, http: []))
    with pytest.raises(ValueError, match="notifier 'log' is registered twice"):
        NOTIFIERS.register(NotifierKind("log", lambda config, engine: []))
    assert "wrong" not in SOURCES


# ------------------------------------------------------------------ a tiny source type


class TinySource(SourceSettings):
    type: Literal["tiny"]
    tags: list[str] | None = None
    every: Duration = timedelta(minutes=1)


class TinyCollector:
    platform = "tiny"

    def __init__(self, cfg: TinySource, config: SourceContext) -> None:
        self.source = "tiny"
        self.cfg = cfg
        self.tags = config.followed(cfg.tags)

    def streams(self) -> list[StreamKey]:
        return [StreamKey("tiny", "tiny", tag) for tag in self.tags]

    def interval(self) -> timedelta:
        return self.cfg.every

    def jitter(self) -> timedelta:
        return timedelta(0)

    async def poll(self, stream: StreamKey, cursor: Cursor | None) -> AsyncIterator[Batch]:
        return
        yield


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient(HttpSettings()) as client:
        yield client


@pytest.fixture
def tiny_source() -> Iterator[None]:
    SOURCES.register(SourceKind(
        "tiny", TinySource, lambda cfg, config, http: [TinyCollector(cfg, config)]))
    yield
    SOURCES.unregister("tiny")


async def test_a_registered_source_type_loads_from_config_and_builds(
    tiny_source: None, tmp_path: Path, http: HttpClient
) -> None:
    path = write(tmp_path, "hashtags: [MeToo, ididit]\nsources:\n  - type: tiny\n"
                           "    every: 30s\n  - type: mastodon\n    instances: [mas.to]\n")
    config = load_config(path, env={})
    assert config.sources[0] == TinySource(type="tiny", every=timedelta(seconds=30))
    tiny, masto = build_sources(config, http)
    assert isinstance(tiny, TinyCollector) and isinstance(tiny, PolledSource)
    assert [s.name for s in tiny.streams()] == ["tiny#metoo", "tiny#ididit"]
    assert tiny.interval() == timedelta(seconds=30)
    assert type(masto).__name__ == "MastodonCollector"
    # its own keys are checked like a built-in's, with file, line and key
    path = write(tmp_path, "sources:\n  - type: tiny\n    every: often\n")
    with pytest.raises(ConfigError, match=r"config.yaml:3: sources\[0\]\.every: expected a "
                                          r"duration like '5m', got 'often'"):
        load_config(path, env={})


def test_an_unregistered_source_type_is_unknown_again(tmp_path: Path) -> None:
    # the config union follows the registry both ways: nothing stays behind
    SOURCES.register(SourceKind("tiny", TinySource, lambda cfg, config, http: []))
    assert parse_config({"sources": [{"type": "tiny"}]}, env={}).sources[0].type == "tiny"
    SOURCES.unregister("tiny")
    with pytest.raises(ConfigError, match=re.escape(
            f"sources[0].type: expected one of {builtin_sources()}, got 'tiny'")):
        parse_config({"sources": [{"type": "tiny"}]}, env={})


# ------------------------------------------------ a tiny rule kind and a tiny notifier


class AboveRule(RuleSettings):
    """Fires while the configured number is above the limit (no store needed)."""

    kind: Literal["above"] = "above"
    number: float
    limit: float = 1.0


def _above(conn: Connection, rule: AboveRule, config: RuleContext,
           now: datetime) -> list[Finding]:
    return [Finding({"tag": tag}, rule.number > rule.limit, rule.number,
                    f"#{tag} at {rule.number} (limit {rule.limit})", rule.limit)
            for tag in (rule.tags or config.hashtags)]


class Inbox(Notifier):
    received: list[Notification]

    def __init__(self) -> None:
        super().__init__(name="inbox")
        self.received = []

    async def send(self, notification: Notification) -> None:
        self.received.append(notification)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()

    def enabled(config: Config, engine: Engine | None) -> Sequence[Notifier]:
        return [box] if config.notify.log.enabled else []

    RULES.register(RuleKind("above", AboveRule, _above))
    NOTIFIERS.register(NotifierKind("inbox", enabled))
    yield box
    RULES.unregister("above")
    NOTIFIERS.unregister("inbox")


async def test_a_registered_rule_kind_fires_through_the_engine_to_a_registered_notifier(
    inbox: Inbox, engine: Engine
) -> None:
    config = parse_config({"hashtags": ["metoo"], "rules": [
        {"name": "metoo-above", "kind": "above", "number": 3, "labels": {"severity": "page"}},
    ]}, env={})
    assert [n.name for n in build_notifiers(config, engine)] == ["log", "inbox"]
    report = evaluate(engine, config, NOW)
    assert [(o.rule, o.state) for o in report.outcomes] == [("metoo-above", "firing")]
    await Dispatcher(engine, config, build_notifiers(config, engine)).run_once(NOW)
    [notification] = inbox.received
    [event] = notification.events
    assert (event.kind, event.rule, event.tag) == ("firing", "metoo-above", "metoo")
    assert event.payload["summary"] == "#metoo at 3.0 (limit 1.0)"
    assert event.labels["severity"] == "page"


# ------------------------------------------------------------------ a real plugin package


PLUGIN = '''
"""A separately installed package adding one of each kind."""
from __future__ import annotations

from typing import Literal

import typer

from monitor.commands import CommandSet
from monitor.config import Config  # a plugin may import the config: it is built on first use
from monitor.detect.registry import RuleKind
from monitor.detect.settings import RuleSettings
from monitor.notify.base import Notifier
from monitor.notify.registry import NotifierKind
from monitor.sources.registry import SourceKind
from monitor.sources.settings import SourceSettings


class ParrotSource(SourceSettings):
    type: Literal["parrot"]
    word: str = "hello"


class Parrot:
    platform = source = "parrot"

    def __init__(self, word: str) -> None:
        self.word = word


class EchoRule(RuleSettings):
    kind: Literal["echo"] = "echo"


class Pager(Notifier):
    async def send(self, notification: object) -> None:
        pass


def _hello(app: typer.Typer) -> None:
    @app.command("parrot-hello")
    def hello() -> None:
        """Say hello."""
        print("hello from the parrot plugin")


SOURCE = SourceKind("parrot", ParrotSource, lambda cfg, config, http: [Parrot(cfg.word)])
RULE = RuleKind("echo", EchoRule, lambda conn, rule, config, now: [])
NOTIFIER = NotifierKind("pager", lambda config, engine: [Pager(name="pager")])
COMMANDS = CommandSet("parrot", _hello)
assert Config
'''

ENTRY_POINTS = """
[hashtag_monitor.sources]
parrot = parrot_plugin:SOURCE
broken = parrot_plugin:MISSING

[hashtag_monitor.rules]
echo = parrot_plugin:RULE

[hashtag_monitor.notifiers]
pager = parrot_plugin:NOTIFIER

[hashtag_monitor.commands]
parrot = parrot_plugin:COMMANDS
"""

CHECK = """
import asyncio, json
from monitor.config import load_config
from monitor.notify.registry import build_notifiers
from monitor.sources import HttpClient
from monitor.sources.registry import build_sources

config = load_config("config.yaml")

async def built():
    async with HttpClient(config.http) as http:
        return [type(c).__name__ + ":" + c.word for c in build_sources(config, http)]

print(json.dumps({"sources": asyncio.run(built()), "rules": [r.kind for r in config.rules],
                  "notifiers": [n.name for n in build_notifiers(config)]}))
"""


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A package installed the way pip leaves one: module plus dist-info with entry points."""
    site = tmp_path / "site"
    dist = site / "parrot_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "parrot_plugin.py").write_text(PLUGIN, encoding="utf-8")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: parrot-plugin\nVersion: 0.1\n",
                                   encoding="utf-8")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_an_installed_plugin_adds_a_source_rule_notifier_and_command(
    plugin_site: Path, tmp_path: Path
) -> None:
    write(tmp_path, "hashtags: [metoo]\nsources:\n  - type: parrot\n    word: hi\n"
                    "rules:\n  - name: e\n    kind: echo\n")
    checked = _run(plugin_site, tmp_path, "-m", "monitor", "check-config", "config.yaml")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: config.yaml: 1 hashtags, 1 source,")
    built = _run(plugin_site, tmp_path, "-c", CHECK)
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout.splitlines()[-1]) == {
        "sources": ["Parrot:hi"], "rules": ["echo"], "notifiers": ["log", "pager"]}
    hello = _run(plugin_site, tmp_path, "-m", "monitor", "parrot-hello")
    assert (hello.returncode, hello.stdout) == (0, "hello from the parrot plugin\n")


def test_a_plugin_that_fails_to_load_is_named_when_its_type_is_used(
    plugin_site: Path, tmp_path: Path
) -> None:
    write(tmp_path, "sources:\n  - type: broken\n")
    result = _run(plugin_site, tmp_path, "-m", "monitor", "check-config", "config.yaml")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: config.yaml:2: sources[0].type: expected one of {builtin_sources()}, "
        "'parrot', got 'broken' (plugin 'broken' failed to load: AttributeError: "
        "module 'parrot_plugin' has no attribute 'MISSING')")
