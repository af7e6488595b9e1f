"""Settings of the dashboard and JSON API (config.yaml ``web:``)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["WebSettings", "is_loopback"]


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
        if self.enabled and not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"token is required when host is {self.host!r} (not loopback, so anyone on "
                "the network could read the dashboard), got none"
            )
        return self
