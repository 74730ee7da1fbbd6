"""Parses ``source="prefix[:argument]"`` specs and builds the source; open to plug-ins.

Mirrors :mod:`clinfo.llm.registry`. Built in: ``pubmed`` (live E-utilities), ``demo`` (the
bundled corpus) and ``local:/path/corpus.db`` (a local PubMed mirror). Sources come from entry
points in group ``clinfo.sources`` (clinfo's own and other packages', see :mod:`clinfo.plugins`)
and from :func:`register` in this process; every entry point (``ClinfoAI``, the CLI,
``clinfo eval``, the app, the LangChain retriever) opens sources through :func:`create_source`,
so a plug-in's source works in all of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

from clinfo import plugins
from clinfo.errors import ConfigError

if TYPE_CHECKING:
    from clinfo.cache import Cache
    from clinfo.settings import Settings
    from clinfo.sources.base import Source

Factory = Callable[[str, "Settings"], "Source"]  # (text after "prefix:", settings) -> Source

_PLUGINS = plugins.EntryPointGroup(plugins.SOURCES)
_REGISTERED: dict[str, Factory] = {}
_USAGE = "use 'pubmed', 'demo' or 'local:/path/to/corpus.db'"


def register(prefix: str, factory: Factory) -> None:
    """Add a source: ``register("mine", lambda arg, settings: MySource(arg))``; then ``source="mine:arg"``.

    A registered prefix takes precedence over a built-in or plug-in one of the same name.
    """
    if not prefix or ":" in prefix or prefix != prefix.strip():
        raise ValueError(f"invalid source prefix {prefix!r}")
    _REGISTERED[prefix] = factory


def sources() -> list[str]:
    """Every prefix a spec may start with."""
    return _PLUGINS.names(_REGISTERED)


def registered() -> list[str]:
    """The prefixes added by plug-ins (other packages' entry points, register())."""
    builtin = {name for name, plugin in _PLUGINS.plugins().items() if plugin.builtin}
    return sorted(set(sources()) - builtin.difference(_REGISTERED))


def providers() -> dict[str, str]:
    """Every prefix and what provides it (``clinfo <version>``, a plug-in's package, or register())."""
    return _PLUGINS.providers(_REGISTERED)


def _factory(prefix: str) -> Callable[..., Source] | None:
    if prefix in _REGISTERED:
        return _REGISTERED[prefix]
    plugin = _PLUGINS.plugins().get(prefix)
    return plugin.factory if plugin is not None else None


def _fits(rule: plugins.ArgumentRule, spec: str, prefix: str, arg: str) -> bool:
    if rule == "none":
        return not arg and spec == prefix
    return bool(arg) if rule == "required" else True


def parse_spec(spec: str) -> tuple[str, str]:
    """``"local:/x/corpus.db"`` -> ``("local", "/x/corpus.db")``; ``"pubmed"`` -> ``("pubmed", "")``."""
    spec = (spec or "").strip()
    prefix, _, arg = spec.partition(":")
    prefix, arg = prefix.strip(), arg.strip()
    factory = _factory(prefix)
    if factory is not None and _fits(plugins.argument_rule(factory), spec, prefix, arg):
        return prefix, arg
    others = registered()
    raise ConfigError(f"unknown source {spec!r}; {_USAGE}" + (f" or a plug-in ({', '.join(others)})" if others else ""))


def _takes_cache(factory: Callable[..., Source]) -> bool:
    try:
        return "cache" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def create_source(spec: str, settings: Settings, cache: Cache | None = None) -> Source:
    """The source ``spec`` names, searching in ``settings.search_mode`` where it has a choice.

    A factory with a ``cache`` parameter (the built-ins have one) is given the on-disk cache.
    """
    prefix, arg = parse_spec(spec)
    factory = _factory(prefix)
    assert factory is not None  # parse_spec found it
    return factory(arg, settings, cache=cache) if _takes_cache(factory) else factory(arg, settings)
