"""Pluggable LLM backends behind one protocol (see ``base.LLM``)."""

from clinfo.llm.base import LLM, CachedLLM, Completion, LLMRequest
from clinfo.llm.registry import backends, create_llm, parse_spec, register

__all__ = ["LLM", "CachedLLM", "Completion", "LLMRequest", "backends", "create_llm", "parse_spec", "register"]
