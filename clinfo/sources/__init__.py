"""Literature sources: live PubMed (E-utilities), local corpora, and plug-ins (see :mod:`.registry`)."""

from __future__ import annotations

from clinfo.sources.base import DateRange, SearchResult, Source, SourceStats
from clinfo.sources.registry import create_source, parse_spec, register

__all__ = ["DateRange", "SearchResult", "Source", "SourceStats", "create_source", "parse_spec", "register"]
