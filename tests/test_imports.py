"""No import cycles inside module_system.

The layers contract (``lint-imports``, configured in pyproject.toml) orders the packages
but cannot see a cycle between two modules of one layer; this test finds any cycle among
modules. Imports made only for type checking count too: a cycle there is still two
modules that cannot be understood (or moved) one without the other.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import grimp
import pytest


def import_cycles(package: str) -> list[tuple[str, ...]]:
    """Each cycle once, as ``(a, b, ..., a)``: a module, what it imports, ..., back."""
    graph = grimp.build_graph(package, cache_dir=None)  # a stale cache hides new imports
    cycles: dict[frozenset[str], tuple[str, ...]] = {}
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.setdefault(frozenset(back), (module, *back))
    return list(cycles.values())


def test_module_system_has_no_import_cycle() -> None:
    cycles = [" -> ".join(cycle) for cycle in import_cycles("module_system")]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def write_package(root: Path, modules: dict[str, str]) -> None:
    package = root / "cyclic_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))


def test_cycles_are_found_also_through_type_checking_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_package(
        tmp_path,
        {
            "job": "from cyclic_pkg import files\n",
            "files": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from cyclic_pkg.job import Job
            """,
            "three_a": "import cyclic_pkg.three_b\n",
            "three_b": "import cyclic_pkg.three_c\n",
            "three_c": "import cyclic_pkg.three_a\n",
            "leaf": "import cyclic_pkg.job\n",  # imports a cycle without being in it
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cycles = import_cycles("cyclic_pkg")
    assert sorted(len(cycle) for cycle in cycles) == [3, 4]
    assert ("cyclic_pkg.files", "cyclic_pkg.job", "cyclic_pkg.files") in cycles
    assert not any("cyclic_pkg.leaf" in cycle for cycle in cycles)
