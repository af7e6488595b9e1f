"""Several `monitor run` processes on one PostgreSQL schema: start, kill -9, restart, watch.

Used by tests/cluster/test_multiprocess.py and benchmarks/cluster.py. Every
process is a real child (``python -c "from monitor.commands import main; main()"
run``) on the same config file, its output appended to its own log file. The
cluster's view of itself (who is alive, who leads Jetstream) is read from the
``cluster_members`` table (:func:`monitor.store.cluster.read_members`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent.parent
MONITOR = [sys.executable, "-c", "from monitor.commands import main; main()"]
PG_ADMIN_URL = os.environ.get(
    "MONITOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

__all__ = ["MONITOR", "ROOT", "Member", "Members", "child_env", "leader", "members_alive",
           "monitor_cli", "monitor_in_process", "pg_schema", "wait_until", "write_config"]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a `monitor` child: compiled modules cached outside the tree.

    With ``PYTHONDONTWRITEBYTECODE`` (set on some machines) every child compiled
    all of monitor/ again: about a third of a second of CPU per start, and these
    tests start a process per kill. The cache lives in the temp folder, so the
    working tree stays clean either way.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(),
                                              f"hashtag-monitor-pyc-{os.getuid()}")
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def monitor_in_process(*args: str) -> str:
    """A read-only `monitor` command run in this process (no start-up of its own)."""
    from typer.testing import CliRunner

    from monitor.cli import app
    from monitor.commands import register_all

    register_all()
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exit_code != 0:
        raise AssertionError(f"monitor {' '.join(args)} exited {result.exit_code}: "
                             f"{result.stderr[-2000:]}")
    return result.stdout


@contextlib.contextmanager
def pg_schema(prefix: str = "c") -> Iterator[str]:
    """A fresh PostgreSQL schema as a database URL (search_path set); dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def write_config(path: Path, db_url: str, sources: list[dict[str, Any]], *,
                 lease: str = "2s", concurrency: int = 4, **extra: Any) -> Path:
    """One config file for every process of the cluster."""
    config: dict[str, Any] = {
        "database": {"url": db_url},
        "hashtags": ["metoo", "notallmen", "howiwillchange", "ididit"],
        "privacy": {"hash_secret": "cluster-test-" + "x" * 24},
        "logging": {"level": "INFO"},
        # three processes on one machine: three dashboards would want one port
        "web": {"enabled": False},
        "http": {"contact": "cluster@example.org", "timeout": "5s", "max_retries": 2,
                 "backoff_base": "0.05s", "backoff_max": "0.5s",
                 "per_host_min_interval": "0.05s", "per_host_concurrency": 1},
        "cluster": {"lease": lease, "concurrency": concurrency},
        "sources": sources,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def monitor_cli(config: Path, *args: str, timeout: float = 60) -> str:
    try:
        done = subprocess.run([*MONITOR, *args, "--config", str(config)], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout,
                              env=child_env(COLUMNS="200"))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"monitor {' '.join(args)} took more than {timeout}s; "
                             f"busy sessions:\n{busy_sessions()}") from None
    if done.returncode != 0:
        raise AssertionError(f"monitor {' '.join(args)} exited {done.returncode}: "
                             f"{done.stderr[-2000:]}")
    return done.stdout


def busy_sessions() -> str:
    """What the database's non-idle sessions wait for (to say why something hangs)."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            rows = conn.execute(text(
                "SELECT pid, state, wait_event_type, wait_event,"
                " round(extract(epoch FROM now() - xact_start)::numeric, 1) AS xact_s,"
                " left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query"
                " FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state <> 'idle' ORDER BY xact_start")).all()
    finally:
        admin.dispose()
    return "\n".join(" | ".join(str(v) for v in row) for row in rows)


@dataclass
class Member:
    """One `monitor run` child process (started again by :meth:`restart`)."""

    name: str
    config: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Member:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        with self.log_path.open("ab") as log:
            log.write(f"--- {self.name}: start #{self.starts + 1}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*MONITOR, "run", "--config", str(self.config)], cwd=ROOT, stdout=log,
                stderr=subprocess.STDOUT, env=child_env(**self.env))
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye; the cluster must notice on its own."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, within: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self.name} did not stop within {within}s of SIGTERM") from None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class Members:
    """The processes of one run, by name."""

    def __init__(self, config: Path, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self.all: list[Member] = []

    def add(self, name: str | None = None) -> Member:
        name = name or f"m{len(self.all) + 1}"
        # the User-Agent names the process, so a fake's log tells who sent what
        member = Member(name, self.config, self.folder / f"{name}.log",
                        env={"MONITOR_HTTP_CONTACT": f"{name}@example.org"})
        self.all.append(member)
        return member.start()

    def alive(self) -> list[Member]:
        return [m for m in self.all if m.alive()]

    def by_pid(self, pid: int) -> Member | None:
        for member in self.all:
            if member.alive() and member.pid == pid:
                return member
        return None

    def stop_all(self, within: float = 20.0) -> dict[str, int]:
        """SIGTERM to every live process at once (once: a second one means "exit now"),
        then their exit codes; one still running after *within* s is killed (-9)."""
        running = [m for m in self.all if m.alive()]
        for member in running:
            member.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + within
        codes: dict[str, int] = {}
        for member in self.all:
            assert member.proc is not None
            try:
                codes[member.name] = member.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                member.proc.kill()
                member.proc.wait(10)
                codes[member.name] = -9
        return codes

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(f"===== {m.name}\n{m.log()[-tail:]}" for m in self.all)


def members_alive(engine: Engine, lease: float) -> list[Any]:
    """Member rows renewed within the last lease (the live processes, per the cluster)."""
    from monitor.store.cluster import read_members

    try:
        return [m for m in read_members(engine) if m.age <= lease]
    except Exception:  # the table may not exist before the first process migrated
        return []


def leader(engine: Engine, lease: float, role: str = "stream:jetstream") -> Any | None:
    """The live member row whose roles include *role* (None when nobody holds it)."""
    found = [m for m in members_alive(engine, lease) if role in m.roles]
    return found[0] if len(found) == 1 else (found if found else None)


def wait_until(check: Callable[[], Any], what: str, timeout: float,
               members: Members | None = None, step: float = 0.1) -> Any:
    """Poll *check* until it returns something truthy; fail naming *what* (with logs)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            logs = members.logs() if members is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(step)
