"""Typed records that cross module boundaries: articles, summaries, the answer and its trace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from clinfo.appraisal.agreement import Agreement, Stance
from clinfo.appraisal.design import Design
from clinfo.pubmed.record import PUBMED_URL, AbstractSection, Correction, PubmedRecord

# AbstractSection, PubmedRecord and Correction are PubMed's (clinfo.pubmed.record), named here too
__all__ = [
    "AbstractSection",
    "Answer",
    "Article",
    "ArticleSummary",
    "PubmedRecord",
    "ClaimCheck",
    "Correction",
    "PUBMED_URL",
    "QueryRecord",
    "Reference",
    "SetAside",
    "StepTiming",
    "StudyFilterNote",
    "Support",
    "Trace",
]


class Article(PubmedRecord):
    """A citation with what clinfo decides about it from the record alone."""

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def design(self) -> Design:
        """Study design and level of evidence, decided by code (:mod:`clinfo.appraisal.design`)."""
        from clinfo.appraisal.design import classify

        return classify(self)


class ArticleSummary(BaseModel):
    """The LLM's judgement of one article against the question."""

    article: Article
    relevant: bool
    score: int = Field(0, ge=0, le=10, description="relevance 0-10")
    reason: str = ""
    summary: str = ""
    design: str = ""
    sample_size: str = ""
    population: str = ""
    risk_of_bias: str = ""
    rank: int = 0  # position after the prefilter (0 = best); ties in score fall back to it
    # How ``relevant`` was decided: "llm" (the model's verdict, with ``score``) or "retrieval"
    # (retrieval scores; ``score`` is then not the model's). Readers show it instead of a bare score.
    relevance_source: Literal["llm", "retrieval"] = "llm"
    # The summary fields (design, sample_size, population, risk_of_bias, summary) the screening
    # asked for; None when unknown (answers saved before this field existed).
    fields_requested: list[str] | None = None
    # For a yes/no question, what the article's finding says (clinfo.appraisal.agreement); None when
    # the question is not yes/no. "not judged" where relevance came from retrieval scores.
    stance: Stance | None = None

    @property
    def pmid(self) -> str:
        return self.article.pmid


class Reference(BaseModel):
    n: int
    pmid: str
    citation: str
    url: str
    title: str = ""
    cited: bool = False  # whether the synthesis cites it (every listed article was given to the LLM)
    # notices NLM links to the article that do not remove it from the evidence: "expression of
    # concern (PMID 123)", "erratum (PMID 456)" (clinfo.appraisal.evidence_status.flags)
    flags: list[str] = Field(default_factory=list)
    # the article's design and level as decided by code (Article.design); None in answers saved before it
    design: Design | None = None


class SetAside(BaseModel):
    """A retrieved record that was neither screened nor cited because it is not evidence
    (clinfo.appraisal.evidence_status): ``kind`` "retracted" or the publication kind ("retraction
    notice", "letter", ...), ``reason`` in words, ``notices`` the PMIDs of the retraction notices
    (retracted work) or of the records a notice is about."""

    pmid: str
    title: str = ""
    kind: str
    reason: str
    notices: list[str] = Field(default_factory=list)


class Support(BaseModel):
    """How well one article supports one claim (:func:`clinfo.claims.support`): ``score`` 0..1,
    ``supported`` when it reaches the calibrated threshold, and the article's sentence that best
    matches the claim with its section label ("RESULTS"; "" in an unlabelled abstract)."""

    pmid: str = ""
    score: float = 0.0
    supported: bool = False
    sentence: str = ""
    label: str = ""
    # how it was scored: "quote" (the claim is the article's own sentence, quoted by code),
    # "coverage" (terms only: no encoder installed) or "coverage+similarity"
    signals: Literal["quote", "coverage", "coverage+similarity"] = "coverage"
    coverage: float = 0.0  # IDF-weighted share of the claim's terms found in the article
    similarity: float | None = None  # cosine of the claim and the best sentence, when an encoder ran


class ClaimCheck(BaseModel):
    """One sentence of the synthesis that cites ``[n]``, checked against the cited articles.

    ``start``/``end`` locate the sentence in ``Answer.synthesis``; ``supports`` holds one
    :class:`Support` per citation, in the order of ``citations``; ``supported`` when any of them is."""

    text: str
    start: int = 0
    end: int = 0
    citations: list[int] = Field(default_factory=list)
    supports: list[Support] = Field(default_factory=list)
    supported: bool = False
    score: float = 0.0  # the best of the supports' scores


