"""``LocalSource``: the ``Source`` protocol over a local corpus (``clinfo.corpus``).

Search modes: ``bm25`` (the Tantivy lexical index, the PubMed query translated by ``clinfo.corpus.lexical_query``),
``dense`` (sentence-transformers + FAISS, ``clinfo.corpus.dense``, needs the ``[dense]`` extra and
``clinfo index embed``) and ``hybrid`` (reciprocal rank fusion of both).

Work runs in worker threads (``asyncio.to_thread``) with one read-only SQLite connection per
thread, so concurrent searches neither block the event loop nor share a connection; the lexical
index is one object shared by all threads (each query takes its own searcher).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from clinfo.corpus.lexical import LexicalIndex
from clinfo.corpus.lexical_query import translate
from clinfo.corpus.store import RecordStore
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
        self._local = threading.local()
        self._stores: list[RecordStore] = []
        self._lock = threading.Lock()
        # Open now so a missing or incompatible corpus fails at construction, not mid-run.
        store = self._store()
        self._warnings: list[str] = []
        pending = self._guard(store.pending)
        if pending:
            self._warnings.append(
                f"the lexical index lacks {pending:,} recent changes (an interrupted build); "
                f"re-run 'clinfo index build' with the same files to finish it"
            )
        self._lexical = LexicalIndex(self.path, store.meta("analyzer") or "")
        self._dense: Any = None
        if mode != "bm25":
            from clinfo.corpus.dense import DenseIndex

            self._dense = DenseIndex.open(self.path, model=model)

    # ------------------------------------------------------------------ connections

    def _store(self) -> RecordStore:
        store = getattr(self._local, "store", None)
        if store is None:
            store = RecordStore.open(self.path)
            with self._lock:
                self._stores.append(store)
            self._local.store = store
        return store

    def _guard(self, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except sqlite3.DatabaseError as exc:
            raise CorpusError(f"corpus {self.path} cannot be read: {' '.join(str(exc).split())}") from None

    @property
    def articles(self) -> int:
        """How many articles the corpus holds."""
        return self._guard(lambda: self._store().size)

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
        return self._guard(lambda: self._store().fetch(list(pmids)))

    async def fetch(self, pmids: Sequence[str]) -> list["Article"]:
        """Full records in the order asked; PMIDs the corpus lacks are left out."""
        return await asyncio.to_thread(self.fetch_sync, list(pmids))

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for store in self._stores:
                store.close()
            self._stores.clear()
        self._local = threading.local()

    # ------------------------------------------------------------------ ranking

    def _search(self, query: str, limit: int, dates: DateRange | None) -> SearchResult:
        tr = translate(query)  # never raises: text that is not PubMed syntax is searched as words
        warnings = self._warnings + tr.warnings
        if self.mode == "bm25":
            pmids, scores, count = self._lexical.search(tr, limit, dates)
            return SearchResult(query, [str(p) for p in pmids], count, tr.text, warnings, scores)
        store = self._store()
        depth = max(limit, _FUSION_DEPTH) if self.mode == "hybrid" else limit
        dense_ids, dense_scores = self._dense.search(query, depth, store, dates)
        warnings = warnings + self._dense.warnings()
        if self.mode == "dense":
            return SearchResult(query, [str(p) for p in dense_ids], len(dense_ids), "dense", warnings, dense_scores)
        from clinfo.rank import rrf

        bm_ids, _, count = self._lexical.search(tr, depth, dates)
        fused = rrf([bm_ids, dense_ids])[:limit]
        scores = _rrf_scores([bm_ids, dense_ids], fused)
        return SearchResult(query, [str(p) for p in fused], max(count, len(fused)), f"hybrid: {tr.text} + dense", warnings, scores)


def _rrf_scores(rankings: list[list[int]], items: list[int], k: int = 60) -> list[float]:
    positions = [{item: i for i, item in enumerate(r)} for r in rankings]
    return [sum(1.0 / (k + pos[item] + 1) for pos in positions if item in pos) for item in items]
