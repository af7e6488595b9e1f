"""The ``notify:`` block of config.yaml: defaults, ${VAR} secrets, clear errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError

EXAMPLE = """
hashtags: [metoo]
notify:
  grouping:
    group_by: [rule, tag]
    group_wait: 1m
    group_interval: 10m
  max_per_recipient_per_hour: 6
  email:
    enabled: true
    smtp:
      host: smtp.example.org
      port: 465
      security: tls
      username: alerts
      password: ${SMTP_PASSWORD}
    sender: "Hashtag Monitor <alerts@example.org>"
    recipients:
      - desk@example.org
      - address: research@example.org
        tags: ["#MeToo"]
        rules: [metoo-spike]
    digest: {enabled: true, hour_utc: 6}
  mqtt:
    enabled: true
    host: broker.local
    prefix: newsroom/hashtags/
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_block_loads_with_secret_from_env(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, EXAMPLE), env={"SMTP_PASSWORD": "hunter2"})
    n = config.notify
    assert n.email.smtp.password == "hunter2" and n.email.smtp.security == "tls"
    assert [r.address for r in n.email.recipients] == ["desk@example.org",
                                                       "research@example.org"]
    assert n.email.recipients[1].tags == ["metoo"]  # normalised like every tag
    assert n.grouping.group_wait == timedelta(minutes=1)
    assert n.mqtt.prefix == "newsroom/hashtags"
    assert n.log.enabled  # still on unless switched off


def test_missing_secret_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"notify\.email\.smtp\.password: environment variable "
                                          r"SMTP_PASSWORD is not set"):
        load_config(_write(tmp_path, EXAMPLE), env={})


@pytest.mark.parametrize(("snippet", "message"), [
    ("notify: {email: {enabled: true, recipients: [a@b.org]}}",
     r"config.yaml:1: notify.email: expected smtp.host \(the mail server\) when enabled is true"),
    ("notify:\n  email:\n    recipients: [not-an-address]",
     r"config.yaml:3: notify.email.recipients\[0\].address: expected an email address"),
    ("notify: {mqtt: {prefix: 'a/#'}}",
     r"notify.mqtt.prefix: expected a topic prefix without '#'"),
    ("notify: {grouping: {group_wait: soon}}",
     r"notify.grouping.group_wait: expected a duration like '5m', got 'soon'"),
    ("notify: {max_per_recipient_per_hour: 1}",
     r"notify.max_per_recipient_per_hour: expected greater than or equal to 2, got 1"),
])
def test_bad_notify_settings_are_one_clear_line(tmp_path: Path, snippet: str,
                                                message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, snippet), env={})


def test_environment_overrides_turn_on_mail_and_mqtt(tmp_path: Path) -> None:
    # what docker-compose does: no file edits, only MONITOR_NOTIFY_* variables
    config = load_config(_write(tmp_path, "hashtags: [metoo]\n"), env={
        "MONITOR_NOTIFY_EMAIL_ENABLED": "true",
        "MONITOR_NOTIFY_EMAIL_SMTP_HOST": "mailpit",
        "MONITOR_NOTIFY_EMAIL_SMTP_PORT": "1025",
        "MONITOR_NOTIFY_EMAIL_SMTP_SECURITY": "none",
        "MONITOR_NOTIFY_EMAIL_RECIPIENTS": "desk@example.org,research@example.org",
        "MONITOR_NOTIFY_MQTT_ENABLED": "true",
        "MONITOR_NOTIFY_MQTT_HOST": "mosquitto",
    })
    email, mqtt = config.notify.email, config.notify.mqtt
    assert email.enabled and email.smtp.host == "mailpit" and email.smtp.port == 1025
    assert [r.address for r in email.recipients] == ["desk@example.org", "research@example.org"]
    assert mqtt.enabled and mqtt.host == "mosquitto"
