"""Plug-ins from other packages: entry points in groups ``clinfo.llms`` and ``clinfo.sources``.

A tiny plug-in package is written here, built with the venv's setuptools (no network) and installed
into the running venv; ``clinfo ask`` then runs as a real process with the package's backend and
source. A second package, installed into a folder put on PYTHONPATH of those processes only (so no
other process sharing the venv sees its warnings), holds a plug-in that fails to import and two that
claim built-in names. The read-once and conflict rules are also checked in process with stand-in
entry points.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clinfo import plugins

REPO = Path(__file__).resolve().parents[1]
CLINFO = Path(sys.executable).with_name("clinfo")  # the venv's console script
PLUGIN = "clinfo-test-plugin"
BROKEN = "clinfo-test-plugin-broken"
QUESTION = "Does magnesium improve sleep in older adults?"

PLUGIN_MODULE = '''
"""A scripted LLM backend and a two-article source, as another package would ship them."""
import json

from clinfo.llm.base import Completion
from clinfo.models import AbstractSection, Article
from clinfo.sources.base import SearchResult, SourceStats

ARTICLES = {
    "99000001": Article(
        pmid="99000001", title="Magnesium and sleep in older adults: a randomised trial",
        abstract_sections=[AbstractSection(text="Magnesium improved sleep quality in older adults.")],
        journal="J Plug-in Test", year=2021,
    ),
    "99000002": Article(
        pmid="99000002", title="Statins in middle age",
        abstract_sections=[AbstractSection(text="Statins lowered LDL.")],
        journal="J Plug-in Test", year=2019,
    ),
}


class EchoLLM:
    def __init__(self, model):
        self.model = model or "default"
        self.spec = "echo:" + self.model

    def identity(self):
        return {"backend": "echo", "model": self.model}

    async def complete(self, request, on_token=None):
        prompt = request.messages[-1]["content"]
        if request.step == "screen":
            relevant = "Magnesium" in prompt.split("Article: ", 1)[1].split("\\n", 1)[0]
            text = json.dumps({"relevant": relevant, "score": 8 if relevant else 1, "reason": "title",
                               "summary": "Magnesium improved sleep." if relevant else "", "design": "RCT",
                               "sample_size": "120", "population": "older adults", "risk_of_bias": "low"})
        else:
            text = {
                "plan": json.dumps({"queries": ["magnesium sleep"]}),
                "broaden": json.dumps({"query": "magnesium sleep"}),
                "synthesize": "Magnesium improved sleep quality in older adults in one trial [1].",
                "tldr": "One plug-in trial says magnesium may help.",
                "classify": json.dumps({"answer": "yes"}),
            }.get(request.step, "")
        if on_token:
            on_token(text)
        return Completion(text=text, model=self.model, cost_usd=0.0)

    async def aclose(self):
        pass


def echo_llm(model, settings):
    return EchoLLM(model)


class TinySource:
    def __init__(self, argument, settings):
        self.name = "tiny"
        self.stats = SourceStats()

    async def search(self, query, *, limit=20, dates=None):
        self.stats.requests += 1
        return SearchResult(query=query, pmids=list(ARTICLES)[:limit], count=len(ARTICLES))

    async def fetch(self, pmids):
        return [ARTICLES[p] for p in pmids if p in ARTICLES]

    async def aclose(self):
        pass
'''

HIJACK_MODULE = """
def factory(*args, **kwargs):
    raise RuntimeError("hijacked a built-in name")
