"""Architecture rules checked on the source: no import cycle between vitdeca's modules.

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a function-level import
only hides a cycle until that function runs. Imports of an enclosing package (``from vitdeca import
__version__`` inside ``vitdeca.model``) are not counted: Python has initialised the enclosing packages
before any module inside them runs, just as it does for the implicit import of a submodule's parents.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vitdeca

PACKAGE_ROOT = Path(vitdeca.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imports_in(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that the module ``name`` (source text) imports anywhere in its body:
    ``from P import x`` counts as importing ``P.x`` when that is a module, else ``P``."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: ``from . import x``, ``from ..y import z``
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name and not name.startswith(f"{m}.")}


def import_graph() -> dict[str, set[str]]:
    """Module → the vitdeca modules it imports."""
    paths = modules()
    known = set(paths)
    return {
        name: imports_in(path.read_text(encoding="utf-8"), name, path.name == "__init__.py", known)
        for name, path in paths.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_find_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_imports_in_sees_function_level_relative_and_type_checking_imports():
    known = {"vitdeca", "vitdeca.media", "vitdeca.pipeline", "vitdeca.pipeline.outdir", "vitdeca.faces"}
    source = (
        "from typing import TYPE_CHECKING\nimport numpy\nfrom vitdeca import __version__\n"
        "if TYPE_CHECKING:\n    from vitdeca.faces import Crop\n"
        "def f():\n    from vitdeca.media import Video\n    from . import outdir\n"
    )
    found = imports_in(source, "vitdeca.pipeline.batch", False, known)
    assert found == {"vitdeca.faces", "vitdeca.media", "vitdeca.pipeline.outdir"}  # not the enclosing vitdeca
    assert imports_in("from vitdeca import media\n", "vitdeca.faces", True, known) == {"vitdeca.media"}


def test_no_import_cycle_inside_vitdeca():
    graph = import_graph()
    assert len(graph) > 100 and graph["vitdeca.pipeline.batch"]  # the source was found and parsed
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)
