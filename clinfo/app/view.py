"""Answer -> Markdown for the app and the Markdown export, with outside text made inert.

Titles, abstracts, journal names, and the LLM's own text (which is derived from abstracts and
can carry injected markup) are escaped before they reach a Markdown renderer: a title such as
``<script>`` or ``[x](javascript:...)`` must read as text, never become HTML, a link or
formatting. The only links in the output are the ones built here from PMIDs and DOIs.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from clinfo.models import Answer, Article, ArticleSummary, Reference

DISCLAIMER = (
    "clinfo supports clinicians and researchers in finding and reading evidence; it does not diagnose, "
    "give medical advice or replace clinical judgement. LLM summaries can be wrong: read the cited "
    "articles before acting on them."
)

PUBMED = "https://pubmed.ncbi.nlm.nih.gov/{pmid}/"

# Characters that start inline constructs anywhere in a line: emphasis, code, links and images,
# raw HTML and entities, GFM strikethrough and tables, Streamlit's LaTeX ($) and its
# :color[...] directives (which need "[" and so die with it).
_INLINE = re.compile(r"([\\`*_\[\]<>&$|~])")
# Constructs that only count at the start of a line: headings, block quotes (">" is already
# inline-escaped), list items, setext underlines, ordered lists.
_LINE_START = re.compile(r"^([#+=-])")
_ORDERED = re.compile(r"^(\d{1,9})([.)])")
# A citation group as the pipeline's CitationFilter leaves it: "[3]" or "[1, 4, 5]".
_CITATION = re.compile(r"\[(\d+(?:, \d+)*)\]")


def md_escape(text: str, *, one_line: bool = False) -> str:
    """Text that renders as itself in CommonMark/GFM and in Streamlit's Markdown."""
    text = text or ""
    if one_line:
        text = " ".join(text.split())
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        # leading blanks would make an indented code block out of prose
        line = _INLINE.sub(r"\\\1", line.lstrip())
        line = _LINE_START.sub(r"\\\1", line)
        line = _ORDERED.sub(r"\1\\\2", line)
        lines.append(line)
    # hard line breaks: escaped list markers would otherwise run lines together into one paragraph
    return "  \n".join(lines)


def pubmed_url(pmid: str) -> str | None:
    """The PubMed page of a PMID, or None when the PMID is not plain digits (then nothing links)."""
    pmid = (pmid or "").strip()
    return PUBMED.format(pmid=pmid) if pmid.isdigit() else None


def doi_url(doi: str | None) -> str | None:
    if not doi or not doi.strip():
        return None
    # percent-encode everything that could end a Markdown link destination or start a scheme trick
    return "https://doi.org/" + quote(doi.strip(), safe="/.-_;")


def _link(text_md: str, url: str | None, title: str = "") -> str:
    if url is None:
        return text_md
    if title:
        clean = " ".join(title.split()).replace("\\", "\\\\").replace('"', '\\"')
        return f'[{text_md}]({url} "{clean}")'
    return f"[{text_md}]({url})"


def linked_text(text: str, references: "list[Reference]") -> str:
    """Escaped text whose ``[n]`` citations link to the PubMed page of reference n."""
    by_n = {r.n: r for r in references}
    out: list[str] = []
    pos = 0
    for m in _CITATION.finditer(text):
        out.append(md_escape(text[pos : m.start()]))
        parts = []
        for number in m.group(1).split(", "):
            ref = by_n.get(int(number))
            parts.append(_link(number, pubmed_url(ref.pmid), ref.title) if ref else number)
        out.append("\\[" + ", ".join(parts) + "\\]")
        pos = m.end()
    out.append(md_escape(text[pos:]))
    return "".join(out)


def reference_line(ref: "Reference") -> str:
    label = f"PMID {ref.pmid}"
    line = f"\\[{ref.n}\\] {md_escape(ref.citation, one_line=True)} {_link(md_escape(label), pubmed_url(ref.pmid))}"
    if not ref.cited:
        line += " _(given to the LLM, not cited in the text)_"
    return line


