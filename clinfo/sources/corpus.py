"""``LocalSource``: the ``Source`` protocol over a local corpus (``clinfo.corpus``).

Search modes: ``bm25`` (the Tantivy lexical index, the PubMed query translated by ``clinfo.corpus.lexical_query``),
``dense`` (the corpus's vector set, ``clinfo.corpus.dense``: vectors from ``clinfo index embed`` or
``clinfo index import-vectors``), ``hybrid`` (both fused: by normalised scores, or by reciprocal rank
with ``fusion="rrf"``) and ``auto`` (hybrid where the corpus has vectors and the query encoder loads,
else bm25; ``clinfo.corpus.hybrid``). Every result names the ranking that ran (``SearchResult.mode``).

Work runs in worker threads (``asyncio.to_thread``), so searches never block the event loop. The
open corpus (SQLite connections, the lexical and dense indexes, the question encoder) belongs to
the process, not to the source (``clinfo.corpus.engine``): each call takes a read-only SQLite
connection from its pool, so no two threads share one; the indexes are shared by all threads.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.corpus.engine import CorpusEngine, open_engine
from clinfo.corpus.hybrid import (
    DEFAULT_FUSION,
    FUSION_DEPTH,
    HYBRID_K,
    MODES,
    SearchMode,
    describe,
    fuse_hybrid,
    label,
)
from clinfo.corpus.lexical_query import translate
from clinfo.errors import ClinfoError, ConfigError, CorpusError, one_line
from clinfo.sources.base import DateRange, SearchResult, SourceStats

if TYPE_CHECKING:
    from clinfo.appraisal.filters import StudyFilter
    from clinfo.models import Article

__all__ = ["LocalSource", "MODES"]


class LocalSource:
    """PMIDs and records from a local SQLite corpus.

    A source is cheap: it borrows the process's open corpus (``clinfo.corpus.engine``), so one
    per question costs a few ``stat`` calls, and closing it leaves the corpus open for the
    others. ``shared=False`` opens a private copy that ``close`` releases (how every source
    worked before; benchmarks/corpus_sharing.py compares the two).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        name: str = "local",
        mode: SearchMode = "bm25",
        model: str | None = None,
        *,
        query_model: str | None = None,
        fusion: str = DEFAULT_FUSION,
        fusion_k: int = HYBRID_K,
        fusion_depth: int = FUSION_DEPTH,
        shared: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        self.path = Path(path)
        self.name = name
        self.requested_mode = mode
        self.mode: str = mode  # the mode searches run in: auto resolves to bm25 or hybrid below
        self.model = model
        self.fusion_k = fusion_k
        self.fusion_depth = fusion_depth
        self.stats = SourceStats()
        self.shared = shared
        # Opened now so a missing or incompatible corpus fails at construction, not mid-run.
        self.engine = self._guard(lambda: open_engine(self.path) if shared else CorpusEngine(self.path))
        self._warnings: list[str] = list(self.engine.warnings)
        self._lexical = self.engine.lexical
        try:
            choice = self.engine.choose(mode, model, query_model, fusion)
        except BaseException:
            self.close()
            raise
        self.mode, self._dense, self.fusion = choice.mode, choice.dense, choice.fusion
        self.choice = choice
        self.mode_label = label(choice)  # what each result's ``mode`` says
        self._warnings.extend(choice.notes)

    def describe(self) -> dict[str, Any]:
        """The effective search mode, its fusion and the vector set behind it (``clinfo.corpus.hybrid.describe``)."""
        return describe(self.choice)

    # ------------------------------------------------------------------ connections

    def _guard(self, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except sqlite3.DatabaseError as exc:
            raise CorpusError(f"corpus {self.path} cannot be read: {one_line(exc)}") from None

    @property
    def articles(self) -> int:
        """How many articles the corpus holds."""
        return self._guard(lambda: self.engine.size)

    # ------------------------------------------------------------------ Source protocol

    # a study filter is decided on each record's derived design (``_search_studies``), not through PubMed syntax
    filters_on_design = True

    def search_sync(
        self, query: str, *, limit: int = 20, dates: DateRange | None = None, studies: StudyFilter | None = None
    ) -> SearchResult:
        """``search`` without the event loop (the CLI's ``--stdin`` loop, benchmarks)."""
        self.stats.requests += 1
        if studies is not None and studies.active:
            return self._guard(self._search_studies, query, limit, dates, studies)
        return self._guard(self._search, query, limit, dates)

    async def search(
        self, query: str, *, limit: int = 20, dates: DateRange | None = None, studies: StudyFilter | None = None
    ) -> SearchResult:
        """PMIDs for a PubMed-syntax query or plain text, best first; ``studies`` keeps only the
        records whose design and species it admits."""
        return await asyncio.to_thread(self.search_sync, query, limit=limit, dates=dates, studies=studies)

    def fetch_sync(self, pmids: Sequence[str]) -> list[Article]:
        self.stats.requests += 1
        return self._guard(self._fetch, list(pmids))

    def _fetch(self, pmids: list[str]) -> list[Article]:
        with self.engine.records() as store:
            return store.fetch(pmids)

    async def fetch(self, pmids: Sequence[str]) -> list[Article]:
        """Full records in the order asked; PMIDs the corpus lacks are left out."""
        return await asyncio.to_thread(self.fetch_sync, list(pmids))

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release for a shared corpus (the next call still works); a private one closes."""
        engine = getattr(self, "engine", None)
        if engine is not None and not self.shared:
            engine.close()

    # ------------------------------------------------------------------ ranking

    # A study filter examines the ranking this many times deeper than ``limit`` at first (at least
    # STUDY_MIN_DEPTH records), widening by the same factor until ``limit`` records pass, the ranking
    # ends, or STUDY_MAX_DEPTH records were examined (a few ms per hundred records: fetch + design).
    STUDY_OVERFETCH = 4
    STUDY_MIN_DEPTH = 100
    STUDY_MAX_DEPTH = 5000

    def _search_studies(self, query: str, limit: int, dates: DateRange | None, studies: StudyFilter) -> SearchResult:
        """The ranking of ``query`` with the records outside ``studies`` taken out, order and scores kept.

        Publication types and MeSH are stored with each record, and the design decided from them
        (or from title and abstract where NLM has not indexed the record) is the one the answer
        shows, so the filter is decided on ``Article.design`` rather than on index fields: a
        ``[pt]`` clause would lose the trials NLM has not typed yet. ``left_out``: the records
        passed over above the last one kept.
        """
        if limit <= 0:
            return self._search(query, limit, dates)
        admitted: dict[str, bool] = {}
        depth = max(limit * self.STUDY_OVERFETCH, self.STUDY_MIN_DEPTH)
        while True:
            result = self._search(query, depth, dates)
            new = [p for p in result.pmids if p not in admitted]
            if new:
                found = {a.pmid: a for a in self._fetch(new)}
                admitted.update((p, p in found and studies.admits(found[p])) for p in new)
            exhausted = len(result.pmids) < depth
            passing = sum(admitted[p] for p in result.pmids)
            if passing >= limit or exhausted or depth >= self.STUDY_MAX_DEPTH:
                break
            depth = min(depth * self.STUDY_OVERFETCH, self.STUDY_MAX_DEPTH)
        kept: list[int] = []
        left_out: list[str] = []
        for i, p in enumerate(result.pmids):
            if len(kept) == limit:
                break
            if admitted[p]:
                kept.append(i)
            else:
                left_out.append(p)
        warnings = list(result.warnings)
        if exhausted:
            count = passing
        else:
            # the share of the examined ranking that passed, applied to the whole (an estimate)
            count = max(len(kept), round(result.count * passing / max(len(result.pmids), 1)))
            if len(kept) < limit:
                warnings.append(
                    f"study filter: {passing} of the top {len(result.pmids):,} records are {studies.label};"
                    " deeper ones were not examined"
                )
        return SearchResult(
            result.query,
            [result.pmids[i] for i in kept],
            count,
            f"{result.translation} [study filter: {studies.label}]",
            warnings,
            [result.scores[i] for i in kept] if result.scores else [],
            result.mode,
            left_out,
        )

    def _search(self, query: str, limit: int, dates: DateRange | None) -> SearchResult:
        tr = translate(query)  # never raises: text that is not PubMed syntax is searched as words
        warnings = self._warnings + tr.warnings
        if self.mode == "bm25":
            pmids, scores, count = self._lexical.search(tr, limit, dates)
            return SearchResult(query, [str(p) for p in pmids], count, tr.text, warnings, scores, self.mode_label)
        depth = max(limit, self.fusion_depth) if self.mode == "hybrid" else limit
        found = self._dense_search(query, depth, dates)
        if isinstance(found, str):  # auto mode, and the dense index failed: BM25 alone, and say so
            pmids, scores, count = self._lexical.search(tr, limit, dates)
            return SearchResult(query, [str(p) for p in pmids], count, tr.text, [*warnings, found], scores, "bm25")
        dense_ids, dense_scores = found
        warnings = warnings + self._dense.warnings()
        if self.mode == "dense":
            dense_pmids = [str(p) for p in dense_ids]
            return SearchResult(query, dense_pmids, len(dense_ids), "dense", warnings, dense_scores, self.mode_label)
        bm_ids, bm_scores, count = self._lexical.search(tr, depth, dates)
        fused, scores = fuse_hybrid((bm_ids, bm_scores), (dense_ids, dense_scores), limit, fusion=self.fusion,
                                    depth=depth, k=self.fusion_k)  # fmt: skip
        translation = f"hybrid ({self.fusion} fusion): {tr.text} + dense"
        pmids = [str(p) for p in fused]
        return SearchResult(query, pmids, max(count, len(fused)), translation, warnings, scores, self.mode_label)

    def _dense_search(self, query: str, depth: int, dates: DateRange | None) -> tuple[list[int], list[float]] | str:
        """The dense ranking; where ``auto`` chose hybrid and it fails (a vector file damaged since the
        corpus was opened), the warning to search with BM25 instead. An explicit dense or hybrid mode
        raises ``CorpusError`` (one line)."""
        try:
            with self.engine.records() as store:
                return self._dense.search(query, depth, store, dates)
        except (ClinfoError, OSError, ValueError, RuntimeError) as exc:
            if self.requested_mode != "auto":
                if isinstance(exc, ClinfoError):
                    raise
                raise CorpusError(f"dense search over {self.path} failed: {one_line(exc)}") from None
            return f"search mode auto: dense search failed ({one_line(exc)}); searching with BM25 only"
