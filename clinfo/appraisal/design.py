"""Study design and level of evidence of an article, decided by code.

Where NLM has indexed the record, its publication types decide the design and the MeSH check
tags (Humans, Animals) decide whether it studied people; the strongest design named wins
(a record typed both "Randomized Controlled Trial" and "Multicenter Study" is a randomised
trial). New records carry only "Journal Article" until NLM indexes them; for those the title and
abstract decide (:mod:`clinfo.appraisal.design_text`).

Levels follow the spirit of the Oxford CEBM 2011 table for questions of treatment benefit:
1 systematic reviews and meta-analyses, 2 randomised trials, 3 non-randomised controlled studies
and cohorts, 4 case-control, cross-sectional and case series, 5 mechanism-based reasoning
(narrative reviews, animal and in-vitro work). Guidelines and anything else are not graded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

from pydantic import BaseModel

from clinfo.pubmed.vocabulary import ANIMALS, DESIGN_MESH, DESIGN_PUBLICATION_TYPES, HUMANS

if TYPE_CHECKING:
    from clinfo.models import Article

DesignKind = Literal[
    "meta-analysis",
    "systematic review",
    "randomised trial",
    "non-randomised trial",
    "cohort",
    "case-control",
    "cross-sectional",
    "case report/series",
    "narrative review",
    "guideline",
    "animal/in-vitro",
    "other",
]
DESIGNS: tuple[DesignKind, ...] = DesignKind.__args__  # type: ignore[attr-defined]

LEVELS: dict[str, int | None] = {
    "meta-analysis": 1,
    "systematic review": 1,
    "randomised trial": 2,
    "non-randomised trial": 3,
    "cohort": 3,
    "case-control": 4,
    "cross-sectional": 4,
    "case report/series": 4,
    "narrative review": 5,
    "animal/in-vitro": 5,
    "guideline": None,
    "other": None,
}

Basis = Literal["publication type", "MeSH", "title/abstract", "none"]


class Design(BaseModel):
    """An article's design, its level (1 strongest .. 5; None: not graded), what decided it, and
    whether it studied humans (MeSH check tags; None when NLM has not said)."""

    kind: DesignKind = "other"
    level: int | None = None
    basis: Basis = "none"
    human: bool | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}, level {self.level}" if self.level else f"{self.kind} (not graded)"


def _human(mesh: list[str]) -> bool | None:
    names = {m.split("/")[0].strip().casefold() for m in mesh}
    if HUMANS.casefold() in names:
        return True
    if ANIMALS.casefold() in names:
        return False
    return None


def _from_publication_types(types: list[str]) -> DesignKind | None:
    given = {t.strip().casefold() for t in types}
    return next((cast("DesignKind", kind) for name, kind in DESIGN_PUBLICATION_TYPES if name.casefold() in given), None)


def _from_mesh(mesh: list[str]) -> DesignKind | None:
    given = {m.split("/")[0].strip().casefold() for m in mesh}
    return next((cast("DesignKind", kind) for name, kind in DESIGN_MESH if name.casefold() in given), None)


def classify(article: Article, *, use_indexing: bool = True) -> Design:
    """``article``'s design. ``use_indexing=False`` ignores NLM's publication types and MeSH (the
    benchmark of the title/abstract path hides them this way).

    Precedence: a design publication type; for an observational study, the design its MeSH
    names (cross-sectional, case-control); a design MeSH term on a record with no design
    type; the title and abstract. Two exceptions read the text over the type: a record not yet
    indexed (no MeSH) carries the publisher's types, where "Review" also covers systematic
    reviews and meta-analyses and "Systematic Review" also meta-analyses (NLM adds those types
    at indexing), so the text may say which;
    and a primary study whose check tags say animals, not humans, is an animal study."""
    from clinfo.appraisal.design_text import ANY_SUBJECTS, design_from_text

    human = _human(article.mesh) if use_indexing else None
    kind: DesignKind | None = None
    basis: Basis = "none"
    if use_indexing:
        kind = _from_publication_types(article.publication_types)
        basis = "publication type"
        mesh_kind = _from_mesh(article.mesh)
        if kind is None and mesh_kind is not None:
            kind, basis = mesh_kind, "MeSH"
        elif kind == "cohort" and mesh_kind in ("cross-sectional", "case-control"):
            kind, basis = mesh_kind, "MeSH"
        elif kind in ("narrative review", "systematic review") and not article.mesh:
            stated = design_from_text(article.title, article.abstract)
            if LEVELS[stated or "other"] == 1 and stated != kind:
                kind, basis = stated, "title/abstract"
    if kind is None:
        kind = design_from_text(article.title, article.abstract)
        basis = "title/abstract"
    if kind is None:
        kind, basis = "other", "none"
    if human is False and kind not in ANY_SUBJECTS:
        kind = "animal/in-vitro"
    return Design(kind=kind, level=LEVELS[kind], basis=basis, human=human)
