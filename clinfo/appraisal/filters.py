"""Study filters a clinician uses: only some designs (e.g. trials and systematic reviews), only human studies.

One :class:`StudyFilter` is applied twice, for two reasons:

* **at the source**, so the search spends its results on admissible records. Live PubMed gets
  PubMed's own syntax ANDed to each query (:meth:`StudyFilter.apply`): the publication types
  and MeSH headings that :mod:`clinfo.appraisal.design` maps to each chosen design, OR-ed with
  title/abstract words in the spirit of PubMed Clinical Queries (``randomized[tiab]``,
  ``randomly[tiab]``, ``"systematic review"[tiab]``, ``meta-analysis[tiab]`` ...), so that a trial
  NLM has not indexed yet (new records carry only "Journal Article") is not lost; human studies
  through the standard sensitive form ``NOT (animals[mh] NOT humans[mh])``, which keeps records
  without check tags. A local corpus filters on each record's derived design instead, searching
  deeper until enough records pass.
* **after fetch, on the derived design** (``Article.design``, decided by code): a text word
  over-matches (``randomly`` selected participants of a cohort), so a record whose design is
  outside the filter is never screened; the answer counts how many were left out.

Human studies: a record passes unless its MeSH check tags say animals without humans
(``Design.human is False``) or its design is ``animal/in-vitro``; a record NLM has not tagged
(``human is None``) passes, as it does in PubMed's sensitive form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clinfo.appraisal.design import DESIGNS, DesignKind
from clinfo.pubmed.vocabulary import DESIGN_MESH, DESIGN_PUBLICATION_TYPES, HUMANS_ONLY

if TYPE_CHECKING:
    from clinfo.models import Article

__all__ = [
    "DESIGN_GROUPS",
    "TEXT_TERMS",
    "StudyFilter",
    "design_kinds",
    "design_slug",
]

# Named sets of designs, for the command line and the app.
DESIGN_GROUPS: dict[str, tuple[DesignKind, ...]] = {
    "trials-and-reviews": ("meta-analysis", "systematic review", "randomised trial"),
    "reviews": ("meta-analysis", "systematic review"),
    "trials": ("randomised trial", "non-randomised trial"),
    "observational": ("cohort", "case-control", "cross-sectional"),
}

# Title/abstract words that state a design, in PubMed syntax (Clinical Queries / Cochrane
# sensitive-search style): they catch records NLM has not indexed yet. Over-matching is cheap,
# the derived design is checked after fetch.
TEXT_TERMS: dict[str, tuple[str, ...]] = {
    "meta-analysis": ("meta-analysis[tiab]", "meta-analyses[tiab]", "metaanalysis[tiab]"),
    "systematic review": ('"systematic review"[tiab]', '"systematic literature review"[tiab]'),
    "randomised trial": ("randomized[tiab]", "randomised[tiab]", "randomly[tiab]"),
    "non-randomised trial": (
        '"clinical trial"[tiab]',
        "non-randomized[tiab]",
        "nonrandomized[tiab]",
        "non-randomised[tiab]",
        "single-arm[tiab]",
        "open-label[tiab]",
    ),
    "cohort": ("cohort[tiab]", "prospective[tiab]", "retrospective[tiab]", "longitudinal[tiab]"),
    "case-control": ("case-control[tiab]", '"case control"[tiab]'),
    "cross-sectional": ("cross-sectional[tiab]", '"cross sectional"[tiab]'),
    "case report/series": ('"case report"[tiab]', '"case series"[tiab]'),
    "narrative review": ("review[ti]",),
    "guideline": ("guideline[ti]", "guidelines[ti]", '"consensus statement"[tiab]', "recommendations[ti]"),
    "animal/in-vitro": ("animals[mh]", '"in vitro"[tiab]', "mice[tiab]", "rats[tiab]"),
}

_PLURAL: dict[str, str] = {
    "meta-analysis": "meta-analyses",
    "systematic review": "systematic reviews",
    "randomised trial": "randomised trials",
    "non-randomised trial": "non-randomised trials",
    "cohort": "cohort studies",
    "case-control": "case-control studies",
    "cross-sectional": "cross-sectional studies",
    "case report/series": "case reports and series",
    "narrative review": "narrative reviews",
    "guideline": "guidelines",
    "animal/in-vitro": "animal and in-vitro studies",
    "other": "other designs",
}
_ALIASES: dict[str, DesignKind] = {
    "rct": "randomised trial",
    "rcts": "randomised trial",
    "meta-analyses": "meta-analysis",
    "systematic-reviews": "systematic review",
    "randomised-trials": "randomised trial",
    "cohort-study": "cohort",
    "case-report": "case report/series",
    "case-reports": "case report/series",
    "case-series": "case report/series",
    "guidelines": "guideline",
    "animal": "animal/in-vitro",
    "in-vitro": "animal/in-vitro",
}


def design_slug(kind: str) -> str:
    """A design's name as typed on a command line: ``randomised trial`` -> ``randomised-trial``."""
    return _key(kind)


