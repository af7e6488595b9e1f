"""Notifiers: which ones the configuration enables, built by name.

:data:`NOTIFIERS` holds one :class:`NotifierKind` per notifier: a name and a
factory ``(config, engine) → notifiers``. A factory returns none when its
notifier is disabled and may return several (email: one per recipient, each
with its own filters, queue and hourly cap). The built-ins are the tuple below,
in the order they are built; an installed plugin adds one through the
``hashtag_monitor.notifiers`` entry-point group (see docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from monitor.config import Config
from monitor.notify.base import Notifier
from monitor.notify.chat import AppriseNotifier, WebhookNotifier
from monitor.notify.email import EmailNotifier
from monitor.notify.log import LogNotifier
from monitor.notify.mqtt import MqttNotifier
from monitor.registry import ENTRY_POINT_PREFIX, Registry

__all__ = ["NOTIFIERS", "NotifierKind", "build_notifiers"]


@dataclass(frozen=True, slots=True)
class NotifierKind:
    """One notifier: its name and what the configuration makes of it."""

    name: str
    # engine: read access to the store for notifiers that show context (charts, co-tags)
    build: Callable[[Config, Engine | None], Sequence[Notifier]]


def _log(config: Config, engine: Engine | None) -> list[Notifier]:
    return [LogNotifier()] if config.notify.log.enabled else []


def _email(config: Config, engine: Engine | None) -> list[Notifier]:
    mail = config.notify.email
    if not mail.enabled:
        return []
    return [EmailNotifier(config, recipient, engine=engine) for recipient in mail.recipients]


def _mqtt(config: Config, engine: Engine | None) -> list[Notifier]:
    mqtt = config.notify.mqtt
    return [MqttNotifier(mqtt)] if mqtt.enabled else []


def _apprise(config: Config, engine: Engine | None) -> list[Notifier]:
    # each target: one notifier with its own filters, queue, grouping and hourly cap
    return [AppriseNotifier(target) for target in config.notify.apprise]


def _webhooks(config: Config, engine: Engine | None) -> list[Notifier]:
    return [WebhookNotifier(target, config.http) for target in config.notify.webhooks]


NOTIFIERS: Registry[NotifierKind] = Registry(
    "notifier",
    ENTRY_POINT_PREFIX + "notifiers",
    NotifierKind,
    (
        NotifierKind("log", _log),
        NotifierKind("email", _email),
        NotifierKind("mqtt", _mqtt),
        NotifierKind("apprise", _apprise),
        NotifierKind("webhook", _webhooks),
    ),
)


def build_notifiers(config: Config, engine: Engine | None = None) -> list[Notifier]:
    """The notifiers the configuration enables: log, one email per recipient, MQTT, plugins."""
    return [notifier for kind in NOTIFIERS for notifier in kind.build(config, engine)]
