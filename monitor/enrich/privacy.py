"""What is kept about people: author handles kept, keyed-hashed or dropped.

A hashed author is ``HMAC-SHA256(secret, platform + NUL + handle)`` in hex: the
same person on the same platform always gets the same pseudonym (so "how many
distinct authors" still works), but nobody without the secret can test a
guessed handle against it, as they could with a plain or salted-in-public hash.

The secret is ``privacy.hash_secret`` when set. Otherwise a random one is
created once in ``<secret_dir>/.author_secret`` (mode 0600) and reused, so
pseudonyms stay stable across restarts. Losing that file changes every
pseudonym from then on, so a damaged file is an error, never silently replaced.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from monitor.config import Config
from monitor.errors import ConfigError

__all__ = ["SECRET_FILE", "AuthorPolicy", "default_secret_dir", "load_or_create_secret"]

log = logging.getLogger(__name__)

SECRET_FILE = ".author_secret"
_SECRET_BYTES = 32


def default_secret_dir(database_url: str) -> Path:
    """Beside the SQLite database file; ``./data`` for PostgreSQL or in-memory SQLite."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return Path("data")
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" and not (
        database.startswith("file:")
    ):
        return Path(database).expanduser().parent
    return Path("data")


def load_or_create_secret(secret_dir: Path) -> bytes:
    """The author-hash secret in *secret_dir*, created (0600) on first use.

    Creation is atomic (written to a private temp file, then hard-linked into
    place), so two processes starting together agree on one secret.
    """
    path = secret_dir / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    try:
        secret_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = secret_dir / f"{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(_SECRET_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
                log.info("created a new author-hash secret in %s", path)
            except FileExistsError:
                pass  # another process won the race; use its secret
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(str(path), "privacy.hash_secret",
                          f"cannot create the author secret file: {exc.strerror}") from None
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        raw = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "privacy.hash_secret",
                          f"cannot read the author secret file: {exc}") from None
    if len(raw) < 32:
        raise ConfigError(
            str(path), "privacy.hash_secret",
            "the author secret file is empty or truncated; restore it from a backup "
            "(a new secret would change every author pseudonym) or set privacy.hash_secret",
        )
    if stat.S_IMODE(mode) & 0o077:
        log.warning("%s is readable by other users; restricting it to mode 0600", path)
        try:
            path.chmod(0o600)
        except OSError:
            log.warning("could not change the mode of %s", path)
    return raw.encode("ascii")


class AuthorPolicy:
    """Applies ``privacy.authors`` (keep | hash | drop) to an author handle."""

    __slots__ = ("_key", "mode")

    def __init__(self, mode: str, secret: bytes | None = None) -> None:
        if mode not in ("keep", "hash", "drop"):
            raise ValueError(f"privacy.authors: expected keep, hash or drop, got {mode!r}")
        if mode == "hash" and not secret:
            raise ValueError("privacy.authors is 'hash' but no secret was given")
        self.mode = mode
        self._key = secret or b""

    @classmethod
    def from_config(cls, config: Config, secret_dir: Path | None = None) -> AuthorPolicy:
        """The policy of *config*; creates the secret file only when hashing needs it."""
        mode = config.privacy.authors
        if mode != "hash":
            return cls(mode)
        if config.privacy.hash_secret:
            return cls(mode, config.privacy.hash_secret.encode("utf-8"))
        directory = secret_dir if secret_dir is not None else default_secret_dir(
            config.database.url
        )
        return cls(mode, load_or_create_secret(directory))

    def apply(self, platform: str, author: str | None) -> str | None:
        """The author as stored: the handle, its 64-hex-digit pseudonym, or None."""
        if author is None or self.mode == "drop":
            return None
        if self.mode == "keep":
            return author
        message = f"{platform}\x00{author}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never shows the key
        return f"AuthorPolicy(mode={self.mode!r})"