class QueryRecord(BaseModel):
    query: str
    hits: int = 0
    note: str = ""  # "broadened after zero hits", "invalid: ..." and the like


class StepTiming(BaseModel):
    name: str
    seconds: float


class StudyFilterNote(BaseModel):
    """The study filter a question ran with (:mod:`clinfo.appraisal.filters`), so a reader knows the
    evidence was restricted: what it admitted, how the source applied it, and how many records it left out."""

    designs: list[str] = Field(default_factory=list)  # the designs admitted; empty: every design
    humans_only: bool = False
    label: str = ""  # "randomised trials or systematic reviews; human studies only"
    # what was added after each PubMed query ("AND (...) NOT (animals[mh] NOT humans[mh])"); "" where the
    # source filtered on each record's derived design itself (a local corpus)
    pubmed: str = ""
    # retrieved records whose design (decided by code) or species is outside the filter: never screened
    left_out: int = 0


class Trace(BaseModel):
    steps: list[StepTiming] = Field(default_factory=list)
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None once any call's price is unknown
    llm_cache_hits: int = 0
    source_cache_hits: int = 0
    source_requests: int = 0
    articles_found: int = 0
    articles_without_abstract: int = 0
    articles_set_aside: int = 0  # retrieved but not evidence (retracted, notices, letters...): Answer.set_aside
    articles_screened: int = 0
    invalid_citations_removed: int = 0
    invalid_queries: int = 0
    zero_hit_queries: int = 0
    unparseable_llm_outputs: int = 0
    claims_checked: int = 0  # synthesis sentences that cite [n], matched against the cited abstracts
    unsupported_claims: int = 0  # of those, the ones no cited abstract supports (after any recheck)
    claims_revised: int = 0  # sentences the recheck rewrote or dropped (Settings.claim_check = "recheck")
    # The ranking(s) the source ran, as its results named them ("bm25", "dense", "hybrid (score
    # fusion)"), in order first seen; empty where the source has no choice of ranking (PubMed).
    search_modes: list[str] = Field(default_factory=list)
    study_filter: StudyFilterNote | None = None  # None: no design or species filter
    warnings: list[str] = Field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


# Upstream Clinfo.ai returned a dict; these keys keep its users' code working.
_UPSTREAM_KEYS = {
    "synthesis": lambda a: a.synthesis,
    "tldr": lambda a: a.tldr,
    "article_summaries": lambda a: [s.model_dump() for s in a.article_summaries],
    "irrelevant_articles": lambda a: [s.model_dump() for s in a.irrelevant_articles],
    "queries": lambda a: [q.query for q in a.queries],
    "references": lambda a: [r.model_dump() for r in a.references],
    "question": lambda a: a.question,
}


class Answer(BaseModel):
    question: str
    queries: list[QueryRecord] = Field(default_factory=list)
    synthesis: str = ""
    tldr: str = ""
    references: list[Reference] = Field(default_factory=list)
    article_summaries: list[ArticleSummary] = Field(default_factory=list)
    irrelevant_articles: list[ArticleSummary] = Field(default_factory=list)
    # retrieved records that are not evidence, with why: never screened, never cited
    set_aside: list[SetAside] = Field(default_factory=list)
    no_evidence: bool = False
    # For a yes/no question with relevant evidence: the stances tallied by design; None otherwise.
    agreement: Agreement | None = None
    # Each synthesis sentence that cites [n], with the cited abstracts' best sentences (Settings.claim_check)
    claims: list[ClaimCheck] = Field(default_factory=list)
    llm: str = ""
    source: str = ""
    trace: Trace = Field(default_factory=Trace)

    # dict-like access, as upstream's ``forward()`` returned a dict
    def __getitem__(self, key: str) -> Any:
        try:
            return _UPSTREAM_KEYS[key](self)
        except KeyError:
            raise KeyError(f"{key!r} (available: {', '.join(_UPSTREAM_KEYS)})") from None

    def keys(self) -> Iterator[str]:
        return iter(_UPSTREAM_KEYS)

    def __contains__(self, key: object) -> bool:
        return key in _UPSTREAM_KEYS

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Answer:
        return cls.model_validate(json.loads(text))

    def to_markdown(self) -> str:
        from clinfo.render import answer_markdown

        return answer_markdown(self)
