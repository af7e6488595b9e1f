"""config.yaml loading: env expansion, MONITOR_* overrides, one-line errors with file/line/key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.tags import normalise_tag

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "config.yaml", env={})
    assert config.database.url == "sqlite:///data/monitor.db"
    assert {"metoo", "howiwillchange", "notallmen"} <= set(config.hashtags)
    assert config.privacy.authors == "hash"


def test_defaults_are_cautious_about_people(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "{}\n"), env={})
    assert config.privacy.authors == "hash"
    assert config.privacy.store_text is False
    assert config.sources == []


def test_env_expansion_with_and_without_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "database:\n  url: ${DB_URL:-sqlite:///x.db}\nprivacy:\n  hash_secret: ${SALT}\n",
    )
    config = load_config(path, env={"SALT": "s3cret"})
    assert config.database.url == "sqlite:///x.db"
    assert config.privacy.hash_secret == "s3cret"
    config = load_config(path, env={"SALT": "a", "DB_URL": "postgresql://u@h/db"})
    assert config.database.url == "postgresql://u@h/db"


def test_missing_env_var_names_key_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "privacy:\n  hash_secret: ${SALT}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert (
        str(err.value)
        == f"{path}: privacy.hash_secret: environment variable SALT is not set and has no default"
    )


def test_monitor_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "database:\n  url: sqlite:///a.db\nhashtags: [metoo]\n")
    config = load_config(
        path,
        env={
            "MONITOR_DATABASE_URL": "postgresql://postgres@127.0.0.1/test",
            "MONITOR_HASHTAGS": "MeToo, NotAllMen",
            "MONITOR_PRIVACY_STORE_TEXT": "true",
            "MONITOR_PRIVACY_AUTHORS": "drop",
        },
    )
    assert config.database.url == "postgresql://postgres@127.0.0.1/test"
    assert config.hashtags == ["metoo", "notallmen"]
    assert config.privacy.store_text is True
    assert config.privacy.authors == "drop"


def test_bad_duration_names_file_line_key_and_expectation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sources:\n"
        "  - type: mastodon\n"
        "    instances: [https://a.example]\n"
        "  - type: mastodon\n"
        "    instances: [https://b.example]\n"
        "    interval: fast\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert str(err.value) == (
        f"{path}:6: sources[1].interval: expected a duration like '5m', got 'fast'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "privacy:\n  authors: sometimes\n",
            "privacy.authors: expected 'keep', 'hash' or 'drop', got 'sometimes'",
        ),
        ("databse:\n  url: x\n", "databse: unknown key"),
        ("sources:\n  - type: myspace\n", "sources[0].type: expected one of"),
        ("hashtags: [42]\n", "hashtags[0]: expected a string, got 42"),
        (
            "hashtags: ['me too']\n",
            "hashtags: expected a tag of letters, digits or '_', got 'me too'",
        ),
        (
            "database:\n  url: mysql://x\n",
            "database.url: expected a sqlite:/// or postgresql:// URL",
        ),
        ("a: [1\n", "invalid YAML"),
        ("- 1\n- 2\n", "expected a mapping of settings, got list"),
    ],
)
def test_bad_values_give_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "config.yaml"))
    assert expected in message


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_durations_parse(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sources:\n  - type: mastodon\n    instances: [https://a.example]\n    interval: 90s\n",
    )
    assert load_config(path, env={}).sources[0].interval == timedelta(seconds=90)


@pytest.mark.parametrize(
    ("raw", "tag"),
    [
        ("#MeToo.", "metoo"),
        ("＃ＭｅＴｏｏ", "metoo"),
        ("#NotAllMen!", "notallmen"),
        ("#MöTöö", "mötöö"),
        ("#我也是", "我也是"),
        ("#How_I_Will_Change,", "how_i_will_change"),
    ],
)
def test_normalise_tag(raw: str, tag: str) -> None:
    assert normalise_tag(raw) == tag


def test_privacy_deletions_recheck_and_retention(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("privacy:\n  deletions: recount\n  recheck: 7d\n"
                    "  retention:\n    text: 30d\n    authors: forever\n")
    privacy = load_config(path, env={"MONITOR_PRIVACY_RETENTION_POSTS": "365d"}).privacy
    assert privacy.deletions == "recount" and privacy.recheck == timedelta(days=7)
    r = privacy.retention
    assert (r.text, r.authors, r.posts) == (timedelta(days=30), None, timedelta(days=365))
    # the defaults keep everything and ask nothing; a bare YAML `off` is off
    path.write_text("privacy:\n  recheck: off\n")
    privacy = load_config(path, env={}).privacy
    assert privacy.deletions == "keep" and privacy.recheck is None
    assert privacy.retention.text is None and privacy.retention.posts is None
    for bad, expected in (("retention:\n    text: soon", "privacy.retention.text"),
                          ("retention:\n    posts: 0s", "privacy.retention.posts"),
                          ("deletions: drop", "privacy.deletions")):
        path.write_text(f"privacy:\n  {bad}\n")
        with pytest.raises(ConfigError) as err:
            load_config(path, env={})
        assert expected in str(err.value) and "\n" not in str(err.value)
