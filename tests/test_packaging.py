"""The package as a new user gets it, and its optional extras.

The wheel test builds a wheel of this checkout, installs it into a fresh venv and
runs ``init-db``, ``import`` and ``trends`` from a directory outside the source
tree. It stays offline and takes about 15-25 s: the wheel is built with the
development venv's setuptools (``--no-build-isolation``), installed with
``--no-deps --no-index``, and the new venv reaches the already-installed
dependencies through a ``.pth`` line naming the development venv's site-packages
(a plain path line: the editable install's own ``.pth`` there is not run, so
``monitor`` can only come from the wheel, which the test checks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from monitor.cli import app
from monitor.commands import register_all
from monitor.notify import chart
from monitor.notify.base import Event, Notification, notification_key
from monitor.notify.email import EmailNotifier
from tests.notify.conftest import NOW, SmtpServer, make_config, payload, store_posts

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample_metoo.jsonl"
# top-level entries of the checkout that are not sources of the wheel
NOT_SOURCES = {".venv", ".git", "data", "build", "dist", ".mypy_cache", ".ruff_cache",
               ".pytest_cache", ".hypothesis"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
    if Path(directory) == ROOT:
        skip |= NOT_SOURCES & set(names)
    return skip


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (the build leaves nothing in the tree)."""
    work = tmp_path_factory.mktemp("build")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--no-index", "--quiet", "--wheel-dir", work / "dist", src, cwd=work)
    assert built.returncode == 0, (
        "building the wheel needs setuptools>=77 in the dev venv (`make install`):\n"
        + built.stdout + built.stderr)
    [found] = (work / "dist").glob("hashtag_monitor-*.whl")
    return found


def test_the_wheel_holds_every_package_and_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in (ROOT / "monitor").rglob("*.py"):
        if "__pycache__" not in init.parts:
            assert init.relative_to(ROOT).as_posix() in names
    for script in (ROOT / "migrations").rglob("*.py"):
        if "__pycache__" not in script.parts:
            assert f"monitor/{script.relative_to(ROOT).as_posix()}" in names
    assert {"monitor/migrations/script.py.mako", "monitor/py.typed",
            "monitor/notify/templates/alert.html"} <= names


def test_wheel_in_a_fresh_venv_runs_init_db_import_and_trends(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    made = _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
                     "--no-index", "--quiet", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                     cwd=tmp_path).stdout.strip())
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_dev_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")

    home = tmp_path / "elsewhere"
    home.mkdir()
    assert not home.resolve().is_relative_to(ROOT)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MONITOR_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(COLUMNS="200", NO_COLOR="1")
    where = _run(python, "-c", "import monitor; print(monitor.__file__)", cwd=home, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr

    shutil.copy(SAMPLE, home / SAMPLE.name)
    (home / "config.yaml").write_text(
        f"database:\n  url: 'sqlite:///{home}/monitor.db'\nprivacy:\n  hash_secret: s\n")
    monitor = venv / "bin" / "monitor"
    init = _run(monitor, "init-db", cwd=home, env=env)
    assert init.returncode == 0, init.stderr
    assert init.stdout.strip() == "database is at the latest schema"
    imported = _run(monitor, "import", SAMPLE.name, "--platform", "twitter", cwd=home, env=env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == f"{SAMPLE.name}: 240 stored, 0 duplicates, 2 rejected"\
        .split()
    trends = _run(monitor, "trends", "metoo", "--since", "3650d", "--step", "1d", cwd=home,
                  env=env)
    assert trends.returncode == 0, trends.stderr
    assert "│ metoo │ 171 │" in " ".join(trends.stdout.split())


# ------------------------------------------------------------------ the extras


def test_parquet_export_without_pyarrow_is_one_line_naming_the_extra(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: '{engine.url.render_as_string(hide_password=False)}'\n")
    out = tmp_path / "metoo.parquet"
    # None in sys.modules makes `import pyarrow` raise ImportError, as if not installed
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    register_all()
    result = CliRunner().invoke(app, ["export", "posts", "--tag", "metoo", "--format",
                                      "parquet", "--out", str(out), "-c", str(config)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: Parquet export needs pyarrow: pip install 'hashtag-monitor[parquet]'"]
    assert list(tmp_path.glob("metoo.parquet*")) == []


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # None in sys.modules makes `import matplotlib` raise ImportError; the cached
    # "is it installed" answer is forgotten before and after
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    chart.charts_available.cache_clear()
    yield
    chart.charts_available.cache_clear()


@pytest.mark.usefixtures("no_matplotlib")
async def test_alert_email_without_matplotlib_goes_out_with_the_sparkline(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    server = SmtpServer()
    server.start()
    try:
        store_posts(engine)
        config = make_config(server.port)
        recipient = config.notify.email.recipients[0]
        notifier = EmailNotifier(config, recipient, engine=engine, clock=lambda: NOW)
        event = Event(1, "metoo-spike-1", "firing", payload(), NOW)
        await notifier.send(Notification(key=notification_key(notifier.name, ["metoo-spike-1"]),
                                         notifier=notifier.name, events=(event,)))
    finally:
        server.stop()
    [msg] = server.messages
    assert msg["Subject"].startswith("[FIRING] #metoo")
    assert [p for p in msg.walk() if p.get_content_type() == "image/png"] == []
    text = msg.get_body(preferencelist=("plain",))
    assert text is not None
    assert any(line.strip() and set(line.strip()) <= set(chart.SPARK_CHARS)
               for line in text.get_content().splitlines())
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and "cid:" not in html.get_content()
    notes = [r.getMessage() for r in caplog.records if "matplotlib" in r.getMessage()]
    assert notes == ["the email chart needs matplotlib: pip install 'hashtag-monitor[charts]'; "
                     "alert emails go out without the chart"]


def test_every_module_imports_without_the_extras(tmp_path: Path) -> None:
    """No module imports matplotlib or pyarrow at the top: the base install works."""
    code = (
        "import sys, importlib, pkgutil, monitor\n"
        "sys.modules.update(matplotlib=None, pyarrow=None)\n"
        "for m in pkgutil.walk_packages(monitor.__path__, 'monitor.'):\n"
        "    # __main__ runs the CLI; the migrations are run by Alembic, not imported\n"
        "    if m.name != 'monitor.__main__' and not m.name.startswith('monitor.migrations'):\n"
        "        importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    result = _run(sys.executable, "-c", code, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
