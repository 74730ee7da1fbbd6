"""Parses ``llm="prefix:model"`` specs explicitly and builds the backend; open to plug-ins.

Routing is by the prefix before the first colon, never by a substring of the model name.
A bare name without a colon means ``openai:<name>``; a bare registered prefix (``local``,
the embedded llama.cpp backend) means that backend with its default model.

Backends come from entry points in group ``clinfo.llms`` (clinfo's own and other packages',
see :mod:`clinfo.plugins`) and from :func:`register` in this process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from clinfo import plugins
from clinfo.errors import ConfigError

if TYPE_CHECKING:
    from clinfo.llm.base import LLM
    from clinfo.settings import Settings

Factory = Callable[[str, "Settings"], "LLM"]  # (model, settings) -> LLM

_PLUGINS = plugins.EntryPointGroup(plugins.LLMS)
_REGISTERED: dict[str, Factory] = {}


def register(prefix: str, factory: Factory) -> None:
    """Add a backend: ``register("mine", lambda model, settings: MyLLM(model))``.

    A registered prefix takes precedence over a built-in or plug-in one of the same name.
    """
    if not prefix or ":" in prefix:
        raise ValueError(f"invalid backend prefix {prefix!r}")
    _REGISTERED[prefix] = factory


def backends() -> list[str]:
    """Every prefix a spec may start with."""
    return _PLUGINS.names(_REGISTERED)


def providers() -> dict[str, str]:
    """Every prefix and what provides it (``clinfo <version>``, a plug-in's package, or register())."""
    return _PLUGINS.providers(_REGISTERED)


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
    if not model and plugins.argument_rule(_factory(prefix)) == "required":
        raise ConfigError(f"LLM spec {spec!r} names no model (e.g. '{prefix}:<model>')")
    return prefix, model


def _factory(prefix: str) -> Factory:
    if prefix in _REGISTERED:
        return _REGISTERED[prefix]
    plugin = _PLUGINS.plugins().get(prefix)
    if plugin is None:  # only a bare model name routes to a prefix not known to be there: openai
        raise ConfigError(f"unknown LLM backend {prefix!r}; use one of {', '.join(p + ':' for p in backends())}")
    return plugin.factory


def create_llm(spec: str, settings: Settings) -> LLM:
    prefix, model = parse_spec(spec)
    return _factory(prefix)(model, settings)
