"""Parses ``source="prefix[:argument]"`` specs and builds the source; open to plug-ins.

Mirrors :mod:`clinfo.llm.registry`. Built in: ``pubmed`` (live E-utilities), ``demo`` (the
bundled corpus) and ``local:/path/corpus.db`` (a local PubMed mirror). A plug-in adds its own
prefix with :func:`register`; every entry point (``ClinfoAI``, the CLI, ``clinfo eval``, the
app, the LangChain retriever) opens sources through :func:`create_source`, so a registered
source works in all of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from clinfo.errors import ConfigError

if TYPE_CHECKING:
    from clinfo.cache import Cache
    from clinfo.settings import Settings
    from clinfo.sources.base import Source

Factory = Callable[[str, "Settings"], "Source"]  # (text after "prefix:", settings) -> Source

# prefix -> ("module:function", argument): "none" takes no argument, "required" needs one.
# Built-in factories also take the on-disk cache (PubMed caches its responses there).
_BUILTIN: dict[str, tuple[str, str]] = {
    "pubmed": ("clinfo.sources.registry:_pubmed", "none"),
    "demo": ("clinfo.sources.registry:_demo", "none"),
    "local": ("clinfo.sources.registry:_local", "required"),
}
_REGISTERED: dict[str, Factory] = {}
_USAGE = "use 'pubmed', 'demo' or 'local:/path/to/corpus.db'"


def register(prefix: str, factory: Factory) -> None:
    """Add a source: ``register("mine", lambda arg, settings: MySource(arg))``; then ``source="mine:arg"``.

    A registered prefix takes precedence over a built-in one of the same name.
    """
    if not prefix or ":" in prefix or prefix != prefix.strip():
        raise ValueError(f"invalid source prefix {prefix!r}")
    _REGISTERED[prefix] = factory


def sources() -> list[str]:
    """Every prefix a spec may start with."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def registered() -> list[str]:
    """The prefixes added by plug-ins."""
    return sorted(_REGISTERED)


def parse_spec(spec: str) -> tuple[str, str]:
    """``"local:/x/corpus.db"`` -> ``("local", "/x/corpus.db")``; ``"pubmed"`` -> ``("pubmed", "")``."""
    spec = (spec or "").strip()
    prefix, _, arg = spec.partition(":")
    prefix, arg = prefix.strip(), arg.strip()
    if prefix in _REGISTERED:
        return prefix, arg
    if prefix in _BUILTIN:
        takes = _BUILTIN[prefix][1]
        if (takes == "none" and not arg and spec == prefix) or (takes == "required" and arg):
            return prefix, arg
    raise ConfigError(
        f"unknown source {spec!r}; {_USAGE}" + (f" or a plug-in ({', '.join(registered())})" if _REGISTERED else "")
    )


def create_source(spec: str, settings: Settings, cache: Cache | None = None) -> Source:
    """The source ``spec`` names, searching in ``settings.search_mode`` where it has a choice.

    Local corpora search in ``settings.search_mode``; PubMed ranks by itself, so only ``auto``
    and ``bm25`` make sense for it.
    """
    prefix, arg = parse_spec(spec)
    if prefix in _REGISTERED:
        return _REGISTERED[prefix](arg, settings)
    module_name, func = _BUILTIN[prefix][0].split(":")
    return getattr(importlib.import_module(module_name), func)(arg, settings, cache)


# ---- built-in factories


def _dense(settings: Settings) -> dict[str, str | None]:
    return {"model": settings.dense_model, "query_model": settings.query_model}


def _pubmed(arg: str, settings: Settings, cache: Cache | None) -> Source:
    mode = settings.search_mode
    if mode in ("dense", "hybrid"):
        raise ConfigError(
            f"search mode {mode} needs a local corpus (--source demo or local:/path/corpus.db), not 'pubmed'"
        )
    from clinfo.sources.pubmed import PubMedSource

    return PubMedSource(settings, cache=cache)


def _demo(arg: str, settings: Settings, cache: Cache | None) -> Source:
    from clinfo.corpus.demo import demo_corpus_path
    from clinfo.sources.corpus import LocalSource

    return LocalSource(demo_corpus_path(settings), name="demo", mode=settings.search_mode, **_dense(settings))


def _local(arg: str, settings: Settings, cache: Cache | None) -> Source:
    from clinfo.sources.corpus import LocalSource

    return LocalSource(arg, mode=settings.search_mode, **_dense(settings))
