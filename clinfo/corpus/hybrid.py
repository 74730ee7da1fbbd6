"""Fusion of rankings and the choice of search mode (bm25, dense, hybrid, auto).

Two fusions are used. Reciprocal rank fusion (:mod:`clinfo.rank_fusion`) uses ranks only: the pipeline
fuses the rankings of several PubMed queries with it (a source may give no scores, and scores of
different queries are not comparable). Score fusion (``score_fuse``: a weighted sum of each
ranking's normalised scores) fuses the BM25 and dense rankings of one question in the local
source, where both rankers give scores; it is the default there (``FUSIONS``, ``DEFAULT_FUSION``)
because it ranked better than RRF on every ranking set measured (see ``CONFIDENCE_PRIOR_BM25``).

``auto`` means hybrid wherever the corpus has vectors and the query encoder loads, else BM25: it
is the best mode measured, and it costs nothing where there are no vectors. Nothing heavy is
imported by this module; the dense index is loaded only when a mode needs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from clinfo.errors import ClinfoError, ConfigError
from clinfo.rank_fusion import fuse

if TYPE_CHECKING:
    from clinfo.corpus.dense import DenseIndex

__all__ = [
    "MODES", "SearchMode", "FUSIONS", "Fusion", "DEFAULT_FUSION", "HYBRID_K", "FUSION_DEPTH",
    "CONFIDENCE_PRIOR_BM25", "CONFIDENCE_RANK", "normalise",
    "score_fuse", "confidence", "confidence_weight", "fuse_hybrid", "ModeChoice",
    "choose_mode", "describe", "label",
]  # fmt: skip

T = TypeVar("T", bound=Hashable)

SearchMode = Literal["auto", "bm25", "dense", "hybrid"]
MODES: tuple[str, ...] = ("auto", "bm25", "dense", "hybrid")
# k for BM25 + dense of one question (LocalSource hybrid): a smaller k lets the head of either
# ranking decide. benchmarks/retrieval_quality.py --tune (5 ranking sets, 14.5k articles with
# vectors, depth 100), mean nDCG@10 of the tune halves 0.896 (k=60) -> 0.901 (k=10); check halves
# up on 4 sets (pqa-hard 0.639 -> 0.648, nlm-conclusion 0.976 -> 0.981, rs200 0.938 -> 0.942),
# pqa-conclusion 0.979 -> 0.976, pqa equal. Depth 100 vs 200/300: no difference.
HYBRID_K = 10
# Candidates each ranker contributes before fusion: deep enough that a document ranked well by
# one ranker and moderately by the other can surface.
FUSION_DEPTH = 100

Fusion = Literal["rrf", "score"]
FUSIONS: tuple[str, ...] = ("score", "rrf")
DEFAULT_FUSION: Fusion = "score"
# Score fusion: the weighted sum of BM25's and dense's normalised scores. A fixed share for BM25,
# chosen on the tune halves of the five ranking sets over the full ranking corpus (34,481 articles,
# all embedded; benchmarks/retrieval_quality.py --tune): mean nDCG@10 0.876 for RRF k=10 -> 0.896
# (0.2, depth 100; 0.1/0.3/0.4: 0.886/0.893/0.887); check halves 0.878 -> 0.895. Depth 300 reached
# 0.900 on the tune halves but not more on the check halves: FUSION_DEPTH stays 100.
# Confidence weighting (the default) improves on the fixed share: each ranking's share grows with how
# far its head stands above its CONFIDENCE_RANK-th result (confidence = 1 - that result's normalised
# score), so BM25 counts more where one document matches the words almost verbatim and dense more
# where BM25's head is flat. One grid of 48 variants (rank 2/3/5/10, power 0.5/1, prior 0.05-0.4) was
# chosen on the tune halves (0.896 -> 0.900); check halves 0.8955 -> 0.9031, at or above the fixed
# share on all five sets: pqa 0.961 -> 0.961, pqa-hard 0.615 -> 0.634, pqa-conclusion 0.973 -> 0.975,
# nlm-conclusion 0.961 -> 0.972 (BM25 alone 0.973), rs200 0.968 -> 0.974.
CONFIDENCE_PRIOR_BM25 = 0.1
CONFIDENCE_RANK = 5


def normalise(scores: Sequence[float], depth: int) -> list[float]:
    """Scores of one ranking (best first, its top ``depth`` at most) divided by its top score, in [0, 1].

    Zero is each ranker's own floor: BM25 scores a document that matches no word 0, and a cosine of 0
    means nothing in common, so a document the ranking did not return (counted 0 in ``score_fuse``)
    never outranks one it did. Min-max over the fused depth and z-scores ranked as well
    (``benchmarks/retrieval_quality.py --tune``, full ranking corpus, depth 100, each at its best
    weight, mean tune nDCG@10: z-score 0.897, max 0.896, min-max 0.895; check halves 0.897, 0.895,
    0.891), so the choice rests on the degenerate rankings, where max scaling needs no rule of its
    own: one document, or a top score of 0 or below (a filter-only query scores every match 0), map
    to 1 (a tie at the top), and negative cosines to 0. Min-max has no spread to divide by there
    and z-scores give a lone match 0, the weight of a document never found.
    """
    sc = list(scores[:depth])
    if not sc:
        return []
    hi = max(sc)
    if hi <= 0.0:
        return [1.0] * len(sc)
    return [max(x, 0.0) / hi for x in sc]


def score_fuse(
    runs: Sequence[tuple[Sequence[T], Sequence[float]]],
    weights: Sequence[float],
    limit: int,
    depth: int = FUSION_DEPTH,
) -> tuple[list[T], list[float]]:
    """Top ``limit`` of the weighted sum of each ranking's ``normalise``d scores, with those sums.

    A document a ranking did not return gets 0 from it. A ranking without scores (an empty scores
    list beside its items) counts by rank. Ties keep first-seen order
    (first ranking first), so output is deterministic.
    """
    if len(weights) != len(runs):
        raise ValueError(f"{len(runs)} rankings but {len(weights)} weights")
    fused: dict[T, float] = {}
    for (items, scores), w in zip(runs, weights):
        items = list(items[:depth])
        if len(scores) < len(items):  # no scores: linear in rank, 1 for the first down to 1/len for the last
            scores = [float(len(items) - i) for i in range(len(items))]
        for item, x in zip(items, normalise(scores, depth)):
            fused[item] = fused.get(item, 0.0) + w * x
    order = {item: i for i, item in enumerate(fused)}
    best = sorted(fused, key=lambda item: (-fused[item], order[item]))[:limit]
    return best, [fused[item] for item in best]


def confidence(scores: Sequence[float], depth: int = FUSION_DEPTH, rank: int = CONFIDENCE_RANK) -> float:
    """How far a ranking's head stands out: 1 - the ``rank``-th ``normalise``d score (1 if shorter, 0 if empty)."""
    norm = normalise(scores, depth)
    if not norm:
        return 0.0
    return 1.0 - (norm[rank - 1] if len(norm) >= rank else 0.0)


