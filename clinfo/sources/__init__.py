"""Literature sources: live PubMed (E-utilities) and local SQLite mirrors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfo.errors import ConfigError
from clinfo.sources.base import DateRange, SearchResult, Source, SourceStats

if TYPE_CHECKING:
    from clinfo.cache import Cache
    from clinfo.settings import Settings

__all__ = ["DateRange", "SearchResult", "Source", "SourceStats", "create_source"]


def create_source(spec: str, settings: "Settings", cache: "Cache | None" = None) -> Source:
    """``pubmed`` (live E-utilities), ``demo`` (bundled corpus) or ``local:/path/corpus.db``.

    Local corpora search in ``settings.search_mode``; PubMed ranks by itself, so only ``auto``
    and ``bm25`` make sense for it.
    """
    spec = (spec or "").strip()
    mode = settings.search_mode
    dense = {"model": getattr(settings, "dense_model", None), "query_model": getattr(settings, "query_model", None)}
    if spec == "pubmed":
        if mode in ("dense", "hybrid"):
            raise ConfigError(f"search mode {mode} needs a local corpus (--source demo or local:/path/corpus.db), not 'pubmed'")
        from clinfo.sources.pubmed import PubMedSource

        return PubMedSource(settings, cache=cache)
    if spec == "demo":
        from clinfo.corpus.demo import demo_corpus_path
        from clinfo.sources.corpus import LocalSource

        return LocalSource(demo_corpus_path(settings), name="demo", mode=mode, **dense)
    if spec.startswith("local:") and spec[6:].strip():
        from clinfo.sources.corpus import LocalSource

        return LocalSource(spec[6:].strip(), mode=mode, **dense)
    raise ConfigError(f"unknown source {spec!r}; use 'pubmed', 'demo' or 'local:/path/to/corpus.db'")
