"""Fusion of rankings and the choice of search mode (bm25, dense, hybrid, auto).

Reciprocal rank fusion (Cormack et al. 2009) has one home here: the local source fuses BM25 and
dense rankings with it, and the pipeline fuses the rankings of several PubMed queries.

``auto`` means hybrid wherever the corpus has vectors and the query encoder loads, else BM25: it
is the best mode measured, and it costs nothing where there are no vectors. Nothing heavy is
imported by this module; the dense index is loaded only when a mode needs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Literal, Sequence, TypeVar

from clinfo.errors import ClinfoError, ConfigError

if TYPE_CHECKING:
    from clinfo.corpus.dense import DenseIndex

__all__ = ["MODES", "SearchMode", "RRF_K", "HYBRID_K", "FUSION_DEPTH", "rrf", "rrf_scores", "fuse", "ModeChoice", "choose_mode"]

T = TypeVar("T", bound=Hashable)

SearchMode = Literal["auto", "bm25", "dense", "hybrid"]
MODES: tuple[str, ...] = ("auto", "bm25", "dense", "hybrid")
RRF_K = 60  # the constant of Cormack et al.; MedRAG's RRF over BM25 + MedCPT used it too
# k for BM25 + dense of one question (LocalSource hybrid): a smaller k lets the head of either
# ranking decide. benchmarks/retrieval_quality.py --tune (5 ranking sets, 14.5k articles with
# vectors, depth 100), mean nDCG@10 of the tune halves 0.896 (k=60) -> 0.901 (k=10); check halves
# up on 4 sets (pqa-hard 0.639 -> 0.648, nlm-conclusion 0.976 -> 0.981, rs200 0.938 -> 0.942),
# pqa-conclusion 0.979 -> 0.976, pqa equal. Depth 100 vs 200/300: no difference.
HYBRID_K = 10
# Candidates each ranker contributes before fusion: deep enough that a document ranked well by
# one ranker and moderately by the other can surface.
FUSION_DEPTH = 100


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


@dataclass
class ModeChoice:
    """The mode a corpus search runs in, the dense index it needs, and what the user should know."""

    mode: Literal["bm25", "dense", "hybrid"]
    dense: "DenseIndex | None" = None
    notes: list[str] = field(default_factory=list)


def choose_mode(
    mode: str,
    db_path: str | os.PathLike[str],
    *,
    model: str | None = None,
    query_model: str | None = None,
) -> ModeChoice:
    """Resolve ``mode`` for one corpus. ``dense``/``hybrid`` fail (one line) without vectors or an
    encoder; ``auto`` falls back to BM25 then, with a note when vectors exist but cannot be used."""
    if mode not in MODES:
        raise ConfigError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "bm25":
        return ModeChoice("bm25")
    from clinfo.corpus import dense

    if mode in ("dense", "hybrid"):
        return ModeChoice(mode, dense.DenseIndex.open(db_path, model, query_model=query_model))  # type: ignore[arg-type]
    if not dense.has_vectors(db_path, model):
        return ModeChoice("bm25")
    try:
        index = dense.DenseIndex.open(db_path, model, query_model=query_model)
    except ClinfoError as exc:
        return ModeChoice("bm25", None, [f"search mode auto: dense vectors exist but cannot be used ({exc}); searching with BM25 only"])
    return ModeChoice("hybrid", index)


def describe(choice: ModeChoice) -> dict[str, Any]:
    """For traces and ``index info``: the effective mode and the vector set behind it."""
    out: dict[str, Any] = {"mode": choice.mode}
    if choice.dense is not None:
        out.update(model=choice.dense.model, query_model=choice.dense.query_model, vectors=choice.dense.count, index=choice.dense.vindex.info.kind)
    return out
