"""The package's shape, checked: the rules a newcomer relies on to find the one
module that does a job.

- The import graph of ``monitor`` has no cycle, lazy (in-function) imports
  included: a cycle hidden behind a lazy import is still two modules that
  cannot be understood apart.
- Only ``monitor.store`` speaks SQL: no other module imports SQLAlchemy's
  query builders or the schema tables.
- No module is over 450 lines unless its docstring says why ("long because …").
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "monitor"
MAX_LINES = 450
# the SQL vocabulary that only the store may use
SQL_NAMES = {"select", "text", "insert", "update", "delete", "func", "and_", "or_", "case",
             "cast", "exists", "literal_column", "distinct", "null", "union_all", "bindparam"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, ast.ImportFrom | ast.Import]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, node
            # `from monitor.store import queries` imports the submodule
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    yield f"{target}.{alias.name}", node
    # a module imported by name (importlib.import_module, entry points) depends on
    # it all the same: string constants naming one of our modules count as imports
    if "import_module" in path.read_text(encoding="utf-8"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in MODULES:
                yield node.value, ast.Import(names=[], lineno=node.lineno)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _ in _imports(name, path):
            if target in MODULES and target != name:
                graph[name].add(target)
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    # package __init__ modules are containers: importing a.b.c runs a/__init__
    # too, but that is not a dependency of one job on another
    graph = {name: {t for t in targets if MODULES[t].name != "__init__.py"}
             for name, targets in _graph().items()}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith("monitor.store")))
def test_only_the_store_speaks_sql(name: str) -> None:
    offending = []
    for target, node in _imports(name, MODULES[name]):
        if target.startswith("monitor.store.schema") or target == "monitor.store.schema":
            names = {a.name for a in node.names} if isinstance(node, ast.ImportFrom) else set()
            # BUCKET_SECONDS is a constant of the data model, not a table
            if names - {"BUCKET_SECONDS"}:
                offending.append(f"line {node.lineno}: schema tables {sorted(names)}")
        elif target.split(".")[0] == "sqlalchemy" and isinstance(node, ast.ImportFrom):
            sql = {a.name for a in node.names} & SQL_NAMES
            if sql:
                offending.append(f"line {node.lineno}: sqlalchemy {sorted(sql)}")
    assert not offending, f"{name} builds SQL outside the store: {offending}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small_or_say_why(name: str) -> None:
    path = MODULES[name]
    source = path.read_text(encoding="utf-8")
    lines = source.count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(source)) or ""
    assert "long because" in doc.lower(), (
        f"{path.relative_to(PACKAGE.parent)} has {lines} lines (> {MAX_LINES}) and its "
        "docstring does not say why (\"long because …\")"
    )
