"""Whether an article is evidence at all, decided from the record alone (publication types and
NLM's CommentsCorrections links), before anything screens or cites it.

* Retracted work (publication type "Retracted Publication", or a ``RetractionIn`` /
  ``RetractedandRepublishedIn`` link) is set aside, named with the PMID(s) of its retraction
  notice. Nothing admits it: a retracted finding is not evidence whatever the reader prefers.
* Notices and opinion (retraction notices, errata, expressions of concern, comments, letters,
  editorials, news) report no study of their own: set aside with that reason, unless the reader
  admits their kind (``Settings.admit_publication_kinds``).
* An expression of concern or an erratum *about* an article (``ExpressionOfConcernIn``,
  ``ErratumIn``) does not remove it: it stays, flagged, and the flag follows it to its card and
  reference.

PubMed marks a retraction on the retracted record itself (its publication type and a
``RetractionIn`` link) once NLM processes the notice; a local mirror also learns it from a notice
in a later update file (``clinfo.corpus.store`` adds the reverse link when it fetches the record).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from clinfo.pubmed.vocabulary import FLAGGED, NOTICE_OF, NOTICE_PUBLICATION_TYPES, RETRACTED_BY, RETRACTED_PUBLICATION

if TYPE_CHECKING:
    from collections.abc import Iterable

    from clinfo.models import Article

__all__ = [
    "PUBLICATION_KINDS",
    "EvidenceStatus",
    "Flag",
    "PublicationKind",
    "evidence_status",
    "flags",
]

PublicationKind = Literal[
    "retraction notice", "erratum", "expression of concern", "comment", "letter", "editorial", "news"
]
PUBLICATION_KINDS: tuple[PublicationKind, ...] = PublicationKind.__args__  # type: ignore[attr-defined]

_PREPOSITION = {"retraction notice": "of", "erratum": "for", "expression of concern": "about", "comment": "on"}


@dataclass(frozen=True)
class Flag:
    """A notice about a kept article: an expression of concern or an erratum, with the notices'
    PMIDs (empty when NLM names the notice by citation only)."""

    kind: Literal["expression of concern", "erratum"]
    pmids: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """In words: "expression of concern (PMID 123)", "erratum (PMIDs 4, 5)", "erratum"."""
        if not self.pmids:
            return self.kind
        label = "PMID" if len(self.pmids) == 1 else "PMIDs"
        return f"{self.kind} ({label} {', '.join(self.pmids)})"


@dataclass(frozen=True)
class EvidenceStatus:
    """The verdict on one article. ``kind``: "evidence", "retracted" or the publication kind set
    aside; ``notices``: for retracted work the retraction notices' PMIDs, for a notice the PMIDs
    of the records it is about; ``flags``: concerns and errata on an article that is kept."""

    evidence: bool
    kind: str = "evidence"
    reason: str = ""
    notices: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()


def _pmids(article: Article, ref_types: Iterable[str]) -> tuple[str, ...]:
    wanted = set(ref_types)
    found = [c.pmid for c in article.corrections if c.ref_type in wanted and c.pmid]
    return tuple(dict.fromkeys(found))


def _pmid_words(pmids: tuple[str, ...]) -> str:
    return ("PMID " if len(pmids) == 1 else "PMIDs ") + ", ".join(pmids)


def flags(article: Article) -> tuple[Flag, ...]:
    """Expressions of concern and errata NLM links to ``article``, concern first."""
    out = []
    for kind in ("expression of concern", "erratum"):
        links = [c for c in article.corrections if FLAGGED.get(c.ref_type) == kind]
        if links:
            out.append(Flag(kind, tuple(dict.fromkeys(c.pmid for c in links if c.pmid))))
    return tuple(out)


def evidence_status(article: Article, admit: Iterable[str] = ()) -> EvidenceStatus:
    """Whether ``article`` may be screened and cited. ``admit``: publication kinds
    (:data:`PUBLICATION_KINDS`) the reader accepts as evidence; retracted work is never admitted."""
    types = set(article.publication_types)
    retracted_by = _pmids(article, RETRACTED_BY)
    if RETRACTED_PUBLICATION in types or retracted_by:
        if retracted_by:
            noun = "retraction notice" if len(retracted_by) == 1 else "retraction notices"
            reason = f"retracted ({noun} {_pmid_words(retracted_by)})"
        else:
            reason = "retracted (publication type Retracted Publication; NLM names no notice)"
        return EvidenceStatus(False, "retracted", reason, retracted_by)
    admitted = set(admit)
    for ptype, kind in NOTICE_PUBLICATION_TYPES.items():
        if ptype in types and kind not in admitted:
            about = _pmids(article, NOTICE_OF.get(kind, ()))
            reason = f"{kind} (publication type {ptype})"
            if about:
                reason = f"{kind} {_PREPOSITION.get(kind, 'on')} {_pmid_words(about)} (publication type {ptype})"
            return EvidenceStatus(False, kind, reason, about)
    return EvidenceStatus(True, flags=flags(article))
