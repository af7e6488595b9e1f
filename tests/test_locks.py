"""Issue 11: two processes on one database — an OS lock on SQLite, advisory locks on
PostgreSQL — both released when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.locks import DatabaseInUse, RoleLock, exclusive_run, lock_path
from monitor.store.db import make_engine
from tests.conftest import pg_schema_url
from tests.test_cli import monitor, write_config

HOLD = """
import sys, time
from monitor.locks import exclusive_run
with exclusive_run(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_one_sqlite_database_refuses_naming_the_pid(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    holder = _holder(url)
    try:
        with pytest.raises(DatabaseInUse, match=rf"pid {holder.pid}\)"), exclusive_run(url):
            pass
        # `monitor run` itself: one line, exit 1, nothing started
        config = write_config(tmp_path, url)
        result = monitor("run", "--config", str(config), cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"error: {tmp_path}/m.db: another `monitor run` (pid {holder.pid}) is using this "
            "database; stop it first (one service per SQLite database)"]
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    holder = _holder(url)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert lock_path(tmp_path / "m.db").exists()  # left behind, and harmless
    with exclusive_run(url):
        assert (tmp_path / "m.db.lock").read_text().strip() == str(os.getpid())
    with exclusive_run(url):  # released on leaving the block too
        pass


def test_other_databases_need_no_file_lock() -> None:
    with exclusive_run("postgresql://u@127.0.0.1/db"), \
            exclusive_run("postgresql://u@127.0.0.1/db"):
        pass


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from pg_schema_url()


@pytest.mark.postgres
def test_postgresql_roles_are_held_by_one_process_and_taken_over(pg_url: str) -> None:
    first, second = make_engine(pg_url), make_engine(pg_url)
    try:
        a, b = RoleLock(first, "dispatcher"), RoleLock(second, "dispatcher")
        assert a.held() is True
        assert b.held() is False  # a second process stands by: it can never double-send
        assert a.held() is True  # still ours on the next tick
        assert RoleLock(second, "evaluator").held() is True  # roles are independent
        a.release()
        assert b.held() is True
        # the holder's connection dies (as with kill -9): the server drops the lock
        assert b._conn is not None
        b._conn.invalidate()
        b._conn = None
        deadline = time.monotonic() + 10
        while not a.held():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        first.dispose()
        second.dispose()


def test_sqlite_roles_are_always_held(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/r.db")
    assert RoleLock(engine, "dispatcher").held() and RoleLock(engine, "dispatcher").held()
    engine.dispose()
