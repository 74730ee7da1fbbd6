"""``LocalSource``: the ``Source`` protocol over a local corpus (``clinfo.corpus``).

Search modes: ``bm25`` (SQLite FTS5, the PubMed query translated by ``clinfo.corpus.lexical_query``),
``dense`` (sentence-transformers + FAISS, ``clinfo.corpus.dense``, needs the ``[dense]`` extra and
``clinfo index embed``) and ``hybrid`` (reciprocal rank fusion of both).

SQLite work runs in worker threads (``asyncio.to_thread``) with one read-only connection per
thread, so concurrent searches neither block the event loop nor share a connection.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from clinfo.corpus.lexical import FtsIndex
from clinfo.corpus.lexical_query import translate
from clinfo.corpus.store import open_corpus
from clinfo.errors import ConfigError, CorpusError
from clinfo.sources.base import DateRange, SearchResult, SourceStats

if TYPE_CHECKING:
    from clinfo.models import Article

__all__ = ["LocalSource", "MODES"]

MODES = ("bm25", "dense", "hybrid")
Mode = Literal["bm25", "dense", "hybrid"]
# Candidates each ranker contributes before fusion: deep enough that a document ranked well by
# one ranker and moderately by the other can surface.
_FUSION_DEPTH = 100


class LocalSource:
    """PMIDs and records from a local SQLite corpus."""

    def __init__(self, path: str | os.PathLike[str], name: str = "local", mode: Mode = "bm25", model: str | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        self.path = Path(path)
        self.name = name
        self.mode = mode
        self.model = model
        self.stats = SourceStats()
        # Open once now so a missing or incompatible corpus fails at construction, not mid-run.
        open_corpus(self.path).close()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._dense: Any = None
        if mode != "bm25":
            from clinfo.corpus.dense import DenseIndex

            self._dense = DenseIndex.open(self.path, model=model)

    # ------------------------------------------------------------------ connections

    def _index(self) -> FtsIndex:
        index = getattr(self._local, "index", None)
        if index is None:
            conn = open_corpus(self.path, check_same_thread=False)
            with self._lock:
                self._conns.append(conn)
            index = self._local.index = FtsIndex(conn)
        return index

    def _guard(self, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except sqlite3.DatabaseError as exc:
            raise CorpusError(f"corpus {self.path} cannot be read: {' '.join(str(exc).split())}") from None

    @property
    def articles(self) -> int:
        """How many articles the corpus holds."""
        return self._guard(lambda: self._index().size)

    # ------------------------------------------------------------------ Source protocol

    def search_sync(self, query: str, *, limit: int = 20, dates: DateRange | None = None) -> SearchResult:
        """``search`` without the event loop (the CLI's ``--stdin`` loop, benchmarks)."""
        self.stats.requests += 1
        return self._guard(self._search, query, limit, dates)

    async def search(self, query: str, *, limit: int = 20, dates: DateRange | None = None) -> SearchResult:
        """PMIDs for a PubMed-syntax query or plain text, best first."""
        return await asyncio.to_thread(self.search_sync, query, limit=limit, dates=dates)

    def fetch_sync(self, pmids: Sequence[str]) -> list["Article"]:
        self.stats.requests += 1
        return self._guard(lambda: self._index().fetch(list(pmids)))

    async def fetch(self, pmids: Sequence[str]) -> list["Article"]:
        """Full records in the order asked; PMIDs the corpus lacks are left out."""
        return await asyncio.to_thread(self.fetch_sync, list(pmids))

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    # ------------------------------------------------------------------ ranking

    def _search(self, query: str, limit: int, dates: DateRange | None) -> SearchResult:
        fq = translate(query)  # QuerySyntaxError for malformed PubMed syntax, in every mode
        index = self._index()
        if self.mode == "bm25":
            pmids, scores, count, fq = index.search(fq, limit, dates)
            return SearchResult(query, [str(p) for p in pmids], count, fq.translation, list(fq.warnings), scores)
        depth = max(limit, _FUSION_DEPTH) if self.mode == "hybrid" else limit
        dense_ids, dense_scores = self._dense.search(query, depth, index, dates)
        warnings = list(fq.warnings) + self._dense.warnings()
        if self.mode == "dense":
            return SearchResult(query, [str(p) for p in dense_ids], len(dense_ids), "dense", warnings, dense_scores)
        from clinfo.rank import rrf

        bm_ids, _, count, fq = index.search(fq, depth, dates)
        fused = rrf([bm_ids, dense_ids])[:limit]
        scores = _rrf_scores([bm_ids, dense_ids], fused)
        return SearchResult(
            query, [str(p) for p in fused], max(count, len(fused)), f"hybrid: {fq.translation} + dense", warnings, scores
        )


def _rrf_scores(rankings: list[list[int]], items: list[int], k: int = 60) -> list[float]:
    positions = [{item: i for i, item in enumerate(r)} for r in rankings]
    return [sum(1.0 / (k + pos[item] + 1) for pos in positions if item in pos) for item in items]
