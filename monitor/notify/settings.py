"""Configuration of alert delivery (config.yaml ``notify:``).

Secrets never need to live in the file: every string may reference the
environment as ``${VAR}`` (expanded by :mod:`monitor.config`), e.g.
``password: ${SMTP_PASSWORD}``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.durations import Duration
from monitor.tags import normalise_tag

__all__ = [
    "AppriseTarget",
    "DigestSettings",
    "EmailSettings",
    "GroupingSettings",
    "LogNotifierSettings",
    "MqttSettings",
    "NotifySettings",
    "Recipient",
    "RetrySettings",
    "SmtpSettings",
    "WebhookTarget",
]

_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_TOPIC_PREFIX = re.compile(r"^[^#+\s]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogNotifierSettings(_Strict):
    """One log line per alert transition (never any post text). On by default."""

    enabled: bool = True


class SmtpSettings(_Strict):
    """How to reach the mail server. ``security``: starttls (port 587), tls (465), none."""

    host: str = ""
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    timeout: Duration = timedelta(seconds=30)
    validate_certs: bool = True
    ca_file: str = ""  # PEM bundle to trust instead of the system CAs (a private mail relay)


class Recipient(_Strict):
    """One mailbox; empty ``tags`` / ``rules`` mean every tag / every rule."""

    address: str
    tags: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    digest: bool = True  # receives the daily digest when email.digest.enabled

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value.strip()):
            raise ValueError(f"expected an email address like name@example.org, got {value!r}")
        return value.strip()

    @field_validator("tags")
    @classmethod
    def _tags(cls, values: list[str]) -> list[str]:
        return [normalise_tag(v) for v in values]


class DigestSettings(_Strict):
    """A daily summary per recipient: each followed tag's volume, tone, change vs last week."""

    enabled: bool = False
    hour_utc: int = Field(default=7, ge=0, le=23)


class EmailSettings(_Strict):
    enabled: bool = False
    smtp: SmtpSettings = SmtpSettings()
    sender: str = "hashtag-monitor <monitor@localhost>"
    recipients: list[Recipient] = Field(default_factory=list)
    chart_days: int = Field(default=3, ge=1, le=60)
    example_posts: int = Field(default=3, ge=0, le=20)
    cotags: int = Field(default=8, ge=0, le=50)
    dashboard_url: str = ""  # linked from every email when set
    digest: DigestSettings = DigestSettings()

    @model_validator(mode="after")
    def _usable(self) -> EmailSettings:
        if self.enabled and not self.smtp.host:
            raise ValueError("expected smtp.host (the mail server) when enabled is true, got none")
        if self.enabled and not self.recipients:
            raise ValueError("expected at least one recipient when enabled is true, got none")
        return self

    @field_validator("recipients", mode="before")
    @classmethod
    def _plain_addresses(cls, values: object) -> object:
        # accept "a@b.org" as shorthand for {address: a@b.org}
        if isinstance(values, list):
            return [{"address": v} if isinstance(v, str) else v for v in values]
        return values


class MqttSettings(_Strict):
    """Alert events, retained per-tag state and an online/offline status topic."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str = ""
    password: str = ""
    tls: bool = False
    prefix: str = "hashtag-monitor"
    client_id: str = ""  # empty: hashtag-monitor-<host>-<pid>
    keepalive: int = Field(default=30, ge=5, le=3600)
    qos: Literal[0, 1, 2] = 1

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or not _TOPIC_PREFIX.match(value):
            raise ValueError(f"expected a topic prefix without '#', '+' or spaces, got {value!r}")
        return value


_TARGET_NAME = r"^[A-Za-z0-9_.-]{1,40}$"


class _Target(_Strict):
    """A chat or webhook destination; empty ``tags`` / ``rules`` mean every tag / rule."""

    name: str = Field(pattern=_TARGET_NAME)  # names its deliveries: "apprise:<name>"
    tags: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _tags(cls, values: list[str]) -> list[str]:
        return [normalise_tag(v) for v in values]


class AppriseTarget(_Target):
    """Apprise URLs (Slack, Matrix, Teams, Discord, Telegram, ntfy, json:// …) that get
    the same messages; secrets as ``${ENV}`` references. Needs the ``apprise`` extra."""

    urls: list[str] = Field(min_length=1)

    @field_validator("urls")
    @classmethod
    def _urls(cls, values: list[str]) -> list[str]:
        for url in values:
            if "://" not in url:
                # not echoed: a URL usually carries a token
                raise ValueError("expected an Apprise URL like slack://… or json://…, got a "
                                 "value without '://'")
        return values


class WebhookTarget(_Target):
    """A plain JSON POST signed with HMAC-SHA256 over the body (README "Webhooks")."""

    url: str
    secret: str = Field(min_length=16)
    timeout: Duration = timedelta(seconds=10)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class GroupingSettings(_Strict):
    """Alertmanager-style grouping: one message per group, not one per alert.

    ``group_by`` names labels (``tag``, ``source`` …) or ``rule`` / ``state``.
    ``group_wait``: how long a new group collects alerts before its first message.
    ``group_interval``: the least time between two messages of the same group.
    """

    group_by: list[str] = Field(default_factory=lambda: ["rule"])
    group_wait: Duration = timedelta(seconds=30)
    group_interval: Duration = timedelta(minutes=5)


class RetrySettings(_Strict):
    """Backoff while a notifier is down; rows older than ``give_up_after`` stop retrying.

    The shared backoff (:class:`monitor.backoff.Backoff`, equal jitter): the
    first wait is ``initial`` to 2×``initial``, each next range doubles, and
    no wait is longer than ``max``.
    """

    initial: Duration = timedelta(seconds=15)
    max: Duration = timedelta(minutes=10)
    give_up_after: Duration = timedelta(days=2)


class NotifySettings(_Strict):
    """Everything about delivering alerts (see README "Notifications")."""

    log: LogNotifierSettings = LogNotifierSettings()
    email: EmailSettings = EmailSettings()
    mqtt: MqttSettings = MqttSettings()
    apprise: list[AppriseTarget] = Field(default_factory=list)
    webhooks: list[WebhookTarget] = Field(default_factory=list)
    grouping: GroupingSettings = GroupingSettings()
    retry: RetrySettings = RetrySettings()
    # hard cap of messages per recipient per rolling hour; the last one is a
    # "N more suppressed" notice when more were due
    max_per_recipient_per_hour: int = Field(default=10, ge=2, le=10_000)
    poll_interval: Duration = timedelta(seconds=5)

    @model_validator(mode="after")
    def _unique_targets(self) -> NotifySettings:
        for key, targets in (("apprise", self.apprise), ("webhooks", self.webhooks)):
            names = [t.name for t in targets]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"expected unique {key} names, got {twice[0]!r} twice")
        return self
