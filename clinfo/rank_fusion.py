"""Reciprocal rank fusion (Cormack et al. 2009): rankings fused by ranks alone.

The pipeline fuses the rankings of several PubMed queries with it (a source may give no scores,
and scores of different queries are not comparable); the local corpus uses it for BM25 + dense
when asked (``clinfo.corpus.hybrid``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

__all__ = ["RRF_K", "fuse", "rrf", "rrf_scores"]

T = TypeVar("T", bound=Hashable)

RRF_K = 60  # the constant of Cormack et al.; MedRAG's RRF over BM25 + MedCPT used it too


def rrf(rankings: Iterable[Sequence[T]], k: int = RRF_K) -> list[T]:
    """Reciprocal rank fusion: ties keep first-seen order, so output is deterministic."""
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank + 1)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores, key=lambda item: (-scores[item], order[item]))


def rrf_scores(rankings: Sequence[Sequence[T]], items: Sequence[T], k: int = RRF_K) -> list[float]:
    """The fused score of each item (what ``rrf`` sorted by)."""
    positions = [{item: i for i, item in enumerate(r)} for r in rankings]
    return [sum(1.0 / (k + pos[item] + 1) for pos in positions if item in pos) for item in items]


def fuse(rankings: Sequence[Sequence[T]], limit: int, k: int = RRF_K) -> tuple[list[T], list[float]]:
    """Top ``limit`` of the fused rankings with their RRF scores."""
    fused = rrf(rankings, k)[:limit]
    return fused, rrf_scores(rankings, fused, k)