"""


def _pyproject(name: str, modules: list[str], llms: dict[str, str], sources: dict[str, str]) -> str:
    def table(group: str, points: dict[str, str]) -> str:
        return f'[project.entry-points."{group}"]\n' + "".join(f'{k} = "{v}"\n' for k, v in points.items())

    return (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "0.1.0"\n\n'
        f"[tool.setuptools]\npy-modules = {json.dumps(modules)}\n\n"
        + table("clinfo.llms", llms)
        + table("clinfo.sources", sources)
    )


def _write_package(root: Path, pyproject: str, modules: dict[str, str]) -> Path:
    root.mkdir()
    (root / "pyproject.toml").write_text(pyproject)
    for module, text in modules.items():
        (root / f"{module}.py").write_text(text)
    return root


def _pip(*args: str) -> None:
    # the venv's own setuptools builds the package: no build isolation, no index, no network
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the broken package; processes see it only through PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("broken")
    pyproject = _pyproject(
        BROKEN,
        ["clinfo_test_broken", "clinfo_test_hijack"],
        llms={"broken": "clinfo_test_broken:factory", "openai": "clinfo_test_hijack:factory"},
        sources={"demo": "clinfo_test_hijack:factory"},
    )
    modules = {"clinfo_test_broken": "import clinfo_test_no_such_dependency\n", "clinfo_test_hijack": HIJACK_MODULE}
    package = _write_package(tmp / "src", pyproject, modules)
    site = tmp / "site"
    _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(package))
    return site


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The good plug-in, installed into this venv for the module's tests and always uninstalled after."""
    assert CLINFO.exists(), f"no console script at {CLINFO}: install clinfo (pip install -e .) so its metadata exists"
    pyproject = _pyproject(
        PLUGIN,
        ["clinfo_test_plugin"],
        llms={"echo": "clinfo_test_plugin:echo_llm"},
        sources={"tiny": "clinfo_test_plugin:TinySource"},
    )
    package = _write_package(
        tmp_path_factory.mktemp("plugin") / "src", pyproject, {"clinfo_test_plugin": PLUGIN_MODULE}
    )
    _pip("uninstall", "-y", PLUGIN)  # a run killed before its clean-up left it behind
    try:
        _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(package))
        yield
    finally:  # also when the install or a test fails midway
        _pip("uninstall", "-y", PLUGIN)


def clinfo(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINFO_") and k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(CLINFO), *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


ASK = ["ask", QUESTION, "--llm", "echo:v1", "--source", "tiny", "--no-cache", "-q"]


# ---------------------------------------------------------------- a real package, real processes


def test_ask_answers_from_an_installed_plugins_backend_and_source(installed: None) -> None:
    result = clinfo(*ASK)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"## {QUESTION}\n\nMagnesium improved sleep quality in older adults in one trial")
    assert "PMID: 99000001" in result.stdout and "99000002" not in result.stdout  # screened out by the backend
    assert "One plug-in trial says magnesium may help." in result.stdout
    assert "skipped" not in result.stderr and "Traceback" not in result.stderr


def test_plugins_lists_each_name_with_its_package(installed: None) -> None:
    result = clinfo("plugins", "--json")
    assert result.returncode == 0 and result.stderr == ""
    found = json.loads(result.stdout)
    assert found["llms"]["echo"] == found["sources"]["tiny"] == f"{PLUGIN} 0.1.0"
    builtins = {"llms": {"openai", "vllm", "local", "vllm-offline"}, "sources": {"pubmed", "demo", "local"}}
    for group, names in builtins.items():
        assert all(found[group][name].startswith("clinfo ") for name in names), found[group]


def test_a_broken_plugin_is_one_warning_and_the_rest_still_work(installed: None, broken_site: Path) -> None:
    result = clinfo(*ASK, pythonpath=broken_site)
    assert result.returncode == 0, result.stderr
    assert "PMID: 99000001" in result.stdout
    lines = result.stderr.splitlines()
    broken = [line for line in lines if "'broken'" in line]
    assert broken == [
        f"plug-in 'broken' (clinfo.llms, from {BROKEN} 0.1.0) skipped: it failed to import "
        "(ModuleNotFoundError: No module named 'clinfo_test_no_such_dependency')"
    ]
    assert "Traceback" not in result.stderr and len(lines) == 3  # the broken one, and the two below

    unknown = clinfo("ask", QUESTION, "--llm", "broken:x", "--source", "tiny", "-q", pythonpath=broken_site)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.splitlines()[-1].startswith("error: unknown LLM backend 'broken'")


def test_a_plugin_cannot_replace_a_builtin_name(installed: None, broken_site: Path) -> None:
    listed = clinfo("plugins", "--json", pythonpath=broken_site)
    found = json.loads(listed.stdout)
    assert found["llms"]["openai"].startswith("clinfo ") and found["sources"]["demo"].startswith("clinfo ")
    for group, name in (("clinfo.llms", "openai"), ("clinfo.sources", "demo")):
        assert (
            f"plug-in '{name}' ({group}, from {BROKEN} 0.1.0) skipped: '{name}' is built into clinfo; "
            "a plug-in cannot replace it (give it another name)"
        ) in listed.stderr.splitlines()
    # the built-in demo corpus answers, not the package that claimed its name
    searched = clinfo(
        "search", "statins", "--source", "demo", "--mode", "bm25", "-k", "2", "--json", pythonpath=broken_site
    )
    assert searched.returncode == 0, searched.stderr
    assert len([json.loads(line)["pmid"] for line in searched.stdout.splitlines()]) == 2
    assert "hijacked" not in searched.stderr


