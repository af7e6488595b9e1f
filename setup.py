"""What pyproject.toml cannot say: the top-level ``migrations/`` ships as ``monitor.migrations``.

Everything else (metadata, dependencies, package data) is in pyproject.toml. The
package list is found, not kept by hand, so a new subpackage of ``monitor`` is
never left out of the wheel; the Alembic directory keeps its place at the top of
the source tree and is installed inside the package, where
``monitor.store.db.MIGRATIONS_DIR`` finds it with importlib.resources.
"""

from setuptools import find_namespace_packages, setup

MIGRATIONS = {"monitor.migrations": "migrations",
              "monitor.migrations.versions": "migrations/versions"}

setup(
    packages=[*find_namespace_packages(include=["monitor", "monitor.*"]), *MIGRATIONS],
    package_dir=MIGRATIONS,
)
