"""How the sources put a failure, and the wait before the next try, into words.

Every log line and error message of the network path is built from these, so
an operator reads the same phrases ("cannot connect (connection refused)",
"retrying in 4s") whichever platform or stage failed. Never post text.
"""

from __future__ import annotations

import json
import socket

import httpx

from monitor.errors import SourceError

__all__ = ["HttpStatusError", "describe_transport_error", "error_name", "format_wait"]


class HttpStatusError(SourceError):
    """The server answered with an error status that retrying will not fix (a 4xx).

    ``error`` is the platform's own error name when the body carries one
    (Mastodon ``{"error": "..."}``, Bluesky ``{"error": "AuthMissing", ...}``).
    """

    def __init__(
        self, message: str, *, status: int, host: str, error: str | None, retryable: bool
    ) -> None:
        self.host = host
        self.error = error
        super().__init__(message, retryable=retryable, status=status)


def format_wait(seconds: float) -> str:
    """Human wait: 0.4s, 37s, 4m10s."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def describe_transport_error(exc: BaseException) -> tuple[str, str]:
    """(what went wrong, a hint for the operator) for a connect/timeout failure."""
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "cannot connect (name resolution failed)", "is this machine online?"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "cannot connect (connection refused)", "is the server running and the URL right?"
    if isinstance(exc, httpx.TimeoutException):
        phase = {
            httpx.ConnectTimeout: "connect",
            httpx.ReadTimeout: "read",
            httpx.WriteTimeout: "write",
            httpx.PoolTimeout: "pool",
        }.get(type(exc), "request")
        return f"timed out ({phase})", "the server is slow or overloaded"
    if any(s in text for s in ("name or service not known", "nodename nor servname",
                               "name resolution", "getaddrinfo", "no address associated",
                               "name does not resolve")):
        return "cannot connect (name resolution failed)", "is this machine online?"
    if "refused" in text:
        return "cannot connect (connection refused)", "is the server running and the URL right?"
    if "unreachable" in text:
        return "cannot connect (network unreachable)", "is this machine online?"
    if "ssl" in text or "certificate" in text:
        return "cannot connect (TLS handshake failed)", "check the URL scheme and the clock"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection dropped mid-response", "the server closed the connection"
    return "cannot connect", "is this machine online?"


def _chain(exc: BaseException) -> list[BaseException]:
    """*exc*, its causes and contexts and the members of exception groups (bounded)."""
    chain: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(chain) < 12:
        seen = pending.pop(0)
        chain.append(seen)
        pending.extend(e for e in (seen.__cause__, seen.__context__) if e is not None)
        if isinstance(seen, BaseExceptionGroup):
            pending.extend(seen.exceptions)
    return chain


def error_name(body: bytes) -> str | None:
    """The platform's error name from a JSON error body, if there is one."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, str) and len(err) < 200:
            return err
    return None
