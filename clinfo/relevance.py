"""Relevance decided without a model: how much of the question a record covers.

A record's coverage is the IDF-weighted share of the question's content terms (stems) found in
its title, abstract and MeSH headings. The IDF comes from a fixed background (``clinfo.terms``),
so the score is absolute: the same question and record score the same whatever else was
retrieved, and one threshold holds across questions. A record is relevant when its coverage
reaches ``min_coverage`` and lies within ``margin`` of the best candidate's; the margin keeps
records that match only part of the question out of an answer that has closer matches.

Calibrated in ``benchmarks/offline_evidence.py`` on PubMedQA questions whose source abstract is
in the corpus, the same questions with it removed, and PubMedRS-200 questions (topics the demo
corpus lacks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from clinfo.models import Article
from clinfo.terms import Background, background, content_terms, question_terms

MIN_COVERAGE = 0.7
MARGIN = 0.15


@dataclass(frozen=True)
class Verdict:
    relevant: bool
    coverage: float  # 0..1
    matched: tuple[str, ...]  # question terms (stems) found in the record
    missing: tuple[str, ...]  # question terms not found
    outmatched: bool = False  # enough coverage, but another candidate covers the question much better

    @property
    def reason(self) -> str:
        found = len(self.matched)
        total = found + len(self.missing)
        text = f"contains {found} of the question's {total} terms (IDF-weighted coverage {self.coverage:.2f})"
        if self.missing:
            text += f"; missing: {', '.join(self.missing)}"
        if self.outmatched:
            text += "; other candidates cover the question clearly better"
        return text


def record_text(article: Article) -> str:
    return " ".join([article.title, *(s.text for s in article.abstract_sections), *article.mesh])


def coverage(question: str, article: Article, bg: Background | None = None) -> tuple[float, tuple[str, ...], tuple[str, ...]]:
    """(coverage, matched terms, missing terms) of ``article`` for ``question``."""
    bg = bg or background()
    terms = question_terms(question)
    if not terms:
        return 0.0, (), ()
    weights = bg.weights(terms)
    present = set(content_terms(record_text(article)))
    matched = tuple(t for t in terms if t in present)
    missing = tuple(t for t in terms if t not in present)
    share = sum(weights[t] for t in matched) / sum(weights.values())
    return round(share, 4), matched, missing


def judge(
    question: str,
    articles: Sequence[Article],
    *,
    min_coverage: float = MIN_COVERAGE,
    margin: float = MARGIN,
    bg: Background | None = None,
) -> list[Verdict]:
    """One verdict per article, in the order given."""
    bg = bg or background()
    scored = [coverage(question, a, bg) for a in articles]
    best = max((c for c, _, _ in scored), default=0.0)
    return [
        Verdict(relevant=c >= min_coverage and c >= best - margin, coverage=c, matched=m, missing=x, outmatched=c >= min_coverage and c < best - margin)
        for c, m, x in scored
    ]
