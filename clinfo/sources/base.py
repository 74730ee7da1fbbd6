"""The ``Source`` seam: ranked PMIDs for a query, then full records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from clinfo.dates import DateRange  # its home; sources take it as their search window

if TYPE_CHECKING:
    from clinfo.models import Article


@dataclass
class SearchResult:
    query: str
    pmids: list[str]  # best first
    count: int  # total hits the source reports (may exceed len(pmids))
    translation: str | None = None  # how the source understood the query, when it says
    warnings: list[str] = field(default_factory=list)
    # parallel to pmids, higher is better; empty when the source gives none
    scores: list[float] = field(default_factory=list)
    # the ranking that ran, for the answer's trace: "bm25", "dense", "hybrid (score fusion)"; None where
    # the source has no choice of ranking (PubMed ranks by itself)
    mode: str | None = None


@dataclass
class SourceStats:
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0


@runtime_checkable
class Source(Protocol):
    name: str
    stats: SourceStats

    async def search(self, query: str, *, limit: int = 20, dates: DateRange | None = None) -> SearchResult:
        """PMIDs for a PubMed-syntax query, best first."""
        ...

    async def fetch(self, pmids: Sequence[str]) -> list[Article]:
        """Full records, in the order asked; PMIDs the source does not have are left out."""
        ...

    async def aclose(self) -> None: ...
