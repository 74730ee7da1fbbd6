"""The in-process vLLM backend (``llm="vllm-offline:<model>"``): its batch collector with a fake
engine here; the real engine only where a GPU and vllm are.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from types import SimpleNamespace
from typing import Any

import pytest

from clinfo.errors import ConfigError, LLMError
from clinfo.llm import Completion, LLMRequest, create_llm
from clinfo.llm.vllm_offline import VLLMOfflineLLM
from clinfo.settings import Settings
from tests.support.llm_requests import SCHEMA, ask


class FakeEngine:
    """Stands in for vllm.LLM: records each chat() batch and answers each conversation with
    its last message upper-cased, so a misrouted answer is visible."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.params: list[Any] = []
        self.fail_on = fail_on

    def chat(self, conversations: list[list[dict[str, str]]], sampling_params: list[Any], use_tqdm: bool) -> list[Any]:
        assert use_tqdm is False and len(sampling_params) == len(conversations)
        prompts = [conv[-1]["content"] for conv in conversations]
        self.batches.append(prompts)
        self.params.extend(sampling_params)
        if self.fail_on and self.fail_on in prompts:
            raise RuntimeError("CUDA out of memory")
        return [
            SimpleNamespace(
                prompt_token_ids=list(range(len(p.split()))),
                outputs=[SimpleNamespace(text=p.upper(), token_ids=[1, 2, 3], finish_reason="stop")],
            )
            for p in prompts
        ]


def fake_params(request: LLMRequest) -> dict[str, Any]:
    if request.schema == {"type": "broken"}:
        raise ValueError("unsupported schema")
    return {"max_tokens": request.max_tokens, "json": request.schema}


def offline(engine: FakeEngine, **kw: Any) -> VLLMOfflineLLM:
    return VLLMOfflineLLM("fake/model", engine_factory=lambda: engine, params_factory=fake_params, **kw)


async def test_vllm_offline_batches_concurrent_calls_and_routes_results() -> None:
    engine = FakeEngine()
    llm = offline(engine, max_batch=8, window=0.05)
    prompts = [f"question {i}" for i in range(20)]
    calls = (llm.complete(ask(p, schema=SCHEMA if i % 2 else None)) for i, p in enumerate(prompts))
    results = await asyncio.gather(*calls)
    assert [r.text for r in results] == [p.upper() for p in prompts]
    assert [len(b) for b in engine.batches] == [8, 8, 4]  # 20 concurrent calls, 3 engine calls
    assert sorted(p for b in engine.batches for p in b) == sorted(prompts)
    assert results[0].prompt_tokens == 2 and results[0].completion_tokens == 3 and results[0].cost_usd == 0.0
    assert results[1].extra["structured_output"] == "guided" and "structured_output" not in results[0].extra
    assert {"max_tokens": 16, "json": SCHEMA} in engine.params
    assert llm.identity() == {"backend": "vllm-offline", "model": "fake/model"}


async def test_vllm_offline_engine_failure_reaches_every_caller_of_that_batch_only() -> None:
    engine = FakeEngine(fail_on="poison")
    llm = offline(engine, window=0.01)
    results = await asyncio.gather(*(llm.complete(ask(p)) for p in ("a", "poison", "b")), return_exceptions=True)
    assert all(isinstance(r, LLMError) and "CUDA out of memory" in str(r) for r in results)
    assert (await llm.complete(ask("after"))).text == "AFTER"  # the collector keeps working


async def test_vllm_offline_bad_request_fails_alone() -> None:
    engine = FakeEngine()
    llm = offline(engine, window=0.01)
    good, bad = await asyncio.gather(
        llm.complete(ask("fine")), llm.complete(ask("odd", schema={"type": "broken"})), return_exceptions=True
    )
    assert isinstance(good, Completion) and good.text == "FINE"
    assert isinstance(bad, LLMError) and "unsupported schema" in str(bad)
    assert engine.batches == [["fine"]]


async def test_vllm_offline_load_failure_is_typed_and_skips_cancelled_callers() -> None:
    def no_gpu() -> Any:
        raise RuntimeError("No CUDA GPUs are available")

    failing = VLLMOfflineLLM("fake/model", engine_factory=no_gpu, params_factory=fake_params)
    with pytest.raises(LLMError, match="vllm-offline cannot load fake/model: No CUDA GPUs"):
        await failing.complete(ask("x"))

    engine = FakeEngine()
    llm = offline(engine, window=0.05)
    doomed = asyncio.create_task(llm.complete(ask("cancel me")))
    kept = asyncio.create_task(llm.complete(ask("keep me")))
    await asyncio.sleep(0)  # both are now waiting in the collector
    doomed.cancel()
    assert (await kept).text == "KEEP ME"
    assert engine.batches == [["keep me"]]


async def test_vllm_offline_on_token_gets_the_whole_text_once() -> None:
    pieces: list[str] = []
    c = await offline(FakeEngine(), window=0.0).complete(ask("hello"), on_token=pieces.append)
    assert pieces == ["HELLO"] == [c.text]


def test_vllm_offline_without_vllm_says_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ConfigError, match=r"vllm-offline needs the \[vllm\] extra and an NVIDIA GPU"):
        create_llm("vllm-offline:some/model", Settings())


def _has_gpu_and_vllm() -> bool:
    import shutil

    return importlib.util.find_spec("vllm") is not None and shutil.which("nvidia-smi") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu_and_vllm(), reason="needs an NVIDIA GPU and vllm")
async def test_vllm_offline_real_engine_batches_guided_json() -> None:
    import os

    # any chat model vLLM can load offline here (a local directory or a cached Hub name)
    model = os.environ.get("CLINFO_TEST_VLLM_MODEL", "HuggingFaceTB/SmolLM2-135M-Instruct")
    llm = create_llm(f"vllm-offline:{model}", Settings())
    assert isinstance(llm, VLLMOfflineLLM)
    calls: list[int] = []
    real_run = llm.collector.run_batch
    llm.collector.run_batch = lambda items: (calls.append(len(items)), real_run(items))[1]
    prompt = "Abstract: aspirin reduced stroke in a trial. Relevant to aspirin and stroke? JSON."
    results = await asyncio.gather(*(llm.complete(ask(prompt, max_tokens=96, schema=SCHEMA)) for _ in range(12)))
    for c in results:
        data = json.loads(c.text)
        assert data["design"] in SCHEMA["properties"]["design"]["enum"] and isinstance(data["relevant"], bool)
        assert c.completion_tokens > 0 and c.cost_usd == 0.0
    assert sum(calls) == 12 and len(calls) < 12
