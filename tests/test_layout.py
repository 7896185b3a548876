"""The house keeps its shape (DESIGN.md, "Layout"): data flows one way, the core finds
targets and reports only through the registry, and no source file grows past 600 lines.

Imports are read from the source with ``ast``, every import counted (at module level, in a
function, under ``TYPE_CHECKING``): a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "targets", "reports")
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (``from a.b import c`` names a.b.c when that is a
    module, else a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_package_edge(a: str, b: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules is not a cycle of concepts."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_the_reader_finds_imports():
    # the test must be able to fail: the graph it checks is not empty
    assert "harness.target" in GRAPH["harness.dispatch"]
    assert "harness.errors" in GRAPH["harness.plugins"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_projects_modules():
    graph = {a: {b for b in bs if not _is_package_edge(a, b)} for a, bs in GRAPH.items()}
    assert _cycles(graph) == []


@pytest.mark.parametrize("forbidden", ["targets", "reports"])
def test_the_core_imports_no_target_or_report_module(forbidden):
    offenders = {
        a: sorted(b for b in bs if b.split(".")[0] == forbidden)
        for a, bs in GRAPH.items()
        if a.split(".")[0] == "harness"
    }
    assert {a: bs for a, bs in offenders.items() if bs} == {}


def test_the_core_names_no_target_or_report_module_in_strings():
    """Not even for a lazy import_module: built-ins come through entry points."""
    hits = []
    for name, path in MODULES.items():
        if name.split(".")[0] != "harness":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.startswith(("targets.", "reports.")) and " " not in node.value:
                    hits.append(f"{name}: {node.value!r}")
    assert hits == []


def test_no_source_file_over_600_lines():
    files = (
        [p for p in MODULES.values()]
        + sorted((ROOT / "bench").glob("*.py"))
        + [ROOT / "noxfile.py"]
    )
    files += sorted((ROOT / "tests").rglob("*.py"))
    long = {
        str(p.relative_to(ROOT)): n
        for p in files
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_tests_do_not_import_each_other():
    """Shared test code lives in tests/support/ (or a fixture in conftest), never in a test
    module another one imports."""
    hits = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                last = n.split(".")[-1]
                if last.startswith("test_") or last == "conftest":
                    hits.append(f"{path.name}: {n}")
    assert hits == []
