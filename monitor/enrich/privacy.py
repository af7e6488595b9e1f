"""What is kept about people: author handles kept, keyed-hashed or dropped.

A hashed author is ``HMAC-SHA256(key, platform + NUL + handle)`` in hex: the
same person on the same platform always gets the same pseudonym (so "how many
distinct authors" still works), but nobody without the key can test a guessed
handle against it, as they could with a plain or salted-in-public hash.

**One key per database.** The key belongs to the database whose pseudonyms it
made, so every process that writes or exports that database uses the same one,
whatever directory it runs in:

- ``privacy.hash_secret`` (e.g. ``MONITOR_PRIVACY_HASH_SECRET``) or
  ``privacy.hash_secret_file`` (an absolute path; created with a random key,
  mode 0600, when the database has none yet): the key lives outside the
  database, which stores only its fingerprint;
- neither: the database keeps its own key in ``author_keys`` (created on first
  use). A SQLite database that still has the pre-0006 ``.author_secret`` file
  beside it adopts that file's key, so its pseudonyms stay the same.

The database records a fingerprint of its key. A process whose key does not
match, or that cannot find it, refuses to hash (and so to write or export
hashed authors) with one line saying where it looked: a silent new key would
give every author a second pseudonym.

**Rotation** (``monitor rotate-secret``) appends a key: stored pseudonyms ``h``
become ``HMAC(new, h)`` and new posts get ``HMAC(new, HMAC(old, …))``, so an
author keeps one pseudonym and distinct-author counts survive. The older keys
stay in the database as inner links of that chain; without the newest key they
cannot test a handle against anything stored.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from monitor.config import Config
from monitor.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["SECRET_FILE", "AuthorKey", "AuthorPolicy", "fingerprint", "hmac_sha256_hex",
           "is_pseudonym", "legacy_secret_path", "load_or_create_secret",
           "load_or_create_secret_file", "new_secret", "resolve_key"]

log = logging.getLogger(__name__)

SECRET_FILE = ".author_secret"
_SECRET_BYTES = 32
_FINGERPRINT_LABEL = b"hashtag-monitor author key fingerprint v1"
_PSEUDONYM = re.compile(r"[0-9a-f]{64}")


def fingerprint(secret: bytes) -> str:
    """32 hex digits naming a key without revealing it (an HMAC of a fixed label)."""
    return hmac.new(secret, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:32]


def is_pseudonym(value: str) -> bool:
    """True for a stored keyed pseudonym (64 lower-case hex digits), not a handle."""
    return _PSEUDONYM.fullmatch(value) is not None


def new_secret() -> str:
    """A fresh random key, as stored (64 hex digits)."""
    return secrets.token_hex(_SECRET_BYTES)


@functools.lru_cache(maxsize=32)
def _hmac_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the inner and outer padded keys of HMAC (RFC 2104)."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return (hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD)))


_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """``hmac.new(key, message, sha256).hexdigest()``, the key's padding hashed once.

    Every post of an import is keyed twice (author and post key): HMAC hashes the
    padded key again on each call, which copying the two prepared states skips
    (~2.5x faster; tests/enrich/test_privacy.py checks it equals ``hmac``).
    """
    inner_pad, outer_pad = _hmac_pads(key)
    inner = inner_pad.copy()
    inner.update(message)
    outer = outer_pad.copy()
    outer.update(inner.digest())
    return str(outer.hexdigest())


# the same authors post again and again, and each pseudonym costs an HMAC per key
# version: remembered per process, bounded (a long import meets millions of authors)
@functools.lru_cache(maxsize=100_000)
def _pseudonym(chain: tuple[bytes, ...], platform: str, handle: str) -> str:
    message = f"{platform}\x00{handle}".encode("utf-8", "surrogatepass")
    value = hmac_sha256_hex(chain[0], message)
    for key in chain[1:]:
        value = hmac_sha256_hex(key, value.encode("ascii"))
    return value


@dataclass(frozen=True, slots=True)
class AuthorKey:
    """The chain of keys of a database, oldest first; the last one is current."""

    chain: tuple[bytes, ...]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.chain[-1])

    def pseudonym(self, platform: str, handle: str) -> str:
        return _pseudonym(self.chain, platform, handle)

    def __repr__(self) -> str:  # never shows a key
        return f"AuthorKey(fingerprint={self.fingerprint!r}, versions={len(self.chain)})"


# ----------------------------------------------------------------------------- key files

def legacy_secret_path(database_url: str) -> Path | None:
    """Where pre-0006 versions kept a SQLite database's key: beside the file."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return None
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:" and not (
        database.startswith("file:")
    ):
        return Path(database).expanduser().parent / SECRET_FILE
    return None


