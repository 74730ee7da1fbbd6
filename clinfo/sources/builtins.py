"""clinfo's own sources, declared as entry points in group ``clinfo.sources`` like any plug-in's.

The whole group is imported on the first lookup, so this module stays small: each factory imports
what its source needs when that source is built. They take the on-disk cache (PubMed keeps its
responses there); a plug-in's factory gets it too when it has a ``cache`` parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfo.errors import ConfigError
from clinfo.plugins import spec_argument

if TYPE_CHECKING:
    from clinfo.cache import Cache
    from clinfo.settings import Settings
    from clinfo.sources.base import Source


def _dense(settings: Settings) -> dict[str, str | None]:
    return {"model": settings.dense_model, "query_model": settings.query_model}


@spec_argument("none")
def pubmed(argument: str, settings: Settings, cache: Cache | None = None) -> Source:
    """Live PubMed. It ranks by itself, so only the ``auto`` and ``bm25`` search modes make sense for it."""
    mode = settings.search_mode
    if mode in ("dense", "hybrid"):
        raise ConfigError(
            f"search mode {mode} needs a local corpus (--source demo or local:/path/corpus.db), not 'pubmed'"
        )
    from clinfo.sources.pubmed import PubMedSource

    return PubMedSource(settings, cache=cache)


@spec_argument("none")
def demo(argument: str, settings: Settings, cache: Cache | None = None) -> Source:
    from clinfo.corpus.demo import demo_corpus_path
    from clinfo.sources.corpus import LocalSource

    return LocalSource(demo_corpus_path(settings), name="demo", mode=settings.search_mode, **_dense(settings))


@spec_argument("required")
def local(argument: str, settings: Settings, cache: Cache | None = None) -> Source:
    from clinfo.sources.corpus import LocalSource

    return LocalSource(argument, mode=settings.search_mode, **_dense(settings))
