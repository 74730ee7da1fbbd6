"""Cheap ranking of fetched records: BM25 (the prefilter). Fusion lives in ``clinfo.corpus.hybrid``."""

from __future__ import annotations

from collections.abc import Sequence

from clinfo.terms import search_words


def bm25_rank(query: str, documents: Sequence[str]) -> list[int]:
    """Indices of ``documents`` best first by BM25 (Okapi) against ``query``; stable for ties."""
    if not documents:
        return []
    from rank_bm25 import BM25Okapi

    corpus = [search_words(d) or ["\u0000"] for d in documents]
    scores = BM25Okapi(corpus).get_scores(search_words(query))
    return sorted(range(len(documents)), key=lambda i: (-float(scores[i]), i))
