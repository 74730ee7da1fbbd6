"""Requests the in-process backend tests send (tests/llm/test_llama_cpp.py, tests/llm/test_vllm_offline.py)."""

from __future__ import annotations

from typing import Any

from clinfo.llm import LLMRequest

# a screening-like reply: small enough for SmolLM2, with an enum, a bool and a bounded string
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
    """One user message."""
    return LLMRequest(messages=({"role": "user", "content": text},), max_tokens=max_tokens, **kw)
