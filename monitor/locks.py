"""One service per database, until several processes can share the work.

Two ``monitor run`` processes on one database would both evaluate the rules
and both deliver the outbox: every alert mailed twice. Two guards, each one a
lock the operating system or the database releases when its holder dies, so a
``kill -9`` never leaves a stale lock behind:

* **SQLite** — :func:`exclusive_run` takes an ``flock`` on ``<database>.lock``
  beside the database file for the life of ``monitor run``; a second one
  refuses to start with one line naming the holder's pid.
* **PostgreSQL** — the roles that must run once (rule evaluation, outbox
  delivery) are each taken with a session-level advisory lock
  (:class:`RoleLock`); a process without the lock skips that work and tries
  again next tick, so it takes over within a tick when the holder dies (its
  connection closes, the server drops the lock).

The lock's connection is a dedicated one (never from the pool) with TCP
keepalives on both ends: a holder whose machine vanishes without closing the
socket is noticed by the server within about :data:`KEEPALIVE` seconds and its
lock dropped, and the holder itself notices on its next :meth:`RoleLock.held`.
Several processes sharing one PostgreSQL (issue 14) use the same roles, plus
``stream:<source>`` for the leader of a streaming source (``monitor.cluster``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from monitor.errors import StoreError
from monitor.store.advisory import advisory_unlock, database_identity, ping, try_advisory_lock
from monitor.store.db import redact_url, sqlite_path

__all__ = ["KEEPALIVE", "DatabaseInUse", "RoleLock", "exclusive_run", "lease_engine",
           "lock_path"]

log = logging.getLogger("monitor.locks")

# seconds of silence after which either end of a lock's connection gives it up
# (idle time before the first probe; then probes a second apart, three of them)
KEEPALIVE = 5
_lease_engines: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_lease_engines_lock = threading.Lock()


def lease_engine(engine: Engine) -> Engine:
    """An engine for lock connections: no pool, TCP keepalives client- and server-side.

    Client side (libpq ``keepalives*``, ``tcp_user_timeout``): the holder notices a
    dead network. Server side (``tcp_keepalives_*`` set for the session): the
    server notices a dead holder and drops its advisory locks, so another process
    takes the role over. One per *engine*, made on first use.
    """
    with _lease_engines_lock:
        found = _lease_engines.get(engine)
        if found is not None:
            return found
        url = engine.url
        options = url.query.get("options", "")
        if isinstance(options, tuple):
            options = " ".join(options)
        server = (f"-c tcp_keepalives_idle={KEEPALIVE} -c tcp_keepalives_interval=1 "
                  "-c tcp_keepalives_count=3")
        made = create_engine(url.set(query={**url.query, "options": f"{options} {server}"
                                            .strip()}),
                             poolclass=NullPool,
                             connect_args={"keepalives": 1, "keepalives_idle": KEEPALIVE,
                                           "keepalives_interval": 1, "keepalives_count": 3,
                                           "tcp_user_timeout": (KEEPALIVE + 3) * 1000})
        _lease_engines[engine] = made
        return made


class DatabaseInUse(StoreError):
    """Another live process runs the service on this database."""


def lock_path(database: Path) -> Path:
    """The lock file beside a SQLite database file."""
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def exclusive_run(url: str) -> Iterator[None]:
    """Hold the SQLite database's run lock for the block; no-op for other databases.

    Raises :class:`DatabaseInUse` naming the holder's pid when another process
    holds it. The lock file stays (removing it would race a starting process);
    only the ``flock`` matters, and the kernel drops it when the holder exits.
    """
    database = sqlite_path(url)
    if database is None:
        yield
        return
    path = lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreError(f"{path}: cannot lock: {exc.strerror or exc}") from None
            holder = _read_pid(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DatabaseInUse(
                f"{database}: another `monitor run` ({who}) is using this database; stop it "
                "first (one service per SQLite database)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


def _advisory_key(role: str, where: str) -> int:
    """A stable signed 64-bit key per role and database (advisory locks take a bigint).

    *where* is the database and schema: advisory locks are per server database,
    and two monitors in two schemas of one database are two independent services.
    """
    digest = hashlib.sha256(f"hashtag-monitor:{role}:{where}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RoleLock:
    """A role only one process may play at a time (PostgreSQL advisory lock).

    :meth:`held` is cheap to call every tick: it keeps one connection open while
    the lock is held, checks that connection still answers, and tries to take
    the lock when it does not hold it. On SQLite it is always held: the run lock
    (:func:`exclusive_run`) already makes the process the only one.
    """

    _all: ClassVar[weakref.WeakSet[RoleLock]] = weakref.WeakSet()

    def __init__(self, engine: Engine, role: str) -> None:
        self.engine = engine
        self.role = role
        self.key: int | None = None  # known once connected (it names the schema)
        self._conn: Connection | None = None
        self._thread_lock = threading.Lock()
        self._said_waiting = False
        self.enabled = engine.dialect.name == "postgresql"
        RoleLock._all.add(self)

    @property
    def holding(self) -> bool:
        """Held at the last look (no database round trip; for status rows)."""
        return self.enabled and self._conn is not None

    @classmethod
    def held_roles(cls, engine: Engine) -> list[str]:
        """The roles this process holds on *engine*'s database now, sorted."""
        return sorted({lock.role for lock in list(cls._all)
                       if lock.engine is engine and lock.holding})

    def held(self) -> bool:
        """True when this process plays the role now (taking it if it is free)."""
        if not self.enabled:
            return True
        with self._thread_lock:
            if self._conn is not None:
                try:
                    ping(self._conn)
                    return True
                except SQLAlchemyError:
                    log.warning("%s: lost the database connection holding the role; "
                                "taking it again when the database answers", self.role)
                    self._drop()
            return self._try_take()

    def _try_take(self) -> bool:
        try:
            conn = lease_engine(self.engine).connect()
        except SQLAlchemyError:
            return False
        try:
            if self.key is None:
                self.key = _advisory_key(self.role, database_identity(conn))
            got = try_advisory_lock(conn, self.key)
        except SQLAlchemyError:
            conn.close()
            return False
        if not got:
            conn.close()
            if not self._said_waiting:
                self._said_waiting = True
                log.info("%s: another process holds this role on %s; standing by", self.role,
                         redact_url(self.engine.url.render_as_string(hide_password=False)))
            return False
        self._conn = conn
        if self._said_waiting:
            log.info("%s: took over the role", self.role)
        self._said_waiting = False
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()  # never returned to the pool with the lock on it
            with contextlib.suppress(Exception):
                conn.close()

    def release(self) -> None:
        """Give the role up (closing the connection ends the advisory lock)."""
        with self._thread_lock:
            if self._conn is not None and self.key is not None:
                with contextlib.suppress(SQLAlchemyError):
                    advisory_unlock(self._conn, self.key)
            self._drop()
