"""Command-line values checked as the config checks them, in every command that takes
them, and the other one-line errors of the first hour (issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from monitor.cli import app
from monitor.commands import register_all
from monitor.models import ScoredPost
from monitor.store.write import write_batch

register_all()
runner = CliRunner()


def invoke(*args: str) -> tuple[int, list[str], str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.stderr.strip().splitlines(), result.stdout


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: '{url}'\nhashtags: [metoo, notallmen]\n"
                    "privacy:\n  hash_secret: test\n"
                    "rules:\n  - kind: spike\n    name: spike\n    labels: {severity: page}\n",
                    encoding="utf-8")
    return path


BAD_TAG = "expected a tag of letters, digits or '_', got 'bad tag'"


@pytest.mark.parametrize("command", [
    ["trends", "bad tag"], ["cotags", "bad tag"], ["relate", "metoo", "bad tag"],
    ["export", "posts", "--out", "-", "--tag", "bad tag"], ["backtest", "--tag", "bad tag"],
    ["silence", "add", "tag=bad tag"],
])
def test_every_tag_argument_is_checked_like_the_config(cfg: Path, command: list[str]) -> None:
    code, err, _ = invoke(*command, "--config", str(cfg))
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and err[0].endswith(BAD_TAG), err


def test_platform_and_durations_are_checked(cfg: Path) -> None:
    code, err, _ = invoke("forget", "--author", "someone", "--platform", "",
                          "--config", str(cfg))
    assert (code, err) == (2, ["error: --platform: expected a platform name like 'twitter' or "
                               "'mastodon' (a letter, then letters, digits, '.', '-' or '_'), "
                               "got ''"])
    for command, option in ((["silence", "add", "rule=spike", "--for", "0s"], "--for"),
                            (["alerts", "--recent", "0m"], "--recent")):
        code, err, _ = invoke(*command, "--config", str(cfg))
        assert code == 2 and err == [f"error: {option}: expected a duration above zero, got "
                                     f"'{command[-1]}'"], err
    for command in (["trends", "metoo", "--step", "0m"], ["export", "series", "--out", "-",
                                                          "--step", "7m"]):
        code, err, _ = invoke(*command, "--config", str(cfg))
        assert (code, err) == (2, ["error: --step: expected a positive multiple of 5m (e.g. 5m, "
                                   f"1h, 1d), got '{command[-1]}'"]), err


@pytest.mark.parametrize("command", [["trends", "metoo"], ["backtest"]])
def test_until_before_since_names_both(cfg: Path, command: list[str]) -> None:
    code, err, _ = invoke(*command, "--since", "2026-01-02", "--until", "2026-01-01",
                          "--config", str(cfg))
    assert (code, err) == (2, ["error: --since/--until: the start '2026-01-02' is not before "
                               "the end '2026-01-01' (--until)"])


def post(key: str, tag: str) -> ScoredPost:
    return ScoredPost(platform="mastodon", key=key, created_at=datetime.now(UTC), url=None,
                      author=None, text=None, lang="en", tags=(tag,), is_repost=False,
                      sensitive=False, sentiment=None)


def test_a_tag_neither_followed_nor_seen_gets_a_hint(engine: Engine, cfg: Path) -> None:
    write_batch(engine, [post("1", "ididit")])
    code, err, _ = invoke("trends", "zzz", "--config", str(cfg))
    assert (code, err) == (2, [
        "error: TAG: #zzz is not followed and has no posts in the database (followed: metoo, "
        "notallmen); check the spelling, follow it with 'monitor tags add zzz', or import "
        "posts that carry it"])
    for command in (["cotags", "zzz"], ["export", "series", "--out", "-", "--tag", "zzz"]):
        assert invoke(*command, "--config", str(cfg))[0] == 2, command
    # a tag only seen in stored posts is known; a known and an unknown: a warning
    code, err, out = invoke("trends", "ididit", "zzz", "--config", str(cfg))
    assert code == 0 and err[0].startswith("warning: TAG: #zzz is not followed") and "ididit" in out
    assert invoke("trends", "ididit", "--config", str(cfg))[:2] == (0, [])


def test_silence_matching_nothing_configured_warns(cfg: Path) -> None:
    code, err, out = invoke("silence", "add", "rule=spike", "tag=metoo", "--config", str(cfg))
    assert (code, err) == (0, [])
    code, err, out = invoke("silence", "add", "rule=spkie", "tag=zzz", "team=x",
                            "--config", str(cfg))
    assert code == 0 and out.startswith("silence 2: ")
    assert err == [
        "warning: silence rule=spkie tag=zzz team=x: no configured rule is named 'spkie' "
        "(rules: spike)",
        "warning: silence rule=spkie tag=zzz team=x: no rule watches the tag 'zzz' (followed: "
        "metoo, notallmen)",
        "warning: silence rule=spkie tag=zzz team=x: no rule gives its alerts a label 'team' "
        "(labels: cotag, rule, severity, source, stream, tag)"]


def test_digest_to_a_bad_address_is_one_line(cfg: Path) -> None:
    code, err, _ = invoke("digest", "--to", "bad", "--config", str(cfg))
    assert (code, err) == (2, ["error: --to: expected an email address like name@example.org, "
                               "got 'bad'"])


def test_an_environment_override_error_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("web:\n  port: 8765\n", encoding="utf-8")
    monkeypatch.setenv("MONITOR_WEB_PORT", "eighty")
    code, err, _ = invoke("check-config", str(path))
    assert (code, err) == (2, ["error: environment variable MONITOR_WEB_PORT: web.port: "
                               "expected a valid integer, unable to parse string as an integer, "
                               "got 'eighty'"])


def test_a_missing_config_or_database_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    code, err, _ = invoke("status", "--config", str(tmp_path / "nope.yaml"))
    assert (code, err) == (2, [f"error: {tmp_path / 'nope.yaml'}: file not found"])
    data = tmp_path / "data"
    path = tmp_path / "config.yaml"
    path.write_text(f"database:\n  url: 'sqlite:///{data}/monitor.db'\n", encoding="utf-8")
    for command in (["status"], ["trends", "metoo"], ["alerts"]):
        code, err, _ = invoke(*command, "--config", str(path))
        assert code == 1 and len(err) == 1 and "run 'monitor init-db'" in err[0], err
    assert not data.exists()  # neither the file nor its directory


def test_a_usage_mistake_is_one_line_from_the_real_command(tmp_path: Path) -> None:
    from tests.test_cli import monitor

    for args, want in (
        (["top", "--limit", "0"], "error: Invalid value for '--limit' / '-n': Input should be "
                                  "greater than or equal to 1 (see 'monitor top --help')"),
        (["import", "x.csv"], "error: Missing option '--platform' / '-p' (see 'monitor import "
                              "--help')"),
    ):
        result = monitor(*args, cwd=tmp_path)
        assert (result.returncode, result.stderr.strip().splitlines()) == (2, [want]), args


def test_a_pydantic_error_in_any_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from monitor.cli import user_errors
    from monitor.notify.settings import Recipient

    @user_errors
    def command() -> None:
        Recipient(address="bad")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: Recipient: address: expected an email address like name@example.org, got 'bad'"]
