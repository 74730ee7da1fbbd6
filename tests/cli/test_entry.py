"""The three ways to start the CLI (``python -m clinfo``, ``python -m clinfo.cli``, the ``clinfo``
script) each run as a real process: help, and a real search on the bundled demo corpus.

Also: importing any CLI module first works (no module of the package imports its importer),
and the options ``ask`` and ``eval run`` share map to the same Settings overrides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("clinfo")  # installed by pip into the venv's bin/
ENTRY_POINTS = {
    "python -m clinfo": [sys.executable, "-m", "clinfo"],
    "python -m clinfo.cli": [sys.executable, "-m", "clinfo.cli"],
    "clinfo": [str(SCRIPT)],
}


def run(argv: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINFO_")}
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


@pytest.fixture(params=list(ENTRY_POINTS))
def entry(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "clinfo" and not SCRIPT.exists():
        pytest.skip(f"no console script at {SCRIPT} (package not installed in this interpreter's environment)")
    return ENTRY_POINTS[request.param]


def test_help_lists_every_command(entry: list[str]) -> None:
    result = run(entry, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("ask", "search", "index", "eval"):
        assert command in result.stdout
    assert "Cited answers to clinical questions from PubMed" in " ".join(result.stdout.split())


def test_search_on_the_demo_corpus(entry: list[str]) -> None:
    result = run(entry, "search", "statins", "--source", "demo", "--mode", "bm25", "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 and all(r["pmid"].isdigit() and isinstance(r["title"], str) for r in rows)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)


def test_subcommand_help_and_one_line_error(entry: list[str]) -> None:
    helped = run(entry, "eval", "run", "--help")
    assert helped.returncode == 0 and "--prefilter-k" in helped.stdout and "--no-cache" in helped.stdout
    failed = run(entry, "search", "x", "--source", "nowhere")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("error: unknown source 'nowhere'") and failed.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "module", ["clinfo.cli.eval", "clinfo.cli.index", "clinfo.cli.search", "clinfo.cli.ask", "clinfo.cli.root"]
)
def test_any_cli_module_imports_first(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_shared_options_map_to_settings_in_one_place() -> None:
    from clinfo.cli.options import PipelineOptions, settings_overrides
    from clinfo.settings import Settings

    assert PipelineOptions().overrides() == {}
    opts = PipelineOptions(
        llm="local", source="demo", search_mode="bm25", prefilter_k=3, prompt_dir=Path("p"), no_cache=True
    )
    overrides = opts.overrides()
    assert overrides == {
        "llm": "local",
        "source": "demo",
        "search_mode": "bm25",
        "prefilter_k": 3,
        "prompt_dir": Path("p"),
        "use_cache": False,
    }
    assert set(overrides) <= set(Settings.model_fields)
    assert settings_overrides(source="pubmed") == {"source": "pubmed"}


def test_ask_and_eval_run_share_the_pipeline_options() -> None:
    import typer.main

    from clinfo.cli import app

    root = typer.main.get_command(app)
    ask = root.commands["ask"]  # type: ignore[attr-defined]
    run_cmd = root.commands["eval"].commands["run"]  # type: ignore[attr-defined]

    def flags(cmd: Any) -> set[str]:
        return {o for p in cmd.params for o in p.opts}

    shared = {
        "--llm",
        "--source",
        "--search-mode",
        "--base-url",
        "--num-queries",
        "--results-per-query",
        "--prefilter-k",
        "--prompt-dir",
        "--no-cache",
    }
    assert shared <= flags(ask) and shared <= flags(run_cmd)
    assert {"--restriction-date", "--ignore", "--json", "--no-stream"} <= flags(ask)
    assert {"--out", "--limit", "--concurrency", "--retry-errors"} <= flags(run_cmd)
