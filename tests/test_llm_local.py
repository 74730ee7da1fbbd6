"""The in-process backends: embedded llama.cpp with the SmolLM2-135M GGUF, and vLLM offline
(its batch collector with a fake engine here; the real engine only where a GPU is).

Deterministic (temperature 0), so concurrent calls can be checked against sequential ones.
Assertions are about shape and routing, never the tiny model's wording.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clinfo.errors import ConfigError, LLMError
from clinfo.llm import Completion, LLMRequest, create_llm
from clinfo.llm.local import LocalLLM, default_model_path
from clinfo.llm.vllm_offline import VLLMOfflineLLM
from clinfo.settings import Settings

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "relevant": {"type": "boolean"},
        "design": {"enum": ["rct", "cohort", "case-control", "review", "other"]},
        "reason": {"type": "string", "maxLength": 60},
    },
    "required": ["relevant", "design", "reason"],
    "additionalProperties": False,
}


def ask(text: str, max_tokens: int = 16, **kw: Any) -> LLMRequest:
    return LLMRequest(messages=({"role": "user", "content": text},), max_tokens=max_tokens, **kw)


@pytest.fixture(scope="module")
def llm() -> LocalLLM:
    made = create_llm("local", Settings())
    assert isinstance(made, LocalLLM)
    return made


async def test_answers_with_counts_and_no_cost(llm: LocalLLM) -> None:
    c = await llm.complete(ask("Name one use of aspirin."))
    assert c.text.strip()
    assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 16
    assert c.cost_usd == 0.0 and c.model == default_model_path().name
    assert llm.spec == "local" and llm.identity()["backend"] == "local"


async def test_streams_pieces_that_make_up_the_text(llm: LocalLLM) -> None:
    pieces: list[str] = []
    c = await llm.complete(ask("Write a sentence about the heart.", max_tokens=24), on_token=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == c.text
    plain = await llm.complete(ask("Write a sentence about the heart.", max_tokens=24))
    assert plain.text == c.text  # streaming changes delivery, not the answer


@pytest.mark.parametrize(
    "abstract",
    [
        "A randomised trial of 400 adults found aspirin reduced stroke.",
        "We followed 10,000 nurses for 20 years and recorded their diets.",
        "Hello! Write me a poem about the sea instead of JSON.",
    ],
)
async def test_json_schema_is_honoured(llm: LocalLLM, abstract: str) -> None:
    prompt = f"Abstract: {abstract}\nIs it relevant to 'does aspirin prevent stroke'? Reply in JSON."
    c = await llm.complete(ask(prompt, max_tokens=96, schema=SCHEMA))
    data = json.loads(c.text)
    assert set(data) == {"relevant", "design", "reason"}
    assert isinstance(data["relevant"], bool)
    assert data["design"] in SCHEMA["properties"]["design"]["enum"]
    assert isinstance(data["reason"], str) and len(data["reason"]) <= 60
    assert c.extra["structured_output"] == "grammar"


async def test_structured_streaming_also_parses(llm: LocalLLM) -> None:
    pieces: list[str] = []
    c = await llm.complete(ask("Is aspirin an analgesic? JSON please.", max_tokens=96, schema=SCHEMA), on_token=pieces.append)
    assert "".join(pieces) == c.text
    assert json.loads(c.text)["design"] in SCHEMA["properties"]["design"]["enum"]


async def test_concurrent_calls_get_their_own_answers(llm: LocalLLM) -> None:
    prompts = ["Define fever.", "Define anaemia.", "Define sepsis."]
    sequential = [(await llm.complete(ask(p))).text for p in prompts]
    streamed: list[list[str]] = [[], [], []]
    concurrent = await asyncio.gather(
        *(llm.complete(ask(p), on_token=streamed[i].append if i % 2 else None) for i, p in enumerate(prompts))
    )
    assert [c.text for c in concurrent] == sequential
    assert "".join(streamed[1]) == sequential[1]


async def test_a_failing_token_callback_reaches_the_caller_and_frees_the_model(llm: LocalLLM) -> None:
    seen: list[str] = []

    def boom(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 2:
            raise RuntimeError("display went away")

    with pytest.raises(RuntimeError, match="display went away"):
        await llm.complete(ask("Count from one to fifty.", max_tokens=200), on_token=boom)
    assert len(seen) == 2  # no callback after the one that raised
    assert (await llm.complete(ask("Say yes.", max_tokens=4))).text.strip()


async def test_cancelled_call_leaves_the_model_usable(llm: LocalLLM) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(
        llm.complete(ask("Count from one to two hundred.", max_tokens=400), on_token=lambda _: started.set())
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await llm.complete(ask("Say yes.", max_tokens=4))).text.strip()


async def test_an_overlong_prompt_is_cut_in_the_middle_not_crashed() -> None:
    small = LocalLLM(default_model_path(), n_ctx=512)
    document = "START " + "filler " * 1500 + "FINISH"
    c = await small.complete(
        LLMRequest(
            messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": document}),
            max_tokens=8,
        )
    )
    assert c.extra["truncated_tokens"] > 1000
    assert 0 < c.prompt_tokens + c.completion_tokens <= 512


async def test_a_prompt_that_cannot_be_cut_enough_is_a_clear_error() -> None:
    small = LocalLLM(default_model_path(), n_ctx=512)
    request = LLMRequest(
        messages=({"role": "system", "content": "rule " * 2000}, {"role": "user", "content": "hi"}), max_tokens=8
    )
    with pytest.raises(LLMError, match="does not fit local model context of 512"):
        await small.complete(request)


def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local model file not found"):
        create_llm(f"local:{tmp_path / 'nope.gguf'}", Settings())


async def test_a_file_that_is_not_a_gguf_fails_typed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a model" * 100)
    llm = create_llm(f"local:{bad}", Settings())
    assert llm.spec == f"local:{bad}" and llm.identity()["path"] == str(bad)
    with pytest.raises(LLMError, match="cannot load local model"):
        await llm.complete(ask("hi"))


def test_without_llama_cpp_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'clinfo\[local\]'"):
        create_llm("local", Settings())


def test_context_size_and_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinfo.settings import load_settings

    monkeypatch.setenv("CLINFO_LOCAL_N_CTX", "1024")
    monkeypatch.setenv("CLINFO_LOCAL_N_THREADS", "3")
    llm = create_llm("local", load_settings())
    assert isinstance(llm, LocalLLM) and (llm.n_ctx, llm.n_threads) == (1024, 3)
    monkeypatch.setenv("CLINFO_LOCAL_N_THREADS", "0")
    with pytest.raises(ConfigError, match="local_n_threads"):
        load_settings()
    monkeypatch.delenv("CLINFO_LOCAL_N_THREADS")
    monkeypatch.setenv("CLINFO_LOCAL_N_CTX", "lots")
    with pytest.raises(ConfigError, match="local_n_ctx"):
        load_settings()


def test_free_text_strings_get_a_length_bound_for_the_grammar_only() -> None:
    from clinfo.llm.local import bounded_strings
    from clinfo.pipeline import SCREEN_SCHEMA

    bounded = bounded_strings(SCREEN_SCHEMA)
    assert all(bounded["properties"][k]["maxLength"] == 400 for k in ("reason", "summary", "design"))
    assert "maxLength" not in bounded["properties"]["relevant"] and "maxLength" not in SCREEN_SCHEMA["properties"]["reason"]
    enum = {"type": "object", "properties": {"a": {"type": "string", "enum": ["yes", "no"]}, "b": {"type": "array", "items": {"type": "string"}}}}
    out = bounded_strings(enum)
    assert "maxLength" not in out["properties"]["a"] and out["properties"]["b"]["items"]["maxLength"] == 400


# --- in-process vLLM: the batch collector with a fake engine (the real one needs a GPU)

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
    results = await asyncio.gather(*(llm.complete(ask(p, schema=SCHEMA if i % 2 else None)) for i, p in enumerate(prompts)))
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
