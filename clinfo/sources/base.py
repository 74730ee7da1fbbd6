"""The ``Source`` seam: ranked PMIDs for a query, then full records."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from clinfo.dates import DateRange  # its home; sources take it as their search window

if TYPE_CHECKING:
    from clinfo.appraisal.filters import StudyFilter
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
    # PMIDs the source's study filter passed over while ranking (best first), where it filters itself
    left_out: list[str] = field(default_factory=list)


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
        """PMIDs for a PubMed-syntax query, best first. A source may also take ``studies``
        (a :class:`~clinfo.appraisal.filters.StudyFilter`) to restrict designs and species itself
        (see :func:`search_studies`); one that decides it on each record's derived design rather
        than through the filter's PubMed form says so with ``filters_on_design = True``."""
        ...

    async def fetch(self, pmids: Sequence[str]) -> list[Article]:
        """Full records, in the order asked; PMIDs the source does not have are left out."""
        ...

    async def aclose(self) -> None: ...


def takes_studies(source: Source) -> bool:
    """Whether ``source.search`` takes a ``studies`` filter (built-in sources do; older plug-ins may not)."""
    try:
        return "studies" in inspect.signature(source.search).parameters
    except (TypeError, ValueError):
        return False


async def search_studies(
    source: Source, query: str, *, limit: int, dates: DateRange | None = None, studies: StudyFilter | None = None
) -> SearchResult:
    """``source.search`` restricted by ``studies``: passed to a source that takes it; for one that does
    not, the filter's PubMed form is ANDed to the query (sources take PubMed syntax), and the
    pipeline's check of each fetched record's design does the rest."""
    if studies is None or not studies.active:
        return await source.search(query, limit=limit, dates=dates)
    if takes_studies(source):
        return await source.search(query, limit=limit, dates=dates, studies=studies)  # type: ignore[call-arg]
    return await source.search(studies.apply(query), limit=limit, dates=dates)
