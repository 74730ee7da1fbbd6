"""Relevance decided without a generative model, from two retrieval signals:

- coverage: the IDF-weighted share of the question's content terms (stems) found in a record's
  title, abstract and MeSH headings. The IDF comes from a fixed background (``clinfo.terms``);
- similarity: the cosine between the question and the record's title and abstract under
  all-MiniLM-L6-v2 (``clinfo.corpus.encoders``; torch-free with the ``[offline]`` extra), which
  sees paraphrases that share no word.

The score is their mean, or coverage alone where no encoder runtime is installed. Both signals
are functions of the question and the record only, with a fixed model and background, so the
score is absolute: the same whatever else was retrieved and whatever corpus answers, and one
threshold holds across questions. A record is relevant when its score reaches the threshold
and lies within ``MARGIN`` of the best candidate's; the margin keeps records that match only
part of the question out of an answer that has closer matches.

The thresholds are calibrated in ``benchmarks/offline_evidence.py`` on PubMedQA questions whose
source abstract is in the demo corpus, the same questions with it removed, and PubMedRS-200
questions whose references the demo corpus lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clinfo.errors import ConfigError
from clinfo.models import Article
from clinfo.terms import Background, background, content_terms, question_terms

# Calibrated thresholds for each set of signals (see the module docstring).
THRESHOLDS = {"coverage": 0.75, "coverage+similarity": 0.65}
MARGIN = 0.15
# The similarity model is fixed, whatever encoder the corpus's vectors use: the thresholds hold for its cosines only.
SIMILARITY_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Verdict:
    relevant: bool
    score: float  # 0..1, compared with the threshold
    coverage: float  # 0..1
    matched: tuple[str, ...]  # question terms (stems) found in the record
    missing: tuple[str, ...]  # question terms not found
    similarity: float | None = None  # cosine, when an encoder was available
    outmatched: bool = False  # above the threshold, but another candidate matches the question much better

    @property
    def reason(self) -> str:
        found = len(self.matched)
        total = found + len(self.missing)
        text = f"contains {found} of the question's {total} terms (weighted coverage {self.coverage:.2f})"
        if self.similarity is not None:
            text += f", similarity {self.similarity:.2f}, score {self.score:.2f}"
        if self.missing:
            text += f"; missing: {', '.join(self.missing)}"
        if self.outmatched:
            text += "; other candidates match the question clearly better"
        return text


def record_text(article: Article) -> str:
    return " ".join([article.title, *(s.text for s in article.abstract_sections)])


def coverage(
    question: str, article: Article, bg: Background | None = None
) -> tuple[float, tuple[str, ...], tuple[str, ...]]:
    """(coverage, matched terms, missing terms) of ``article`` for ``question``."""
    bg = bg or background()
    terms = question_terms(question)
    if not terms:
        return 0.0, (), ()
    weights = bg.weights(terms)
    present = set(content_terms(" ".join([record_text(article), *article.mesh])))
    matched = tuple(t for t in terms if t in present)
    missing = tuple(t for t in terms if t not in present)
    share = sum(weights[t] for t in matched) / sum(weights.values())
    return round(share, 4), matched, missing


def similarity_encoder() -> Any | None:
    """The encoder of SIMILARITY_MODEL, or None when no runtime for it is installed or it cannot load."""
    try:
        from clinfo.corpus.encoders import available_backends, get_encoder
    except ImportError:
        return None
    backends = available_backends(SIMILARITY_MODEL)
    if not backends:
        return None
    try:
        # onnx first: no torch import, and its int8 model is the faster on a CPU
        return get_encoder(SIMILARITY_MODEL, backend="onnx" if "onnx" in backends else "torch")
    except ConfigError:  # installed but unusable (a damaged model file): coverage still answers
        return None


def similarities(question: str, articles: Sequence[Article]) -> list[float] | None:
    """Cosine of ``question`` with each record under SIMILARITY_MODEL; None when no runtime for it
    is installed or the model cannot be loaded (then relevance rests on coverage alone)."""
    if not articles:
        return []
    encoder = similarity_encoder()
    if encoder is None:
        return None
    query = encoder.encode_queries([question])[0]
    docs = encoder.encode_documents([record_text(a) for a in articles])
    return [round(float(x), 4) for x in docs @ query]


def signals(with_similarity: bool) -> str:
    return "coverage+similarity" if with_similarity else "coverage"


def judge(
    question: str,
    articles: Sequence[Article],
    *,
    similarity: Sequence[float] | None = None,
    threshold: float | None = None,
    margin: float = MARGIN,
    bg: Background | None = None,
) -> list[Verdict]:
    """One verdict per article, in the order given. ``similarity`` (one cosine per article) joins
    coverage when given; ``threshold`` defaults to the calibrated one for the signals used."""
    bg = bg or background()
    if threshold is None:
        threshold = THRESHOLDS[signals(similarity is not None)]
    scored = []
    for i, article in enumerate(articles):
        share, matched, missing = coverage(question, article, bg)
        sim = None if similarity is None else float(similarity[i])
        value = share if sim is None else (share + max(0.0, sim)) / 2
        scored.append((round(value, 4), share, matched, missing, sim))
    best = max((s[0] for s in scored), default=0.0)
    return [
        Verdict(
            relevant=value >= threshold and value >= best - margin,
            score=value,
            coverage=share,
            matched=matched,
            missing=missing,
            similarity=sim,
            outmatched=value >= threshold and value < best - margin,
        )
        for value, share, matched, missing, sim in scored
    ]
