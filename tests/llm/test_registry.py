"""LLM spec parsing, plug-in registration, and that building a backend stays cheap and lazy."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from clinfo.errors import ConfigError
from clinfo.llm import Completion, LLMRequest, backends, create_llm, parse_spec, register, registry
from clinfo.llm.base import LLM
from clinfo.settings import Settings


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("gpt-4o-mini", ("openai", "gpt-4o-mini")),  # a bare name is an OpenAI model
        ("  gpt-4o  ", ("openai", "gpt-4o")),
        ("vllm:Qwen/Qwen2.5-7B-Instruct", ("vllm", "Qwen/Qwen2.5-7B-Instruct")),
        ("openai:llama3:8b", ("openai", "llama3:8b")),  # only the first colon routes
        ("local", ("local", "")),
        ("local:/models/x.gguf", ("local", "/models/x.gguf")),
        ("vllm-offline:meta-llama/Llama-3.1-8B-Instruct", ("vllm-offline", "meta-llama/Llama-3.1-8B-Instruct")),
    ],
)
def test_specs_route_by_explicit_prefix(spec: str, parsed: tuple[str, str]) -> None:
    assert parse_spec(spec) == parsed


def test_a_model_name_with_a_colon_needs_a_prefix() -> None:
    with pytest.raises(ConfigError, match=r"openai:llama3:8b"):
        parse_spec("llama3:8b")


@pytest.mark.parametrize("spec", ["", "   ", None])
def test_empty_spec_is_a_config_error(spec: Any) -> None:
    with pytest.raises(ConfigError, match="no LLM given"):
        parse_spec(spec)


@pytest.mark.parametrize("spec", ["openai:", "vllm:", "vllm-offline:"])
def test_server_backends_need_a_model(spec: str) -> None:
    with pytest.raises(ConfigError, match="names no model"):
        parse_spec(spec)


def test_no_routing_by_substring() -> None:
    # names that merely contain a backend's name still mean OpenAI models
    assert parse_spec("local-llama")[0] == "openai"
    assert parse_spec("my-vllm-model")[0] == "openai"


class EchoLLM:
    def __init__(self, model: str) -> None:
        self.spec = f"echo:{model}"
        self.model = model

    async def complete(self, request: LLMRequest, on_token: Any = None) -> Completion:
        return Completion(text=request.messages[-1]["content"][::-1], model=self.model, cost_usd=0.0)

    def identity(self) -> dict[str, Any]:
        return {"backend": "echo", "model": self.model}

    async def aclose(self) -> None:
        pass


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTERED", dict(registry._REGISTERED))


async def test_register_a_custom_backend(clean_registry: None) -> None:
    seen: list[Settings] = []

    def factory(model: str, settings: Settings) -> EchoLLM:
        seen.append(settings)
        return EchoLLM(model)

    register("echo", factory)
    assert "echo" in backends()
    settings = Settings()
    llm = create_llm("echo:abc", settings)
    assert isinstance(llm, LLM) and seen == [settings]
    reply = await llm.complete(LLMRequest(messages=({"role": "user", "content": "hello"},)))
    assert reply.text == "olleh"
    assert parse_spec("echo") == ("echo", "")  # a bare registered prefix is that backend


def test_a_registered_backend_overrides_a_builtin(clean_registry: None) -> None:
    register("local", lambda model, settings: EchoLLM(model or "default"))
    assert create_llm("local", Settings()).identity() == {"backend": "echo", "model": "default"}


@pytest.mark.parametrize("prefix", ["", "a:b"])
def test_invalid_prefixes_are_refused(prefix: str, clean_registry: None) -> None:
    with pytest.raises(ValueError):
        register(prefix, lambda m, s: EchoLLM(m))


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown LLM backend 'ollama'.*openai:.*vllm:"):
        create_llm("ollama:llama3", Settings())


def test_builtin_backends_build_without_network() -> None:
    llm = create_llm("vllm:Qwen/Qwen2.5-7B-Instruct", Settings())
    assert llm.identity() == {
        "backend": "vllm",
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "base_url": "http://localhost:8000/v1",
    }
    assert create_llm("local", Settings()).identity()["backend"] == "local"


def test_importing_clinfo_loads_no_backend_library() -> None:
    code = (
        "import sys, clinfo, clinfo.llm; from clinfo.llm import create_llm; from clinfo.settings import Settings;"
        "create_llm('local', Settings());"
        "print(sorted(m for m in ('llama_cpp', 'vllm', 'torch', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # building the local backend does not load llama_cpp either: that waits for the first call
    assert out.stdout.strip() == "[]"
