"""The layout's rule: a module of clinfo never imports (directly or through others) a module that imports it.

Imports inside functions count too (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clinfo"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _owner(name: str, modules: dict[str, Path]) -> str:
    """The module a dotted import name lands in (``clinfo.errors.one_line`` -> ``clinfo.errors``)."""
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                out.update(_owner(a.name, modules) for a in child.names if a.name.startswith("clinfo"))
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("clinfo"):
                for alias in child.names:
                    out.add(_owner(f"{child.module}.{alias.name}", modules))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_clinfo_imports_its_own_importer():
    modules = _modules()
    assert "clinfo.pipeline.assistant" in modules and "clinfo.cli.root" in modules
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []


def test_cli_commands_are_imported_only_by_the_root():
    modules = _modules()
    commands = {"clinfo.cli.ask", "clinfo.cli.search", "clinfo.cli.index", "clinfo.cli.eval"}
    assert commands <= set(modules)
    importers = {
        name for name, path in modules.items() if name != "clinfo.cli.root" and _imports(path, modules) & commands
    }
    assert importers == set()
