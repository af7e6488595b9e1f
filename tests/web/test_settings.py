"""web: settings — loopback by default, a token required anywhere else."""

from __future__ import annotations

import pytest

from monitor.config import parse_config
from monitor.errors import ConfigError
from monitor.web.settings import is_loopback


def test_defaults_are_loopback_without_token() -> None:
    web = parse_config({}, env={}).web
    assert (web.enabled, web.host, web.port, web.token) == (True, "127.0.0.1", 8765, None)


def test_unset_env_token_means_no_token_and_env_overrides() -> None:
    assert parse_config({"web": {"token": "${MONITOR_WEB_TOKEN:-}"}}, env={}).web.token is None
    env = {"MONITOR_WEB_TOKEN": "a-long-enough-token", "MONITOR_WEB_HOST": "0.0.0.0"}
    web = parse_config({}, env=env).web
    assert (web.host, web.token) == ("0.0.0.0", "a-long-enough-token")


def test_short_token_and_missing_token_off_loopback_name_the_key() -> None:
    with pytest.raises(ConfigError, match="web: expected token of at least 16 characters"):
        parse_config({"web": {"token": "short"}}, env={})
    with pytest.raises(ConfigError, match="token is required"):
        parse_config({"web": {"host": "192.168.1.5"}}, env={})
    # disabled dashboards need no token wherever they would bind
    assert parse_config({"web": {"host": "0.0.0.0", "enabled": False}}, env={}).web.token is None


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("127.8.0.1", True),
                                            ("::1", True), ("[::1]", True), ("localhost", True),
                                            ("0.0.0.0", False), ("10.0.0.2", False),
                                            ("example.org", False)])
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop
