"""A PubMed record as NLM keeps it: the fields both readers of PubMed XML fill.

:class:`clinfo.models.Article` extends :class:`PubmedRecord` with what clinfo decides about it (its
design); the XML readers take the class to build, so this layer never imports the one above.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{pmid}/"


class AbstractSection(BaseModel):
    label: str = ""
    text: str


class Correction(BaseModel):
    """A link NLM keeps between a record and a notice about it (``CommentsCorrections``):
    ``ref_type`` is NLM's RefType ("RetractionIn", "RetractionOf", "ExpressionOfConcernIn",
    "ErratumIn", "ErratumFor", "CommentOn", ...), ``pmid`` the other record when NLM gives it,
    ``source`` its citation text ("Lancet. 2021;397:50")."""

    ref_type: str
    pmid: str | None = None
    source: str = ""


class PubmedRecord(BaseModel):
    """One PubMed record as NLM keeps it (its citation fields only; nothing judged)."""

    pmid: str
    title: str = ""
    abstract_sections: list[AbstractSection] = Field(default_factory=list)
    authors: list[str] = Field(default_factory=list)
    journal: str = ""
    year: int | None = None
    doi: str | None = None
    mesh: list[str] = Field(default_factory=list)
    publication_types: list[str] = Field(default_factory=list)
    corrections: list[Correction] = Field(default_factory=list)

    @property
    def abstract(self) -> str:
        """The abstract as one text, section labels kept inline ("METHODS: ...")."""
        parts = [f"{s.label}: {s.text}" if s.label else s.text for s in self.abstract_sections]
        return "\n".join(p for p in parts if p.strip())

    @property
    def url(self) -> str:
        return PUBMED_URL.format(pmid=self.pmid)

    def opening_words(self, n: int = 12) -> str:
        """The first ``n`` words of the abstract (section labels left out), "…" when cut."""
        words = " ".join(sec.text for sec in self.abstract_sections).split()
        return " ".join(words[:n]) + ("…" if len(words) > n else "")

    @property
    def citation(self) -> str:
        """A Vancouver-style citation built from this article's own metadata."""
        authors = self.authors[:3]
        author_text = ", ".join(authors) + (", et al" if len(self.authors) > 3 else "")
        # an untitled record (PubMedQA's) is named by the opening words of its abstract, marked as such
        title = self.title.rstrip(".")
        if not title:
            opening = self.opening_words()
            title = f"[Untitled; abstract begins: {opening}]" if opening else "[Untitled]"
        bits = [b for b in (author_text, title, self.journal) if b]
        text = ". ".join(bits)
        if self.year:
            text += f". {self.year}"
        if self.doi:
            text += f". doi:{self.doi}"
        return f"{text}. PMID: {self.pmid}"
