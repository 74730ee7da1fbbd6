"""The layout's rules.

* Layers: every module of clinfo belongs to one layer of :data:`LAYERS` and imports only from its
  own layer or the ones below it (README, "Package map"; docs/architecture.md).
* No module imports (directly or through others) a module that imports it.
* No private name (``_x``) crosses a module boundary: another module's ``_x`` is neither imported
  nor read as an attribute.

Imports inside functions count too (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clinfo"


# Lowest first. A module is placed by the longest prefix listed (``clinfo.pubmed.xml`` by ``clinfo.pubmed``).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",
        (
            "clinfo.errors",
            "clinfo.dates",
            "clinfo.lazy",
            "clinfo.jsonout",
            "clinfo.terms",
            "clinfo.prompts",
            "clinfo.urls",
            "clinfo.rank_fusion",
            "clinfo.plugins",
        ),
    ),
    ("pubmed", ("clinfo.pubmed",)),
    ("records", ("clinfo.appraisal", "clinfo.models", "clinfo.render")),
    ("config", ("clinfo.settings", "clinfo.store", "clinfo.cache", "clinfo.redact")),
    ("corpus", ("clinfo.corpus",)),
    ("sources", ("clinfo.sources",)),
    ("llm", ("clinfo.llm",)),
    ("pipeline", ("clinfo.pipeline", "clinfo.claims")),
    ("front", ("clinfo", "clinfo.__main__", "clinfo.langchain", "clinfo.eval", "clinfo.app", "clinfo.cli")),
)


def _layer(module: str) -> int:
    """The index in LAYERS of the longest prefix naming ``module``; -1 when none does."""
    best, found = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    return found


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


def test_every_module_has_a_layer():
    assert [m for m in _modules() if _layer(m) < 0] == []
    assert _layer("clinfo.pubmed.xml") == 1 and _layer("clinfo.cli.root") == len(LAYERS) - 1
    assert _layer("clinfo") == len(LAYERS) - 1 and _layer("clinfo.claims") == _layer("clinfo.pipeline.run")


def test_no_module_imports_from_a_higher_layer():
    modules = _modules()
    upward = sorted(
        f"{name} ({LAYERS[_layer(name)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for name, path in modules.items()
        for target in _imports(path, modules)
        if _layer(target) > _layer(name)
    )
    assert upward == []


def _private_uses(path: Path, own: str, modules: dict[str, Path]) -> list[str]:
    """Private names of other clinfo modules that ``path`` imports or reads as attributes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the clinfo module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("clinfo"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in modules:
                    aliases[alias.asname or alias.name] = full
                elif alias.name.startswith("_") and not alias.name.startswith("__") and node.module != own:
                    found.append(f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("clinfo") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != own
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_private_names_stay_in_their_module():
    modules = _modules()
    crossing = {name: uses for name, path in modules.items() if (uses := _private_uses(path, name, modules))}
    assert crossing == {}


def test_the_private_name_check_sees_imports_and_attributes(tmp_path):
    modules = {"clinfo.a": tmp_path / "a.py", "clinfo.b": tmp_path / "b.py"}
    modules["clinfo.b"].write_text("from clinfo.a import _hidden, shown\nfrom clinfo import a\nx = a._other\n")
    assert _private_uses(modules["clinfo.b"], "clinfo.b", modules) == [
        "from clinfo.a import _hidden",
        "clinfo.a._other",
    ]


def test_benchmarks_and_scripts_use_only_public_names():
    """They are clinfo's first users: what they need must be public. (Tests may still reach a
    private name to inject a fault or pin a helper; that is what a test is for.)"""
    modules = _modules()
    root = PACKAGE.parent
    clients = [root / "app.py", *sorted((root / "benchmarks").glob("*.py")), *sorted((root / "scripts").glob("*.py"))]
    crossing = {p.name: uses for p in clients if (uses := _private_uses(p, "", modules))}
    assert crossing == {}


def test_tests_are_laid_out_by_package():
    tests = PACKAGE.parent / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} - {"support"}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert folders and folders <= packages
    # a package's tests live in its folder, not beside it
    stray = [p.name for p in tests.glob("test_*.py") if any(p.stem.startswith(f"test_{name}") for name in packages)]
    assert stray == []
