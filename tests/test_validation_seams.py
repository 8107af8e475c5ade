"""The validation package's seams: no import cycle between its modules, and importing a
validator changes nothing for the rest of the process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import module_system.validation

PACKAGE = "module_system.validation"


def _imports(path: Path) -> set[str]:
    """Every module_system.validation module ``path`` imports, at any depth of its code
    (imports inside functions and ``if TYPE_CHECKING`` blocks count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith(PACKAGE + "."))
    return found


def _import_graph() -> dict[str, set[str]]:
    folder = Path(module_system.validation.__file__).parent
    modules = {f"{PACKAGE}.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    return {name: _imports(path) & set(modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            if cycle := visit(target, [*path, node]):
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        if cycle := visit(start, []):
            return cycle
    return None


def test_validation_modules_import_each_other_without_a_cycle() -> None:
    graph = _import_graph()
    assert f"{PACKAGE}.csv_fast" in graph and f"{PACKAGE}.table_check" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]


def test_importing_the_csv_fast_path_leaves_arrows_default_memory_pool() -> None:
    """Other Arrow users in a worker (pandas, a dashboard) keep their allocator."""
    probe = (
        "import pyarrow as pa\n"
        "before = pa.default_memory_pool().backend_name\n"
        "import module_system.validation.csv_fast\n"
        "print(before, pa.default_memory_pool().backend_name)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before, after = out.stdout.split()
    assert after == before
