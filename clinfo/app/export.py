"""Exports of one answer: Markdown (to read), BibTeX and RIS (for reference managers), JSON (the Answer).

BibTeX and RIS entries are built from each referenced article's own PubMed metadata (authors,
title, journal, year, DOI, PMID), in reference order, so numbers match the synthesis; their note
(BibTeX ``note``, RIS ``N1``) carries the design and level decided by code. Nothing
here knows about settings, so no credential can reach an export.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING

from clinfo.render import SECTIONS, answer_markdown, pubmed_url

if TYPE_CHECKING:
    from clinfo.models import Answer, Article, Reference


# ---------------------------------------------------------------- which articles
def referenced_articles(answer: Answer) -> list[tuple[Reference, Article | None]]:
    """Each reference with its full record (None when the answer no longer carries it)."""
    by_pmid = {s.pmid: s.article for s in [*answer.article_summaries, *answer.irrelevant_articles]}
    return [(r, by_pmid.get(r.pmid)) for r in answer.references]


# ---------------------------------------------------------------- authors
# PubMed gives "Last Initials" ("van der Berg JA") or a collective name ("WHO Study Group").
_INITIALS = re.compile(r"^[A-Z]{1,4}$")


def split_author(name: str) -> tuple[str, str] | None:
    """("van der Berg", "JA"), or None for a collective name."""
    last, _, initials = " ".join(name.split()).rpartition(" ")
    if last and _INITIALS.match(initials):
        return last, initials
    return None


def _dotted(initials: str) -> list[str]:
    return [f"{ch}." for ch in initials]


# ---------------------------------------------------------------- BibTeX
_BIBTEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "%": r"\%",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "_": r"\_",
    "^": r"\^{}",
    "~": r"\~{}",
}
_BIBTEX_RE = re.compile("|".join(re.escape(c) for c in _BIBTEX_SPECIAL))


def bibtex_escape(text: str) -> str:
    """One line of text safe inside a braced BibTeX field (one pass, so escapes are not re-escaped)."""
    return _BIBTEX_RE.sub(lambda m: _BIBTEX_SPECIAL[m.group(0)], " ".join((text or "").split()))


def _bibtex_author(name: str) -> str:
    parts = split_author(name)
    if parts is None:
        # braces keep a collective name whole (BibTeX would split it at " and " and at commas)
        return "{" + bibtex_escape(name) + "}"
    last, initials = parts
    return f"{bibtex_escape(last)}, {' '.join(_dotted(initials))}"


def _ascii_word(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]", "", plain)


def bibtex_key(article: Article) -> str:
    """``smith2020pmid123456``: readable, and unique because the PMID is in it."""
    first = ""
    if article.authors:
        parts = split_author(article.authors[0])
        first = _ascii_word(parts[0] if parts else article.authors[0].split()[0]).lower()
    return f"{first}{article.year or ''}pmid{article.pmid}"


def design_note(article: Article) -> str:
    """The design decided by code, for a reference manager's note field: "Design: randomised
    trial, level 2 (from title/abstract; clinfo)"; "" when nothing states one."""
    d = article.design
    return f"Design: {d.label} (from {d.basis}; clinfo)" if d.basis != "none" else ""


def bibtex_entry(article: Article) -> str:
    fields: list[tuple[str, str]] = []
    if article.authors:
        fields.append(("author", " and ".join(_bibtex_author(a) for a in article.authors)))
    fields.append(("title", bibtex_escape(article.title.rstrip(".")) if article.title else ""))
    if article.journal:
        fields.append(("journal", bibtex_escape(article.journal)))
    if article.year:
        fields.append(("year", str(article.year)))
    if article.doi:
        fields.append(("doi", bibtex_escape(article.doi)))
    fields.append(("pmid", article.pmid))
    url = pubmed_url(article.pmid)
    if url:
        fields.append(("url", url))
    fields.append(("note", bibtex_escape(design_note(article))))  # empty fields are left out below
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if value)
    return f"@article{{{bibtex_key(article)},\n{body}\n}}"


def to_bibtex(answer: Answer) -> str:
    entries = []
    for ref, article in referenced_articles(answer):
        if article is None:  # only the reference survives: a minimal entry rather than none
            article = _from_reference(ref)
        entries.append(bibtex_entry(article))
    return "\n\n".join(entries) + ("\n" if entries else "")


def _from_reference(ref: Reference) -> Article:
    from clinfo.models import Article

    return Article(pmid=ref.pmid, title=ref.title)


# ---------------------------------------------------------------- RIS
RIS_TAG = re.compile(r"^[A-Z][A-Z0-9]$")


def _ris_line(tag: str, value: str) -> str:
    assert RIS_TAG.match(tag), tag
    # RIS is line-based: a value can never continue onto a new line
    return f"{tag}  - {' '.join((value or '').split())}"


def _ris_author(name: str) -> str:
    parts = split_author(name)
    if parts is None:
        return " ".join(name.split())
    last, initials = parts
    return f"{last}, {''.join(_dotted(initials))}"


def ris_record(article: Article) -> str:
    lines = [_ris_line("TY", "JOUR")]
    lines += [_ris_line("AU", _ris_author(a)) for a in article.authors if a.strip()]
    if article.title:
        lines.append(_ris_line("TI", article.title))
    if article.journal:
        lines.append(_ris_line("JO", article.journal))
    if article.year:
        lines.append(_ris_line("PY", str(article.year)))
    if article.doi:
        lines.append(_ris_line("DO", article.doi))
    if article.abstract:
        lines.append(_ris_line("AB", article.abstract))
    lines += [_ris_line("KW", term) for term in article.mesh if term.strip()]
    lines.append(_ris_line("AN", article.pmid))
    note = design_note(article)
    if note:
        lines.append(_ris_line("N1", note))
    url = pubmed_url(article.pmid)
    if url:
        lines.append(_ris_line("UR", url))
    lines.append(_ris_line("DB", "PubMed"))
    lines.append("ER  - ")
    return "\n".join(lines)


def to_ris(answer: Answer) -> str:
    records = [ris_record(article or _from_reference(ref)) for ref, article in referenced_articles(answer)]
    return "\n\n".join(records) + ("\n" if records else "")


# ---------------------------------------------------------------- Markdown and JSON
def to_markdown(answer: Answer) -> str:
    """A readable document: outside text escaped, citations linked to PubMed, the disclaimer last."""
    return answer_markdown(answer, escape=True, level=1, sections=SECTIONS) + "\n"


def to_json(answer: Answer) -> str:
    return answer.to_json(indent=2) + "\n"


def slug(text: str, limit: int = 48) -> str:
    words = re.findall(r"[a-z0-9]+", _ascii_word_keep_spaces(text).lower())
    out = "-".join(words)[:limit].rstrip("-")
    return out or "answer"


def _ascii_word_keep_spaces(text: str) -> str:
    return unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode()


# name -> (label, file extension, MIME type, function)
FORMATS: dict[str, tuple[str, str, str, Callable[[Answer], str]]] = {
    "markdown": ("Markdown", "md", "text/markdown", to_markdown),
    "bibtex": ("BibTeX", "bib", "application/x-bibtex", to_bibtex),
    "ris": ("RIS", "ris", "application/x-research-info-systems", to_ris),
    "json": ("JSON", "json", "application/json", to_json),
}


def file_name(answer: Answer, fmt: str) -> str:
    return f"clinfo-{slug(answer.question)}.{FORMATS[fmt][1]}"
