"""In-process vLLM (``vllm-offline:<model>``) for batch work on an NVIDIA GPU; needs the [vllm] extra.

vLLM's offline ``LLM`` is fast only when given many prompts at once, while the pipeline makes
many small concurrent ``complete`` calls. ``BatchCollector`` bridges the two: calls arriving
within a short window (or until a batch is full) go to the engine as one ``LLM.chat`` call on
a worker thread, and each caller gets its own result or error back.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from clinfo.errors import ClinfoError, ConfigError, LLMError, one_line
from clinfo.llm.base import Completion, LLMRequest, TokenCallback

if TYPE_CHECKING:
    from clinfo.settings import Settings


class BatchCollector:
    """Runs ``run_batch(items) -> results`` (same order; a result may be an exception, which goes
    to that item's caller only) on one worker thread, over batches of concurrent submissions."""

    def __init__(
        self, run_batch: Callable[[list[Any]], list[Any]], *, max_batch: int = 64, window: float = 0.02
    ) -> None:
        self.run_batch, self.max_batch, self.window = run_batch, max_batch, window
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="clinfo-vllm"
        )  # engines are not thread-safe
        self._pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            if len(self._pending) < self.max_batch:
                await asyncio.sleep(self.window)  # let the other concurrent callers join
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # callers cancelled while waiting
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise LLMError(f"batch engine returned {len(results)} results for {len(batch)} requests")
            except Exception as exc:  # the whole batch failed: every caller in it hears why
                err = exc if isinstance(exc, ClinfoError) else LLMError(f"vllm-offline batch failed: {one_line(exc)}")
                results = [err] * len(batch)
            for (_, fut), result in zip(batch, results):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)


def sampling_params(request: LLMRequest) -> Any:
    """vLLM SamplingParams for one request, JSON schema enforced by guided decoding."""
    from vllm import SamplingParams

    # vLLM's default max_tokens is 16; None means "until the context is full"
    kwargs: dict[str, Any] = {"temperature": request.temperature, "max_tokens": request.max_tokens}
    if request.schema is not None:
        try:  # vLLM >= 0.10.2 (the guided_* names were removed in 0.12)
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=request.schema)
        except ImportError:  # vLLM 0.6.3 – 0.11
            from vllm.sampling_params import GuidedDecodingParams

            kwargs["guided_decoding"] = GuidedDecodingParams(json=request.schema)
    return SamplingParams(**kwargs)


class VLLMOfflineLLM:
    def __init__(
        self,
        model: str,
        *,
        engine_factory: Callable[[], Any] | None = None,
        params_factory: Callable[[LLMRequest], Any] = sampling_params,
        max_batch: int = 64,
        window: float = 0.02,
    ) -> None:
        self.model = model
        self.spec = f"vllm-offline:{model}"
        self._engine_factory = engine_factory or self._load_vllm
        self._params = params_factory
        self._engine: Any = None
        self.collector = BatchCollector(self._run_batch, max_batch=max_batch, window=window)

    def identity(self) -> dict[str, Any]:
        return {"backend": "vllm-offline", "model": self.model}

    async def complete(self, request: LLMRequest, on_token: TokenCallback | None = None) -> Completion:
        completion: Completion = await self.collector.submit(request)
        if on_token is not None and completion.text:
            on_token(completion.text)  # batched generation does not stream: one piece at the end
        return completion

    async def aclose(self) -> None:
        return None  # the engine holds the GPU for the process; loading it again costs minutes

    def _load_vllm(self) -> Any:
        from vllm import LLM

        return LLM(model=self.model)

    def _run_batch(self, requests: list[LLMRequest]) -> list[Completion | Exception]:  # worker thread
        if self._engine is None:
            try:
                self._engine = self._engine_factory()
            except Exception as exc:
                raise LLMError(f"vllm-offline cannot load {self.model}: {one_line(exc)}") from exc
        results: list[Completion | Exception] = []
        ready: list[tuple[int, LLMRequest, Any]] = []
        for i, request in enumerate(requests):
            try:
                ready.append((i, request, self._params(request)))
                results.append(LLMError("not run"))
            except Exception as exc:  # e.g. a schema guided decoding cannot compile: only its caller fails
                results.append(LLMError(f"vllm-offline rejected a request: {one_line(exc)}"))
        if not ready:
            return results
        outputs = self._engine.chat(
            [[dict(m) for m in request.messages] for _, request, _ in ready],
            sampling_params=[params for _, _, params in ready],
            use_tqdm=False,
        )
        for (i, request, _), output in zip(ready, outputs):
            best = output.outputs[0]
            completion = Completion(
                text=best.text,
                prompt_tokens=len(output.prompt_token_ids or ()),
                completion_tokens=len(best.token_ids or ()),
                model=self.model,
                cost_usd=0.0,
            )
            completion.extra["finish_reason"] = best.finish_reason
            if request.schema is not None:
                completion.extra["structured_output"] = "guided"
            results[i] = completion
        return results


def create(model: str, settings: Settings) -> VLLMOfflineLLM:
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("vllm-offline needs the [vllm] extra and an NVIDIA GPU: pip install 'clinfo[vllm]'")
    return VLLMOfflineLLM(model)