def confidence_weight(
    bm25_scores: Sequence[float], dense_scores: Sequence[float], prior: float = CONFIDENCE_PRIOR_BM25
) -> float:
    """BM25's share of the score fusion of one question, from each ranking's ``confidence``."""
    cb, cd = confidence(bm25_scores), confidence(dense_scores)
    denominator = prior * cb + (1.0 - prior) * cd
    return prior if denominator <= 0.0 else prior * cb / denominator


def fuse_hybrid(
    bm25: tuple[Sequence[T], Sequence[float]],
    dense: tuple[Sequence[T], Sequence[float]],
    limit: int,
    *,
    fusion: str = DEFAULT_FUSION,
    depth: int = FUSION_DEPTH,
    k: int = HYBRID_K,
    weight_bm25: float | None = None,
) -> tuple[list[T], list[float]]:
    """The BM25 and dense rankings of one question fused as ``fusion`` says (``score`` or ``rrf``).

    Score fusion weighs BM25 by ``weight_bm25`` when given, else by ``confidence_weight``.
    """
    if fusion == "score":
        w = confidence_weight(bm25[1], dense[1]) if weight_bm25 is None else weight_bm25
        return score_fuse([bm25, dense], [w, 1.0 - w], limit, depth)
    if fusion == "rrf":
        return fuse([list(bm25[0][:depth]), list(dense[0][:depth])], limit, k)
    raise ConfigError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")


@dataclass
class ModeChoice:
    """The mode a corpus search runs in, the dense index it needs, and what the user should know."""

    mode: Literal["bm25", "dense", "hybrid"]
    dense: DenseIndex | None = None
    notes: list[str] = field(default_factory=list)
    fusion: str = DEFAULT_FUSION  # how hybrid fuses BM25 and dense; meaningless in the other modes


def choose_mode(
    mode: str,
    db_path: str | os.PathLike[str],
    *,
    model: str | None = None,
    query_model: str | None = None,
    fusion: str = DEFAULT_FUSION,
    open_dense: Callable[[], DenseIndex] | None = None,
) -> ModeChoice:
    """Resolve ``mode`` for one corpus. ``dense``/``hybrid`` fail (one line) without vectors or an
    encoder, or when a vector file is missing or corrupt; ``auto`` falls back to BM25 then, with a
    note when vectors exist but cannot be used. ``open_dense`` opens the dense index (default:
    ``DenseIndex.open``; a shared corpus engine passes the one it keeps)."""
    if mode not in MODES:
        raise ConfigError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    if fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
    if mode == "bm25":
        return ModeChoice("bm25", fusion=fusion)
    from clinfo.corpus import dense

    if open_dense is None:

        def open_dense() -> DenseIndex:
            return dense.DenseIndex.open(db_path, model, query_model=query_model)

    if mode in ("dense", "hybrid"):
        return ModeChoice(mode, open_dense(), fusion=fusion)  # type: ignore[arg-type]
    try:
        if not dense.has_vectors(db_path, model):
            return ModeChoice("bm25", fusion=fusion)
        index = open_dense()
    except ClinfoError as exc:
        note = f"search mode auto: dense vectors exist but cannot be used ({exc}); searching with BM25 only"
        return ModeChoice("bm25", None, [note], fusion=fusion)
    return ModeChoice("hybrid", index, fusion=fusion)


def describe(choice: ModeChoice) -> dict[str, Any]:
    """For traces and ``index info``: the effective mode, its fusion, and the vector set behind it."""
    out: dict[str, Any] = {"mode": choice.mode}
    if choice.mode == "hybrid":
        out["fusion"] = choice.fusion
    if choice.dense is not None:
        d = choice.dense
        out.update(model=d.model, query_model=d.query_model, vectors=d.count, index=d.vindex.info.kind)
    return out


def label(choice: ModeChoice) -> str:
    """The effective mode in a few words, as traces show it: ``bm25``, ``dense``, ``hybrid (score fusion)``."""
    return f"hybrid ({choice.fusion} fusion)" if choice.mode == "hybrid" else choice.mode