def _key(name: str) -> str:
    key = re.sub(r"[\s_/]+", "-", name.strip().casefold())
    return re.sub(r"-+", "-", key.replace("randomiz", "randomis")).strip("-")


_BY_KEY: dict[str, tuple[DesignKind, ...]] = {
    **{_key(k): (k,) for k in DESIGNS},
    **{k: (v,) for k, v in _ALIASES.items()},
    **DESIGN_GROUPS,
}


def design_kinds(values: Any) -> tuple[DesignKind, ...]:
    """Design names and group names (any spelling: ``randomised-trial``, ``Randomized Trial``,
    ``trials-and-reviews``; a comma-separated or JSON-list string as the environment gives) ->
    the designs, deduplicated, in :data:`DESIGNS` order. Empty input: ``()``. ValueError names
    the first unknown value and the choices."""
    if values is None:
        return ()
    if isinstance(values, str):
        text = values.strip()
        if text.startswith("["):
            try:
                values = json.loads(text)
            except ValueError:
                raise ValueError(f"designs: {text!r} is not a JSON list") from None
        else:
            values = text.split(",")
    if not isinstance(values, Iterable):
        raise ValueError(f"designs must be a list of design names, not {type(values).__name__}")
    chosen: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"design {value!r} is not a name")
        if not value.strip():
            continue
        kinds = _BY_KEY.get(_key(value))
        if kinds is None:
            names = ", ".join(design_slug(k) for k in DESIGNS)
            groups = ", ".join(DESIGN_GROUPS)
            raise ValueError(f"unknown study design {value.strip()!r}; choose from {names}, or a group: {groups}")
        chosen.update(kinds)
    return tuple(k for k in DESIGNS if k in chosen)


def _quoted(name: str, tag: str) -> str:
    return f'"{name.casefold()}"[{tag}]'


def _design_terms(kind: str) -> list[str]:
    terms = [_quoted(name, "pt") for name, k in DESIGN_PUBLICATION_TYPES if k == kind]
    terms += [_quoted(name, "mh") for name, k in DESIGN_MESH if k == kind]
    return terms + list(TEXT_TERMS.get(kind, ()))


@dataclass(frozen=True)
class StudyFilter:
    """Which records count as evidence for a question: ``designs`` (None: every design) and
    ``humans_only``. Decided on ``Article.design``; :meth:`apply` is its PubMed form."""

    designs: tuple[DesignKind, ...] | None = None
    humans_only: bool = False

    @classmethod
    def of(cls, designs: Any = None, humans_only: bool | None = False) -> StudyFilter:
        """From names as :func:`design_kinds` reads them (ValueError for an unknown one)."""
        kinds = design_kinds(designs)
        return cls(kinds or None, bool(humans_only))

    @classmethod
    def from_settings(cls, settings: Any) -> StudyFilter:
        return cls.of(getattr(settings, "designs", None), getattr(settings, "humans_only", False))

    @property
    def active(self) -> bool:
        return bool(self.designs) or self.humans_only

    # ------------------------------------------------------------------ the derived design

    def reason(self, article: Article) -> str | None:
        """Why ``article`` is outside the filter (its design, or not a human study); None: it passes."""
        design = article.design
        if self.designs and design.kind not in self.designs:
            return f"design: {design.kind}"
        if self.humans_only and (design.human is False or design.kind == "animal/in-vitro"):
            return "not a human study"
        return None

    def admits(self, article: Article) -> bool:
        return self.reason(article) is None

    # ------------------------------------------------------------------ PubMed syntax

    def designs_pubmed(self) -> str | None:
        """The designs as one PubMed clause (OR of publication types, MeSH headings and text words);
        None with no design filter, or when a chosen design has no PubMed form ("other")."""
        if not self.designs:
            return None
        terms: list[str] = []
        for kind in self.designs:
            mine = _design_terms(kind)
            if not mine:
                return None  # a clause without it would drop that design: filter after fetch only
            terms += mine
        return " OR ".join(dict.fromkeys(terms))

    def pubmed(self) -> str:
        """What :meth:`apply` adds after the query (``AND (...)`` and/or the humans clause); "" when nothing."""
        parts = []
        designs = self.designs_pubmed()
        if designs:
            parts.append(f"AND ({designs})")
        if self.humans_only:
            parts.append(HUMANS_ONLY)
        return " ".join(parts)

    def apply(self, query: str) -> str:
        """``query`` restricted in PubMed syntax; the query itself when nothing can be added."""
        tail = self.pubmed()
        return f"({query}) {tail}" if tail else query

    # ------------------------------------------------------------------ for readers

    @property
    def label(self) -> str:
        """``randomised trials, systematic reviews or meta-analyses; human studies only``."""
        parts = []
        if self.designs:
            names = [_PLURAL.get(k, k) for k in self.designs]
            parts.append(names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1])
        if self.humans_only:
            parts.append("human studies only")
        return "; ".join(parts)
