"""The dashboard's session cookie: a signed, expiring value, never the API token itself.

Opening ``/?token=TOKEN`` once trades the token for a cookie holding
``v1.<expires>.<nonce>.<signature>``: the signature is an HMAC-SHA256 over the
rest, keyed with a key derived from the token. So

* a cookie read from a browser profile, a proxy log or a backup does not
  reveal the token (which also opens ``/metrics`` and every script's access);
* a changed token ends every session at once (the key changes with it);
* a session ends by itself after :data:`SESSION_SECONDS`;
* sessions survive a restart of the service (no server-side state).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

__all__ = ["COOKIE", "SESSION_SECONDS", "make_session", "valid_session"]

COOKIE = "monitor_session"
SESSION_SECONDS = 7 * 24 * 3600
_VERSION = "v1"


def _key(token: str) -> bytes:
    # a key of its own, so the signature is never an oracle for the token's own MAC
    return hmac.new(token.encode(), b"hashtag-monitor dashboard session", hashlib.sha256).digest()


def _sign(token: str, payload: str) -> str:
    return hmac.new(_key(token), payload.encode(), hashlib.sha256).hexdigest()


def make_session(token: str, *, now: float | None = None) -> str:
    """A new signed session value for the holder of *token*."""
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    payload = f"{_VERSION}.{expires}.{secrets.token_hex(8)}"
    return f"{payload}.{_sign(token, payload)}"


def valid_session(value: str | None, token: str, *, now: float | None = None) -> bool:
    """True when *value* was made by :func:`make_session` with *token* and has not expired."""
    if not value:
        return False
    payload, _, signature = value.rpartition(".")
    parts = payload.split(".")
    if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit():
        return False
    if not hmac.compare_digest(signature.encode(), _sign(token, payload).encode()):
        return False
    return int(parts[1]) > (time.time() if now is None else now)