def load_or_create_secret(secret_dir: Path) -> bytes:
    """The key in ``secret_dir/.author_secret``, created (0600) on first use."""
    return load_or_create_secret_file(secret_dir / SECRET_FILE)


def load_or_create_secret_file(path: Path) -> bytes:
    """The key in *path*, created (0600) on first use.

    Creation is atomic (written to a private temp file, then hard-linked into
    place), so two processes starting together agree on one key.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(new_secret() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, path)
                log.info("created a new author key in %s", path)
            except FileExistsError:
                pass  # another process won the race; use its key
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(str(path), "privacy.hash_secret_file",
                          f"cannot create the author key file: {exc.strerror}") from None
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        raw = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "privacy.hash_secret_file",
                          f"cannot read the author key file: {exc}") from None
    if len(raw) < 32:
        raise ConfigError(
            str(path), "privacy.hash_secret_file",
            "the author key file is empty or truncated; restore it from a backup "
            "(a new key would change every author pseudonym)",
        )
    if stat.S_IMODE(mode) & 0o077:
        log.warning("%s is readable by other users; restricting it to mode 0600", path)
        try:
            path.chmod(0o600)
        except OSError:
            log.warning("could not change the mode of %s", path)
    return raw.encode("ascii")


# ----------------------------------------------------------------------------- per database

def _configured(config: Config, *, create_file: bool) -> tuple[bytes | None, str]:
    """The key the config names (or None) and where that is, for messages."""
    privacy = config.privacy
    if privacy.hash_secret:
        return privacy.hash_secret.encode("utf-8"), "privacy.hash_secret"
    if privacy.hash_secret_file:
        path = Path(privacy.hash_secret_file).expanduser()
        if create_file:
            return load_or_create_secret_file(path), f"privacy.hash_secret_file ({path})"
        try:
            return _read_secret(path), f"privacy.hash_secret_file ({path})"
        except FileNotFoundError:
            return None, f"privacy.hash_secret_file ({path}, not found)"
    return None, "privacy.hash_secret and privacy.hash_secret_file (both empty)"


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def resolve_key(config: Config, engine: Engine, *, create: bool = True) -> AuthorKey | None:
    """The author key of the database behind *engine*, checked against its fingerprint.

    ``create`` records a first key when the database has none (the service and
    imports); without it (exports, forget) None is returned instead. Raises a
    one-line :class:`ConfigError` naming where it looked when the database was
    keyed with a key this process cannot find or that does not match.
    """
    from monitor.store.keys import load_keys

    where = _where(engine)
    rows = load_keys(engine)
    if any(r.state == "rotating" for r in rows):
        raise ConfigError(where, "privacy.hash_secret",
                          "an author key rotation is unfinished: run 'monitor rotate-secret' "
                          "again to finish it before anything writes or exports authors")
    if not rows:
        return _first_key(config, engine, create=create, where=where)
    current = rows[-1]
    configured, looked = _configured(config, create_file=False)
    if current.secret is not None:
        if configured is not None and fingerprint(configured) != current.fingerprint:
            raise ConfigError(where, "privacy.hash_secret", (
                f"{looked} holds a key with fingerprint {fingerprint(configured)}, but this "
                f"database keeps its own author key (fingerprint {current.fingerprint}, table "
                "author_keys): empty the setting, or change the key with 'monitor rotate-secret'"))
        secret = current.secret.encode("utf-8")
    else:
        if configured is None:
            raise ConfigError(where, "privacy.hash_secret", (
                f"this database was keyed with an author key kept outside it (fingerprint "
                f"{current.fingerprint}); looked in {looked}: set one of them to that key"))
        if fingerprint(configured) != current.fingerprint:
            raise ConfigError(where, "privacy.hash_secret", (
                f"{looked} holds a key with fingerprint {fingerprint(configured)}, but this "
                f"database was keyed with fingerprint {current.fingerprint}: set it to the "
                "key the database was keyed with"))
        secret = configured
    inner = [r.secret.encode("utf-8") for r in rows[:-1] if r.secret is not None]
    if len(inner) != len(rows) - 1:
        raise ConfigError(where, "privacy.hash_secret",
                          "table author_keys lacks a retired key of the chain; restore it "
                          "from a backup of the database")
    return AuthorKey((*inner, secret))


def _first_key(config: Config, engine: Engine, *, create: bool, where: str
               ) -> AuthorKey | None:
    """The database has no key yet: the configured one, the legacy file, or a new one."""
    from monitor.store.keys import add_key, has_hashed_authors

    configured, looked = _configured(config, create_file=False)
    legacy = legacy_secret_path(config.database.url)
    keep_in_db = False
    if configured is not None:
        secret = configured
    elif legacy is not None and legacy.exists():
        secret = _read_secret(legacy)
        keep_in_db = True
        if create:
            log.info("the author key of this database now lives in the database (table "
                     "author_keys); %s is no longer read and may be deleted once backed up",
                     legacy)
    elif has_hashed_authors(engine):
        legacy_note = f", {legacy} (absent)" if legacy is not None else ""
        raise ConfigError(where, "privacy.hash_secret", (
            f"this database holds hashed authors but no author key; looked in {looked}, "
            f"table author_keys (empty){legacy_note}: set privacy.hash_secret_file to the "
            "key they were made with (before 0006 it was the file data/.author_secret of "
            "the directory the service ran in)"))
    elif not create:
        return None
    elif config.privacy.hash_secret_file:
        created, looked = _configured(config, create_file=True)
        assert created is not None  # load_or_create_secret_file returns or raises
        secret = created
    else:
        secret = new_secret().encode("ascii")
        keep_in_db = True
    if create and not add_key(engine, fingerprint(secret),
                           secret.decode("utf-8") if keep_in_db else None,
                           datetime.now(UTC)):
        # another process recorded the first key at the same moment: use (and check) it
        return resolve_key(config, engine, create=False)
    return AuthorKey((secret,))


class AuthorPolicy:
    """Applies ``privacy.authors`` (keep | hash | drop) to an author handle."""

    __slots__ = ("key", "mode")

    def __init__(self, mode: str, secret: bytes | AuthorKey | None = None) -> None:
        if mode not in ("keep", "hash", "drop"):
            raise ValueError(f"privacy.authors: expected keep, hash or drop, got {mode!r}")
        if mode == "hash" and not secret:
            raise ValueError("privacy.authors is 'hash' but no secret was given")
        self.mode = mode
        self.key: AuthorKey | None = (
            secret if isinstance(secret, AuthorKey) or secret is None else AuthorKey((secret,))
        )

    @classmethod
    def for_database(cls, config: Config, engine: Engine) -> AuthorPolicy:
        """The policy of *config* writing to *engine*'s database (its key, checked)."""
        mode = config.privacy.authors
        if mode != "hash":
            return cls(mode)
        return cls(mode, resolve_key(config, engine, create=True))

    @classmethod
    def from_config(cls, config: Config, secret_dir: Path | None = None) -> AuthorPolicy:
        """The policy of *config* without a database (tests and tools).

        The key is the configured one; failing that, ``secret_dir/.author_secret``
        (created on first use). The service and imports use :meth:`for_database`.
        """
        mode = config.privacy.authors
        if mode != "hash":
            return cls(mode)
        configured, looked = _configured(config, create_file=True)
        if configured is not None:
            return cls(mode, configured)
        if secret_dir is None:
            raise ConfigError(config.database.url.split("@")[-1], "privacy.hash_secret",
                              f"hashing authors needs the database's key; looked in {looked}")
        return cls(mode, load_or_create_secret(secret_dir))

    def apply(self, platform: str, author: str | None) -> str | None:
        """The author as stored: the handle, its 64-hex-digit pseudonym, or None."""
        if author is None or self.mode == "drop":
            return None
        if self.mode == "keep" or self.key is None:
            return author
        return self.key.pseudonym(platform, author)

    def __repr__(self) -> str:  # never shows the key
        return f"AuthorPolicy(mode={self.mode!r})"
