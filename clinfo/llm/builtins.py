"""clinfo's own LLM backends, declared as entry points in group ``clinfo.llms`` like any plug-in's.

The whole group is imported on the first lookup, so this module stays small: each factory imports
its backend (httpx, llama.cpp, vLLM) only when that backend is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfo.plugins import spec_argument

if TYPE_CHECKING:
    from clinfo.llm.base import LLM
    from clinfo.settings import Settings


@spec_argument("required")
def openai(model: str, settings: Settings) -> LLM:
    from clinfo.llm.openai_compat import create_openai

    return create_openai(model, settings)


@spec_argument("required")
def vllm(model: str, settings: Settings) -> LLM:
    from clinfo.llm.openai_compat import create_vllm

    return create_vllm(model, settings)


def local(model: str, settings: Settings) -> LLM:
    from clinfo.llm.llama_cpp import create

    return create(model, settings)


@spec_argument("required")
def vllm_offline(model: str, settings: Settings) -> LLM:
    from clinfo.llm.vllm_offline import create

    return create(model, settings)
