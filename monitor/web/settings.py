"""Settings of the dashboard and JSON API (config.yaml ``web:``)."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.durations import Duration

__all__ = ["WebSettings", "is_loopback", "unprotected_problem"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost' (where no token is needed)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebSettings(BaseModel):
    """The dashboard is served by the service. Bound to loopback by default; any other
    address requires an access token (``${MONITOR_WEB_TOKEN}`` in config.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    token: str | None = None
    # every API request gets this long, then a 503 (the work still ends in its thread,
    # holding its heavy-query slot, so a flood cannot pile up threads)
    request_budget: Duration = timedelta(seconds=10)
    # range queries (series, top, cotags, relate) running at once; more wait, then 503
    heavy_queries: int = Field(default=2, ge=1, le=64)

    @field_validator("token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # `token: ${MONITOR_WEB_TOKEN:-}` with the variable unset means "no token"
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> WebSettings:
        if self.token is not None and len(self.token) < 16:
            raise ValueError(
                f"expected token of at least 16 characters, got {len(self.token)}"
            )
        if self.enabled:
            problem = unprotected_problem(self.host, self.token)
            if problem:
                raise ValueError(problem)
        if self.request_budget.total_seconds() <= 0:
            raise ValueError(f"expected request_budget above 0s, got {self.request_budget}")
        return self


def unprotected_problem(host: str, token: str | None) -> str | None:
    """Why serving on *host* with *token* would be open to the network (None when it is not).

    Checked by the config when the dashboard is enabled, and again by
    :func:`monitor.web.server.serve` whatever the config says: ``monitor web
    --host 0.0.0.0`` with ``web.enabled: false`` must not serve an open API either.
    """
    if is_loopback(host) or token:
        return None
    return (f"token is required when host is {host!r} (not loopback, so anyone on "
            "the network could read the dashboard), got none")
