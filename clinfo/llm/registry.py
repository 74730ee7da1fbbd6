"""Parses ``llm="prefix:model"`` specs explicitly and builds the backend; open to plug-ins.

Routing is by the prefix before the first colon, never by a substring of the model name.
A bare name without a colon means ``openai:<name>``; a bare registered prefix (``local``,
the embedded llama.cpp backend) means that backend with its default model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from clinfo.errors import ConfigError

if TYPE_CHECKING:
    from clinfo.llm.base import LLM
    from clinfo.settings import Settings

Factory = Callable[[str, "Settings"], "LLM"]  # (model, settings) -> LLM

# prefix -> "module:function", imported only when that backend is asked for
_BUILTIN: dict[str, str] = {
    "openai": "clinfo.llm.openai_compat:create_openai",
    "vllm": "clinfo.llm.openai_compat:create_vllm",
    "local": "clinfo.llm.llama_cpp:create",
    "vllm-offline": "clinfo.llm.vllm_offline:create",
}
_REGISTERED: dict[str, Factory] = {}


def register(prefix: str, factory: Factory) -> None:
    """Add a backend: ``register("mine", lambda model, settings: MyLLM(model))``."""
    if not prefix or ":" in prefix:
        raise ValueError(f"invalid backend prefix {prefix!r}")
    _REGISTERED[prefix] = factory


def backends() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def parse_spec(spec: str) -> tuple[str, str]:
    """``"vllm:Qwen/Qwen2.5-7B"`` -> ``("vllm", "Qwen/Qwen2.5-7B")``."""
    spec = (spec or "").strip()
    if not spec:
        raise ConfigError("no LLM given: pass llm='openai:<model>' (or set CLINFO_LLM)")
    known = backends()
    if spec in known:
        return spec, ""
    prefix, sep, model = spec.partition(":")
    if not sep:
        return "openai", spec
    if prefix not in known:
        raise ConfigError(
            f"unknown LLM backend {prefix!r} in {spec!r}; use one of {', '.join(p + ':' for p in known)} "
            f"(a model name that contains ':' needs an explicit prefix, e.g. 'openai:{spec}')"
        )
    if not model and prefix in ("openai", "vllm", "vllm-offline"):
        raise ConfigError(f"LLM spec {spec!r} names no model (e.g. '{prefix}:<model>')")
    return prefix, model


def _factory(prefix: str) -> Factory:
    if prefix in _REGISTERED:
        return _REGISTERED[prefix]
    module_name, func = _BUILTIN[prefix].split(":")
    return getattr(importlib.import_module(module_name), func)


def create_llm(spec: str, settings: Settings) -> LLM:
    prefix, model = parse_spec(spec)
    return _factory(prefix)(model, settings)
