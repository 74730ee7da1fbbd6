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
    """``pubmed`` (live E-utilities), ``demo`` (bundled corpus) or ``local:/path/corpus.db``."""
    spec = (spec or "").strip()
    if spec == "pubmed":
        from clinfo.sources.pubmed import PubMedSource

        return PubMedSource(settings, cache=cache)
    if spec == "demo":
        from clinfo.corpus.demo import demo_corpus_path
        from clinfo.sources.corpus import LocalSource

        return LocalSource(demo_corpus_path(settings), name="demo")
    if spec.startswith("local:") and spec[6:].strip():
        from clinfo.sources.corpus import LocalSource

        return LocalSource(spec[6:].strip())
    raise ConfigError(f"unknown source {spec!r}; use 'pubmed', 'demo' or 'local:/path/to/corpus.db'")
