"""Checks once per installation that the embedded llama.cpp build runs on this CPU.

llama-cpp-python compiles llama.cpp with ``-march=native`` by default. On some virtual machines
the CPU reports AMX (``amx_tile amx_int8`` in /proc/cpuinfo) but faults on it: ggml then keeps
the weights in its AMX buffer type and the first matrix multiply of a long prompt dies with
SIGILL, taking the whole process down with no message (a one-token prompt works, so a smoke test
can miss it). A dead process cannot explain itself, so the check runs in a short-lived child:

1. load the model and evaluate a long prompt as llama.cpp's defaults would;
2. if that child dies on a signal, try again with ggml's extra buffer types (AMX, weight
   repacking) switched off, which keeps the matrix multiplies on the plain CPU kernels;
3. if that fails too, :class:`clinfo.errors.LLMError` says in one line how to rebuild.

The verdict is kept in the cache directory, keyed by the llama.cpp libraries, the model file and
the CPU's flags, so the child runs once per installation (about two seconds for SmolLM2). A child
that does not finish in time gives no verdict: on a busy host that says nothing about the build,
so the check counts as inconclusive for this process and is not remembered (the next process
checks again).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clinfo.errors import LLMError

__all__ = ["Verdict", "check", "plain_kernels", "REBUILD_HINT"]

NO_EXTRA_BUFTS = "--no-extra-bufts"
REBUILD_HINT = (
    "rebuild llama-cpp-python for a portable CPU target: "
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --force-reinstall --no-cache-dir llama-cpp-python'
)
_TIMEOUT_S = 300.0
# Long enough that llama.cpp takes its batched matrix-multiply path (where AMX faulted).
_PROMPT = " ".join(["The randomised trial compared statins with placebo before cardiac surgery."] * 40)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    extra_bufts: bool = True  # False: load with ggml's extra buffer types off
    detail: str = ""


def check(model: Path, cache_dir: Path, *, command: Sequence[str] | None = None) -> Verdict:
    """The remembered verdict for this installation and model, probing in a child if there is none.

    Raises :class:`LLMError` when no way of running the model survives. ``command`` replaces
    ``python -m clinfo.llm.llama_probe`` (tests)."""
    with _LOCK:  # threads asking at once probe once
        record = Path(cache_dir) / "llama-probe" / f"{_fingerprint(model)}.json"
        verdict = _load(record)
        if verdict is None:
            verdict = _probe(model, command)
            if not verdict.detail.startswith("check inconclusive"):
                _save(record, verdict)
    if not verdict.ok:
        raise LLMError(f"the embedded model cannot run on this machine: {verdict.detail}; {REBUILD_HINT}")
    return verdict


def _probe(model: Path, command: Sequence[str] | None) -> Verdict:
    base = list(command or [sys.executable, "-m", "clinfo.llm.llama_probe"]) + [str(model)]
    first = _run(base)
    if first is None:
        return Verdict(ok=True)
    if not first.crashed:
        # an ordinary error (a file that is not a GGUF, say) is the loader's to report, in process;
        # a timeout (a busy host) is no verdict on the build: both are tried again next time
        return Verdict(ok=True, detail=f"check inconclusive: {first.detail}")
    second = _run([*base, NO_EXTRA_BUFTS])
    if second is None:
        return Verdict(
            ok=True, extra_bufts=False, detail=f"default build {first.detail}; runs with extra buffer types off"
        )
    if second.timed_out:  # the default build crashed; whether the plain kernels run is not known yet
        return Verdict(
            ok=True, extra_bufts=False, detail=f"check inconclusive: default build {first.detail}; {second.detail}"
        )
    return Verdict(ok=False, detail=f"llama.cpp {first.detail}")


@dataclass(frozen=True)
class _Failure:
    crashed: bool  # killed by a signal: the build, not the input
    detail: str
    timed_out: bool = False  # no verdict either way


def _run(argv: list[str]) -> _Failure | None:
    """None when the child evaluated the prompt; else what went wrong, in a few words."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return _Failure(False, f"the check did not finish within {_TIMEOUT_S:g} s (a busy machine?)", timed_out=True)
    except OSError as exc:
        return _Failure(False, f"could not start the check ({exc.strerror or exc})")
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode)
            return _Failure(True, f"died on {name.name} ({signal.strsignal(name) or name.name})")
        except ValueError:
            return _Failure(True, f"died on signal {-done.returncode}")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return _Failure(False, f"failed: {lines[-1].strip()[:200]}" if lines else f"exited with status {done.returncode}")


def _fingerprint(model: Path) -> str:
    parts: list[str] = []
    try:
        parts.append(importlib.metadata.version("llama-cpp-python"))
    except importlib.metadata.PackageNotFoundError:
        parts.append("?")
    for lib in _library_files():
        stat = lib.stat()
        parts.append(f"{lib.name}:{stat.st_size}:{stat.st_mtime_ns}")
    try:
        stat = model.stat()
        parts.append(f"{model.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    except OSError:
        parts.append(str(model))
    parts.append(_cpu_flags())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _library_files() -> Iterator[Path]:
    spec = importlib.util.find_spec("llama_cpp")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        yield from sorted(p for p in (Path(folder) / "lib").glob("*.so*") if p.is_file())


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "unknown-cpu"
    flags = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    return flags.split(":", 1)[-1].strip()


def _load(record: Path) -> Verdict | None:
    try:
        return Verdict(**json.loads(record.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save(record: Path, verdict: Verdict) -> None:
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(verdict)))
        os.replace(tmp, record)
    except OSError:
        pass  # not remembered: the next process probes again


# --------------------------------------------------------------------------- loading


class plain_kernels:
    """Context manager: ``Llama(...)`` built inside it loads with ggml's extra buffer types off.

    llama-cpp-python exposes ``use_extra_bufts`` in the C parameters but not as a ``Llama``
    argument; ``Llama.__init__`` takes its parameters from ``llama_model_default_params``, so
    that function is wrapped for the duration (under a lock: the patch is process-wide)."""

    _lock = threading.Lock()

    def __enter__(self) -> None:
        import llama_cpp.llama_cpp as native

        self._lock.acquire()
        self._native = native
        self._original = original = native.llama_model_default_params

        def defaults() -> Any:
            params = original()
            params.use_extra_bufts = False
            return params

        native.llama_model_default_params = defaults

    def __exit__(self, *exc: object) -> None:
        self._native.llama_model_default_params = self._original
        self._lock.release()


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clinfo.llm.llama_probe")
    parser.add_argument("model")
    parser.add_argument(NO_EXTRA_BUFTS, dest="plain", action="store_true")
    args = parser.parse_args(argv)
    from llama_cpp import Llama

    def load() -> Any:
        return Llama(model_path=args.model, n_ctx=1024, n_threads=1, verbose=False)

    if args.plain:
        with plain_kernels():
            llama = load()
    else:
        llama = load()
    tokens = llama.tokenize(_PROMPT.encode(), add_bos=True)[:900]
    llama.eval(tokens)
    llama.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child())
