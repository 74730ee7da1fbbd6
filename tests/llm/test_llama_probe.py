"""The one-off check that the embedded llama.cpp build runs on this CPU (clinfo.llm.llama_probe).

The real check runs the installed llama.cpp on SmolLM2 in a child process. A build that faults
(as a ``-march=native`` build does on machines that report AMX but fault on it) is played by
children that kill themselves with SIGILL, the way the real one dies.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from clinfo.errors import LLMError
from clinfo.llm.llama_cpp import default_model_path
from clinfo.llm.llama_probe import Verdict, _fingerprint, check, plain_kernels
from tests.support.cli import assert_one_line_error, clinfo

# A child that counts its runs in a file, then dies on SIGILL unless told to run without
# ggml's extra buffer types (when `spare_plain` is set).
FAULTY = """
import os, signal, sys
counter, spare_plain = sys.argv[1], sys.argv[2] == "1"
with open(counter, "a") as f:
    f.write("x")
if not (spare_plain and "--no-extra-bufts" in sys.argv):
    os.kill(os.getpid(), signal.SIGILL)
"""


def faulty(tmp_path: Path, spare_plain: bool) -> tuple[list[str], Path]:
    counter = tmp_path / "runs"
    return [sys.executable, "-c", FAULTY, str(counter), "1" if spare_plain else "0"], counter


def test_the_installed_build_passes_and_the_verdict_is_remembered(tmp_path: Path) -> None:
    model = default_model_path()
    verdict = check(model, tmp_path)  # the real child: loads SmolLM2, evaluates a long prompt
    assert verdict == Verdict(ok=True)
    (record,) = (tmp_path / "llama-probe").glob("*.json")
    assert json.loads(record.read_text())["ok"] is True
    command, counter = faulty(tmp_path, spare_plain=False)
    assert check(model, tmp_path, command=command) == verdict  # remembered: no child this time
    assert not counter.exists()


def test_a_build_that_dies_on_sigill_gives_one_line_naming_the_fix(tmp_path: Path) -> None:
    command, counter = faulty(tmp_path, spare_plain=False)
    with pytest.raises(LLMError) as err:
        check(default_model_path(), tmp_path, command=command)
    message = str(err.value)
    assert "\n" not in message
    assert "SIGILL" in message and "Illegal instruction" in message
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in message and "--no-cache-dir" in message
    assert counter.read_text() == "xx"  # the default run, then the run without extra buffer types
    with pytest.raises(LLMError):  # the verdict is remembered: the same line, no new child
        check(default_model_path(), tmp_path, command=command)
    assert counter.read_text() == "xx"


def test_a_build_that_runs_without_extra_buffer_types_is_used_that_way(tmp_path: Path) -> None:
    command, counter = faulty(tmp_path, spare_plain=True)
    verdict = check(default_model_path(), tmp_path, command=command)
    assert verdict.ok and verdict.extra_bufts is False and "SIGILL" in verdict.detail
    assert counter.read_text() == "xx"


def test_plain_kernels_switches_extra_buffer_types_off_for_the_load_only() -> None:
    import llama_cpp.llama_cpp as native
    from llama_cpp import Llama

    assert native.llama_model_default_params().use_extra_bufts is True
    with plain_kernels():
        assert native.llama_model_default_params().use_extra_bufts is False
        llama = Llama(model_path=str(default_model_path()), n_ctx=512, n_threads=1, verbose=False)
    assert native.llama_model_default_params().use_extra_bufts is True
    try:
        assert llama.model_params.use_extra_bufts is False
        out = llama.create_completion("Aspirin is", max_tokens=4, temperature=0.0)
        assert out["choices"][0]["text"]
    finally:
        llama.close()


def test_cli_says_one_line_when_the_embedded_model_cannot_run(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    record = cache / "llama-probe" / f"{_fingerprint(default_model_path())}.json"
    record.parent.mkdir(parents=True)
    record.write_text(
        json.dumps({"ok": False, "extra_bufts": True, "detail": "llama.cpp died on SIGILL (Illegal instruction)"})
    )
    result = clinfo(
        "ask",
        "--llm",
        "local",
        "--source",
        "demo",
        "Do statins prevent atrial fibrillation?",
        env={"CLINFO_CACHE_DIR": str(cache), "CLINFO_PRESET": "default"},
        timeout=300,
    )  # the model plans
    assert_one_line_error(result, "embedded model cannot run on this machine", "SIGILL", "GGML_NATIVE=OFF")
    assert os.stat(record).st_size > 0


def test_an_ordinary_load_error_is_left_to_the_loader_and_not_remembered(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a model" * 100)
    verdict = check(bad, tmp_path)  # the real child fails to load it: an error, not a crash
    assert verdict.ok and verdict.detail.startswith("check inconclusive")
    assert not list((tmp_path / "llama-probe").glob("*.json"))


# A child that counts its runs, then stays busy past the check's time limit (a loaded host), or,
# with `crash_default`, dies on SIGILL unless run without extra buffer types and is busy then.
BUSY = """
import os, signal, sys, time
counter, crash_default = sys.argv[1], sys.argv[2] == "1"
with open(counter, "a") as f:
    f.write("x")
if crash_default and "--no-extra-bufts" not in sys.argv:
    os.kill(os.getpid(), signal.SIGILL)
time.sleep(60)
"""


@pytest.mark.parametrize("crash_default", [False, True])
def test_a_check_that_times_out_is_not_a_verdict_and_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_default: bool
) -> None:
    import clinfo.llm.llama_probe as probe

    monkeypatch.setattr(probe, "_TIMEOUT_S", 1.0)
    counter = tmp_path / "runs"
    busy = [sys.executable, "-c", BUSY, str(counter), "1" if crash_default else "0"]
    verdict = check(default_model_path(), tmp_path, command=busy)  # no LLMError: the build is not condemned
    assert (
        verdict.ok and verdict.detail.startswith("check inconclusive") and "did not finish within 1 s" in verdict.detail
    )
    assert verdict.extra_bufts is not crash_default  # after a SIGILL, the plain kernels are the better guess
    assert not list((tmp_path / "llama-probe").glob("*.json"))  # nothing remembered
    healthy = [sys.executable, "-c", "pass"]  # the host is quiet again: the next check runs and decides
    assert check(default_model_path(), tmp_path, command=healthy) == Verdict(ok=True)
    assert len(list((tmp_path / "llama-probe").glob("*.json"))) == 1