def test_importing_clinfo_loads_no_plugin_until_the_first_lookup(installed: None) -> None:
    code = (
        "import sys, clinfo, clinfo.llm, clinfo.sources\n"
        "before = 'clinfo_test_plugin' in sys.modules\n"
        "names = clinfo.llm.backends()\n"
        "print(before, 'echo' in names, 'clinfo_test_plugin' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True"]


# ---------------------------------------------------------------- the rules, with stand-in entry points


@dataclass(frozen=True)
class Dist:
    name: str
    version: str = "1.0"


@dataclass(frozen=True)
class Point:
    """What clinfo reads of an importlib.metadata entry point."""

    name: str
    value: str
    dist: Dist
    obj: Any = None

    def load(self) -> Any:
        if isinstance(self.obj, BaseException):
            raise self.obj
        return self.obj


def own(name: str) -> Point:
    return Point(name, f"clinfo.x:{name}", Dist("clinfo", "0.1.0"), obj=lambda *a: name)


class Installed:
    """A stand-in for ``importlib.metadata.entry_points``: the points it gives, and how often it was read."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.reads = 0

    def __call__(self, group: str) -> list[Point]:
        self.reads += 1
        return self.points


@pytest.fixture
def installed_points(monkeypatch: pytest.MonkeyPatch) -> Installed:
    import importlib.metadata

    stub = Installed()
    monkeypatch.setattr(importlib.metadata, "entry_points", stub)
    return stub


def test_a_group_is_read_once_and_only_when_first_used(installed_points: Installed) -> None:
    installed_points.points.extend([own("openai"), Point("mine", "m:f", Dist("pkg"), obj=lambda *a: "mine")])
    group = plugins.EntryPointGroup(plugins.LLMS)
    assert installed_points.reads == 0  # built, nothing read
    assert group.names(["extra"]) == ["extra", "mine", "openai"]
    assert group.providers([]) == {"mine": "pkg 1.0", "openai": "clinfo 0.1.0"}
    assert group.plugins()["mine"].factory() == "mine"
    assert installed_points.reads == 1  # one read for all three


def test_conflicts_and_failures_are_one_warning_each(
    installed_points: Installed, caplog: pytest.LogCaptureFixture
) -> None:
    installed_points.points.extend(
        [
            Point("openai", "evil:f", Dist("evil"), obj=lambda *a: "evil"),  # listed before clinfo's own
            own("openai"),
            Point("dup", "a:f", Dist("first"), obj=lambda *a: "first"),
            Point("dup", "b:f", Dist("second"), obj=lambda *a: "second"),
            Point("a:b", "c:f", Dist("colon"), obj=lambda *a: None),
            Point("gone", "g:f", Dist("gone"), obj=ImportError("no module named 'x'\n(on two lines)")),
            Point("data", "d:VALUE", Dist("data"), obj=42),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="clinfo.plugins"):
        found = plugins.EntryPointGroup(plugins.SOURCES).plugins()
    assert {name: p.factory() for name, p in found.items()} == {"openai": "openai", "dup": "first"}
    assert found["openai"].builtin and not found["dup"].builtin
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "plug-in 'openai' (clinfo.sources, from evil 1.0) skipped: 'openai' is built into clinfo; "
        "a plug-in cannot replace it (give it another name)",
        "plug-in 'dup' (clinfo.sources, from second 1.0) skipped: 'dup' is already provided by first 1.0",
        "plug-in 'a:b' (clinfo.sources, from colon 1.0) skipped: its name cannot be a spec prefix (no ':', no spaces)",
        "plug-in 'gone' (clinfo.sources, from gone 1.0) skipped: it failed to import "
        "(ImportError: no module named 'x' (on two lines))",
        "plug-in 'data' (clinfo.sources, from data 1.0) skipped: d:VALUE is not a factory (not callable)",
    ]


def test_missing_builtins_say_how_to_reinstall(installed_points: Installed, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clinfo.plugins"):
        assert plugins.EntryPointGroup(plugins.LLMS).plugins() == {}
    assert [r.getMessage() for r in caplog.records] == [
        "clinfo's installed metadata declares no entry points in clinfo.llms, so its built-ins are missing: "
        "reinstall clinfo (pip install -e .)"
    ]


def test_spec_argument_rules_reach_the_registries() -> None:
    from clinfo.llm.builtins import local, openai
    from clinfo.sources.builtins import demo

    assert plugins.argument_rule(openai) == "required" and plugins.argument_rule(demo) == "none"
    assert plugins.argument_rule(local) == "any" and plugins.argument_rule(lambda a, s: None) == "any"
