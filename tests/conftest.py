"""Shared fixtures: real databases (SQLite file and a PostgreSQL schema per test),
real service checks. With CI set, a missing service fails the test; it never skips."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from monitor.store.db import make_engine, migrate

PG_ADMIN_URL = os.environ.get(
    "MONITOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883

# Many tests start `monitor` as a child process. Where PYTHONDONTWRITEBYTECODE is set
# (it is on some machines), each child would compile every module it imports again;
# a bytecode cache outside the working tree makes the second start onwards cheaper.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("PYTHONPYCACHEPREFIX",
                      os.path.join(tempfile.gettempdir(), f"hashtag-monitor-pyc-{os.getuid()}"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Fail under CI, skip on a developer machine, when a real service is missing."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: services must run; see .ci/run)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MONITOR_* or proxy settings leak from the developer's shell into tests."""
    for name in list(os.environ):
        if name.startswith("MONITOR_") and name != "MONITOR_TEST_PG_URL":
            monkeypatch.delenv(name)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A command run in-process (CliRunner) configures the root logger as `monitor` does;
    put it back so one test's handlers and level never leak into the next."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def pg_schema_url() -> Iterator[str]:
    """A fresh PostgreSQL schema as a URL (search_path set); dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# Everything a test could change about a schema's shape: relations, columns, functions,
# triggers and constraints. A reused schema must match it exactly.
_PG_SHAPE = [text(query) for query in (
    "SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname)"
    " FROM pg_class c WHERE c.relnamespace = to_regnamespace(:s)",
    "SELECT string_agg(c.relname || '.' || a.attname || ':' || a.atttypid::text, ','"
    " ORDER BY c.relname, a.attnum) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " WHERE c.relnamespace = to_regnamespace(:s) AND a.attnum > 0 AND NOT a.attisdropped",
    "SELECT string_agg(p.proname || ':' || md5(p.prosrc), ',' ORDER BY p.proname, p.prosrc)"
    " FROM pg_proc p WHERE p.pronamespace = to_regnamespace(:s)",
    "SELECT string_agg(t.tgname || ':' || t.tgenabled::text, ',' ORDER BY t.tgname)"
    " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
    " WHERE c.relnamespace = to_regnamespace(:s)",
    "SELECT string_agg(k.conname, ',' ORDER BY k.conname) FROM pg_constraint k"
    " WHERE k.connamespace = to_regnamespace(:s)",
    "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version",
)]


class _MigratedPgSchema:
    """One migrated PostgreSQL schema reused by every test that asks for `engine`.

    Migrating a schema through every revision takes about a second; emptying the
    tables takes milliseconds. After each test the tables are emptied (identities
    restarted); a test that changed the schema's shape (a downgrade, an extra
    partition, an altered column) gets it dropped, and the next test a fresh one.
    """

    def __init__(self) -> None:
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.schema: str | None = None
        self.shape: list[object] = []
        self.partitions: set[str] = set()

    def url(self, schema: str) -> str:
        # the application name marks this schema's connections, so that release() can
        # end the ones a test left open (and the advisory locks they would still hold)
        return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}&application_name={schema}"

    def acquire(self) -> str:
        if self.schema is None:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            eng = make_engine(self.url(schema))
            try:
                migrate(eng)
            finally:
                eng.dispose()
            self.schema = schema
            self.shape = self._read_shape(schema)
            self.partitions = self._partitions(schema)
        return self.url(self.schema)

    def _read_shape(self, schema: str) -> list[object]:
        with self.admin.connect() as conn:
            conn.execute(text(f'SET search_path = "{schema}"'))
            return [conn.execute(query, {"s": schema}).scalar() for query in _PG_SHAPE]

    def _partitions(self, schema: str) -> set[str]:
        with self.admin.connect() as conn:
            return set(conn.execute(text(
                "SELECT c.relname FROM pg_class c WHERE c.relnamespace = to_regnamespace(:s)"
                " AND c.relispartition AND c.relkind = 'r'"), {"s": schema}).scalars())

    def _drop_new_partitions(self, schema: str) -> None:
        """Months a test's posts created (a fixed 2026-03 date, say) go, so that the next
        test sees the partitions a fresh migration makes and nothing more."""
        extra = sorted(self._partitions(schema) - self.partitions)
        if extra:
            with self.admin.connect() as conn:
                conn.execute(text("SET lock_timeout = '10s'"))
                conn.execute(text("DROP TABLE " + ", ".join(f'"{schema}"."{name}"'
                                                            for name in extra)))

    def release(self) -> None:
        """Empty the schema for the next test, or drop it if the test changed its shape."""
        schema = self.schema
        if schema is None:
            return
        with self.admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE application_name = :s AND pid <> pg_backend_pid()"),
                         {"s": schema})
        try:
            self._drop_new_partitions(schema)
            same = self._read_shape(schema) == self.shape
        except Exception:  # a broken schema is simply not reused
            same = False
        with self.admin.connect() as conn:
            # a connection a test left open must not hang the suite: give up on the schema
            conn.execute(text("SET lock_timeout = '10s'"))
            if same:
                try:
                    # DELETE, not TRUNCATE: on a few rows it is ten times faster, as
                    # TRUNCATE makes new files for every table and partition
                    conn.execute(text(self._empty_sql(conn, schema)))
                    return
                except Exception:  # locked by a leftover connection
                    conn.execute(text("ROLLBACK"))
            self.schema = None
            # if it fails the schema is left behind; the next test gets a new one
            with contextlib.suppress(Exception):
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

    def _empty_sql(self, conn: Connection, schema: str) -> str:
        tables = conn.execute(text(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = to_regnamespace(:s)"
            " AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            " AND c.relname <> 'alembic_version'"), {"s": schema}).scalars().all()
        sequences = conn.execute(text(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = to_regnamespace(:s)"
            " AND c.relkind = 'S'"), {"s": schema}).scalars().all()
        # replica role: no foreign-key or trigger work while emptying (superuser here)
        return "; ".join(
            ["BEGIN", "SET LOCAL session_replication_role = replica"]
            + [f'DELETE FROM "{schema}"."{name}"' for name in tables]
            + [f"SELECT setval('\"{schema}\".\"{name}\"', 1, false)" for name in sequences]
            + ["COMMIT"])

    def close(self) -> None:
        if self.schema is not None:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            self.schema = None
        self.admin.dispose()


@pytest.fixture(scope="session")
def _pg_migrated() -> Iterator[_MigratedPgSchema]:
    pool = _MigratedPgSchema()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; a test that asks for `engine` starts from a copy of it."""
    path = tmp_path_factory.mktemp("template") / "monitor.db"
    eng = make_engine(f"sqlite:///{path}")
    migrate(eng)
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL, once on SQLite and once on PostgreSQL.

    Empty, unless the test also asks for `engine`: then it is already migrated (from
    a template file on SQLite, a reused schema on PostgreSQL) and is the engine's.
    """
    migrated = "engine" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "monitor.db"
        if migrated:
            template: Path = request.getfixturevalue("_sqlite_template")
            shutil.copyfile(template, path)
            path.chmod(0o600)
        yield f"sqlite:///{path}"
    elif migrated:
        require_service("PostgreSQL", "127.0.0.1", 5432)
        pool: _MigratedPgSchema = request.getfixturevalue("_pg_migrated")
        yield pool.acquire()
        pool.release()
    else:
        yield from pg_schema_url()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database, on SQLite and on PostgreSQL (see `db_url`)."""
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def mqtt_broker() -> tuple[str, int]:
    """The Mosquitto on loopback (fails under CI when it is not running)."""
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    return MQTT_HOST, MQTT_PORT
