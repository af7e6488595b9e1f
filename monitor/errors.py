"""One exception tree for the project.

    MonitorError
    ├── ConfigError      bad configuration: file, key path, what was expected
    ├── InputError       a malformed input row or payload (file import, API page)
    ├── SourceError      a collector could not fetch (network, HTTP status, payload)
    │   └── RateLimited  the platform asked us to wait
    ├── StoreError       the database refused or is unreachable
    ├── NotifyError      a notifier could not deliver
    └── MissingExtra     an optional feature's package (an extra) is not installed

Messages are one line and name where the problem is, so the CLI prints them as
they are and exits non-zero without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InputError",
    "MissingExtra",
    "MonitorError",
    "NotifyError",
    "RateLimited",
    "SourceError",
    "StoreError",
]


class MonitorError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(MonitorError, ValueError):
    """Configuration invalid; ``str()`` is ``FILE: key.path: expected …, got …``."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(f"{where}{problem}")


class InputError(MonitorError, ValueError):
    """A malformed record; ``str()`` is ``WHERE: reason``."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class SourceError(MonitorError):
    """A fetch failed. ``retryable`` tells the caller whether to back off and retry."""

    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None) -> None:
        self.retryable = retryable
        self.status = status
        super().__init__(message)


class RateLimited(SourceError):
    """The platform said 429 (or its equivalent); wait ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message, retryable=True, status=429)


class StoreError(MonitorError):
    """The database could not be reached or refused a write."""


class NotifyError(MonitorError):
    """A notifier could not deliver; the outbox keeps the row and retries."""


class MissingExtra(MonitorError):
    """An optional feature's package is missing; ``str()`` says which extra installs it."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"{feature} needs {package}: pip install 'hashtag-monitor[{extra}]'")
