"""Engines and migrations for SQLite and PostgreSQL alike.

Only the commands that set a database up (``init-db``, ``import``, ``run``) call
:func:`migrate`; everything else calls :func:`check_schema`, which never
changes the schema and says to run ``monitor init-db`` when it is behind.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from monitor.errors import StoreError

__all__ = ["MIGRATIONS_DIR", "SchemaMismatch", "check_schema", "make_engine", "migrate",
           "redact_url", "sqlite_path", "url_problem"]

# The top-level migrations/ directory is installed as the package monitor.migrations
# (see setup.py), so it is found the same way in a checkout, an editable install and
# a wheel installed anywhere. Alembic reads scripts from a real directory, which
# every installer but a zipped one gives.
MIGRATIONS_DIR = Path(str(resources.files("monitor.migrations")))


class SchemaMismatch(StoreError):
    """The database is not at this monitor's schema, and a read must not migrate it."""


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<invalid database URL>"


def url_problem(url: str) -> str | None:
    """What is wrong with a database URL, in one line without its password (None if fine).

    Used by the config (so ``check-config`` catches it) and by :func:`make_engine`:
    SQLAlchemy raises a bare ``ValueError`` for a port like ``notaport``.
    """
    where = url.split("@")[-1]
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"expected a SQLAlchemy URL, got {where!r}"
    except ValueError:
        return f"expected a port number (1-65535) after the host, got {where!r}"
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return f"expected a port number (1-65535), got {parsed.port}"
    return None


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases, memory and ``file:`` URIs)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def _create_private(path: Path) -> None:
    """Create the database file 0600 (posts, and authors unless hashed, are in it),
    and its directory: on the first connection, so that a read command on a
    missing database (which never connects) leaves no empty ``data/`` behind.

    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, so
    they follow. An existing file keeps its mode: its owner may have chosen it.
    """
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard and CLI read while the service writes
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # 32 MiB of page cache instead of 2: a batch upserts rows spread over the bucket
    # and pair rollups and their indexes, and re-reading those pages from the OS
    # every batch cost ~3 µs/post in write_batch. Memory only, no durability change.
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL and its directory created; psycopg 3 for PostgreSQL."""
    problem = url_problem(url)
    if problem:
        raise StoreError(f"database.url: {problem}")
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        engine = create_engine(parsed, echo=echo)
        if path is not None:
            # before SQLite opens (and would create, 0644 under the usual umask) the file;
            # not here, so that a read command on a missing database creates nothing
            event.listen(engine, "do_connect", lambda *_args: _create_private(path))
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, echo=echo, pool_pre_ping=True)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _first_line(exc: OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)


def migrate(engine: Engine, revision: str = "heads") -> None:
    """Run Alembic migrations up to *revision* (all branches by default)."""
    cfg = _alembic_config()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # several `monitor run` starting at once on one database (issue 14): one
                # migrates, the others wait here, then find nothing left to do
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext("
                                        "'hashtag-monitor:migrate:' || current_schema()))"))
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    except OperationalError as exc:
        raise StoreError(
            f"cannot migrate {redact_url(engine.url.render_as_string())}: {_first_line(exc)}"
        ) from None


def _missing_sqlite_file(engine: Engine) -> bool:
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return False
    return not Path(database).expanduser().exists()


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaMismatch` unless the database is at this monitor's latest revision.

    Reads the revision only: no table is created, and a missing SQLite file is
    not created either.
    """
    where = redact_url(engine.url.render_as_string())
    script = ScriptDirectory.from_config(_alembic_config())
    needed = set(script.get_heads())
    if _missing_sqlite_file(engine):
        current: set[str] = set()
    else:
        try:
            with engine.connect() as conn:
                current = set(MigrationContext.configure(conn).get_current_heads())
        except OperationalError as exc:
            raise StoreError(f"cannot open {where}: {_first_line(exc)}") from None
    if current == needed:
        return
    needs = ", ".join(sorted(needed))
    if not current:
        raise SchemaMismatch(f"the database at {where} has no schema yet, this monitor needs "
                           f"{needs}: run 'monitor init-db'")
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        raise SchemaMismatch(f"the database at {where} is at revision {', '.join(unknown)}, which "
                           "this monitor does not know: it was migrated by a newer "
                           "hashtag-monitor, upgrade this one")
    raise SchemaMismatch(f"the database at {where} is at revision {', '.join(sorted(current))}, "
                       f"this monitor needs {needs}: run 'monitor init-db'")
