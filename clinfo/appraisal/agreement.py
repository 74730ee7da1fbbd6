"""Agreement: for a yes/no question, whether each relevant article's finding says yes or no, tallied
by study design.

The screening LLM classes each article's finding (one more field of its reply, read tolerantly by
:func:`parse_stance`); code tallies the stances by the design and level that
:mod:`clinfo.appraisal.design` decided, names the strongest design on either side (the TL;DR's
hedge follows it) and says whether the evidence disagrees (the synthesis must then say so).
Where relevance came from retrieval scores, no model read the findings: every stance is
"not judged", and the tally says so rather than showing zeros.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from clinfo.appraisal.design import DESIGNS, Design, DesignKind

if TYPE_CHECKING:
    from clinfo.models import ArticleSummary

Stance = Literal["supporting", "contradicting", "mixed", "not answering", "not judged"]
STANCES: tuple[Stance, ...] = Stance.__args__  # type: ignore[attr-defined]
# what the screening LLM may answer ("not judged" is code's, never the model's)
JUDGED_STANCES: tuple[Stance, ...] = STANCES[:-1]
# the sides of a yes/no question: the strongest design among them sets the TL;DR's hedge
ANSWERING: tuple[Stance, ...] = ("supporting", "contradicting")

# what models write instead of the four words asked for
_SYNONYMS: dict[str, Stance] = {
    **{w: "supporting" for w in ("support", "supports", "supportive", "yes", "for", "positive", "agrees", "confirms")},
    **{
        w: "contradicting"
        for w in ("contradict", "contradicts", "contradictory", "against", "no", "refutes", "opposes", "negative")
    },
    **{w: "mixed" for w in ("mixed", "partly", "partial", "partially", "both", "conflicting", "equivocal")},
    **{
        w: "not answering"
        for w in (
            "not answering",
            "not answered",
            "no answer",
            "does not answer",
            "doesn't answer",
            "neither",
            "neutral",
            "unclear",
            "inconclusive",
            "not applicable",
            "n/a",
            "na",
            "none",
            "not relevant",
            "irrelevant",
        )
    },
}
_NOISE = re.compile(r"[^a-z/' ]+")

# design kind -> (one, several), for the tally's line
_NOUNS: dict[str, tuple[str, str]] = {
    "meta-analysis": ("meta-analysis", "meta-analyses"),
    "systematic review": ("systematic review", "systematic reviews"),
    "randomised trial": ("randomised trial", "randomised trials"),
    "non-randomised trial": ("non-randomised trial", "non-randomised trials"),
    "cohort": ("cohort study", "cohort studies"),
    "case-control": ("case-control study", "case-control studies"),
    "cross-sectional": ("cross-sectional study", "cross-sectional studies"),
    "case report/series": ("case report/series", "case reports/series"),
    "narrative review": ("narrative review", "narrative reviews"),
    "guideline": ("guideline", "guidelines"),
    "animal/in-vitro": ("animal/in-vitro study", "animal/in-vitro studies"),
    "other": ("other design", "other designs"),
}
# stance -> (verb for one, verb for several)
_VERBS: dict[str, tuple[str, str]] = {
    "supporting": ("supports", "support"),
    "contradicting": ("contradicts", "contradict"),
    "mixed": ("mixed", "mixed"),
    "not answering": ("does not answer it either way", "do not answer it either way"),
    "not judged": ("without a stance from the model", "without a stance from the model"),
}

NOT_JUDGED = (
    "not judged: relevance was decided from retrieval scores, not by a language model, so no article's finding"
    " was classed as supporting or contradicting"
)


def parse_stance(value: Any) -> Stance | None:
    """The stance a screening reply gave, read tolerantly ("Supports", "contradict", "N/A", "mixed
    findings"); None when the reply gave none or nothing recognisable. Never "not judged": that is
    code's verdict, not the model's."""
    if not isinstance(value, str):
        return None
    text = " ".join(_NOISE.sub(" ", value.lower().replace("_", " ").replace("-", " ")).split())
    if not text:
        return None
    if text in JUDGED_STANCES:
        return text  # type: ignore[return-value]
    if text in _SYNONYMS:
        return _SYNONYMS[text]
    for stance in JUDGED_STANCES:  # "supporting (the trial found ...)", "mixed findings"
        if text.startswith(stance):
            return stance
    first = text.split()[0]
    return _SYNONYMS.get(first) if first not in ("not", "no") else _SYNONYMS.get(" ".join(text.split()[:2]))


def design_order(design: Design) -> tuple[int, int]:
    """Sort key, strongest design first: by level (ungraded last), then in the order of DESIGNS."""
    return (design.level if design.level is not None else 99, DESIGNS.index(design.kind))


def design_phrase(kind: DesignKind, level: int | None) -> str:
    """A design in words with its level: "randomised trial (level 2 of 5, 1 strongest)", "guideline (not graded)"."""
    if level is None:
        return f"{_NOUNS[kind][0]} (not graded)"
    return f"{_NOUNS[kind][0]} (level {level} of 5, 1 strongest)"


class AgreementCell(BaseModel):
    """How many relevant articles of one design took one stance, and which."""

    stance: Stance
    design: DesignKind
    level: int | None = None
    count: int = 0
    pmids: list[str] = Field(default_factory=list)


class Agreement(BaseModel):
    """The tally of stances on a yes/no question, by design and level of evidence."""

    judged: bool = True  # False: relevance from retrieval scores; every stance is "not judged"
    counts: dict[Stance, int] = Field(default_factory=lambda: dict.fromkeys(STANCES, 0))
    cells: list[AgreementCell] = Field(default_factory=list)  # by stance, strongest design first
    # the strongest design among the supporting and contradicting articles (None: none took a side)
    strongest_design: DesignKind | None = None
    strongest_level: int | None = None
    disagreement: bool = False  # articles on both sides, or an article with mixed findings
    summary: str = ""

    def designs(self, stance: Stance) -> list[AgreementCell]:
        return [c for c in self.cells if c.stance == stance]


def _side(stance: Stance, cells: list[AgreementCell]) -> str:
    count = sum(c.count for c in cells)
    verb = _VERBS[stance][0 if count == 1 else 1]
    detail = ", ".join(f"{c.count} {_NOUNS[c.design][0 if c.count == 1 else 1]}" for c in cells)
    return f"{count} {verb} ({detail})"


def _summary(agreement: Agreement) -> str:
    if not agreement.judged:
        return NOT_JUDGED
    parts = [_side(s, agreement.designs(s)) for s in STANCES if agreement.counts.get(s)]
    if not parts:
        return "no relevant article"
    if agreement.counts.get("not answering") and not any(
        agreement.counts.get(s) for s in ("supporting", "contradicting", "mixed")
    ):
        return "none supports or contradicts it: " + ", ".join(parts)
    return ", ".join(parts)


def tally(summaries: Sequence[ArticleSummary], *, judged: bool = True) -> Agreement:
    """The stances of ``summaries`` (the relevant articles) counted by design. A summary without
    a stance counts as "not judged"; ``judged=False`` (retrieval-only relevance) makes them all so."""
    groups: dict[tuple[Stance, DesignKind], list[str]] = {}
    designs: dict[DesignKind, Design] = {}
    sided: list[Design] = []
    for s in summaries:
        stance: Stance = (s.stance or "not judged") if judged else "not judged"
        design = s.article.design
        designs.setdefault(design.kind, design)
        groups.setdefault((stance, design.kind), []).append(s.pmid)
        if stance in ANSWERING:
            sided.append(design)
    cells = [
        AgreementCell(stance=stance, design=kind, level=designs[kind].level, count=len(pmids), pmids=pmids)
        for (stance, kind), pmids in sorted(
            groups.items(), key=lambda item: (STANCES.index(item[0][0]), design_order(designs[item[0][1]]))
        )
    ]
    counts = dict.fromkeys(STANCES, 0)
    for cell in cells:
        counts[cell.stance] += cell.count
    strongest = min(sided, key=design_order) if sided else None
    agreement = Agreement(
        judged=judged,
        counts=counts,
        cells=cells,
        strongest_design=strongest.kind if strongest else None,
        strongest_level=strongest.level if strongest else None,
        disagreement=bool(counts["supporting"] and counts["contradicting"]) or bool(counts["mixed"]),
    )
    agreement.summary = _summary(agreement)
    return agreement