def references_md(answer: "Answer") -> str:
    # two spaces before the newline: one line per reference without list renumbering
    return "  \n".join(reference_line(r) for r in answer.references)


def article_meta_md(article: "Article") -> str:
    """``journal · year · PMID link · DOI link``, all escaped."""
    bits = [md_escape(article.journal, one_line=True) if article.journal else "journal not stated"]
    bits.append(str(article.year) if article.year else "year not stated")
    bits.append(_link(md_escape(f"PMID {article.pmid}"), pubmed_url(article.pmid)))
    url = doi_url(article.doi)
    if url:
        bits.append(_link("DOI", url))
    return " · ".join(bits)


UNTITLED_MARK = "_(untitled; opening words of the abstract)_"
# the structured-summary fields a card can show, in order, with their labels
SUMMARY_FIELDS = (
    ("design", "Design"),
    ("sample_size", "Sample size"),
    ("population", "Population"),
    ("risk_of_bias", "Risk of bias"),
)
# what small models write when they have nothing to say; shown as nothing
_EMPTY_REASONS = {"", "not reported", "n/a", "na", "none", "unknown", "not stated"}


def title_md(article: "Article") -> str:
    """The title; an untitled record (PubMedQA's) shows the opening words of its abstract, marked."""
    if article.title.strip():
        return md_escape(article.title, one_line=True)
    opening = article.opening_words()
    if opening:
        return f"{md_escape(opening, one_line=True)} {UNTITLED_MARK}"
    return "_(untitled, no abstract)_"


def requested_fields(summary: "ArticleSummary") -> list[str]:
    """The summary fields the screening asked for. Answers saved before ArticleSummary recorded
    it are judged by their content: a run that asked fills at least one field."""
    if summary.fields_requested is not None:
        return [name for name, _ in SUMMARY_FIELDS if name in summary.fields_requested]
    if any(getattr(summary, name).strip() for name, _ in SUMMARY_FIELDS):
        return [name for name, _ in SUMMARY_FIELDS]
    return []


def _reason(summary: "ArticleSummary") -> str:
    reason = " ".join(summary.reason.split())
    return "" if reason.lower().rstrip(".") in _EMPTY_REASONS else reason


def relevance_md(summary: "ArticleSummary") -> str:
    """How relevance was decided, in words: by retrieval scores or by the model (with its score
    when it gave one), and the reason when there is one."""
    if summary.relevance_source == "retrieval":
        how = "from retrieval scores"
    elif summary.score > 0:
        how = f"judged by the model, score {summary.score}/10"
    else:
        how = "judged by the model"
    reason = _reason(summary)
    return f"**Relevance:** {how}" + (f". {md_escape(reason, one_line=True)}" if reason else "")


def card_md(summary: "ArticleSummary", n: int | None = None) -> str:
    """One relevant article: title, where it appeared, how its relevance was decided, and the
    structured summary fields the screening asked for (no others)."""
    a = summary.article
    head = f"**{title_md(a)}**" if n is None else f"**\\[{n}\\] {title_md(a)}**"
    lines = [head + "  ", article_meta_md(a), ""]  # two trailing spaces: a line break, not a join
    lines += [relevance_md(summary), ""]
    labels = dict(SUMMARY_FIELDS)
    for name in requested_fields(summary):
        value = getattr(summary, name)
        lines.append(f"- **{labels[name]}:** {md_escape(value, one_line=True) if value.strip() else '_not reported_'}")
    if summary.summary:
        lines += ["", md_escape(summary.summary)]
    return "\n".join(lines).rstrip()


def irrelevant_md(summary: "ArticleSummary") -> str:
    a = summary.article
    reason = _reason(summary)
    if reason:
        why = md_escape(reason, one_line=True)
    elif summary.relevance_source == "retrieval":
        why = "_below the retrieval-score threshold_"
    else:
        why = "_no reason given_"
    return f"**{title_md(a)}** ({article_meta_md(a)})  \n{why}"


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
