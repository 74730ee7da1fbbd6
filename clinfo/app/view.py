"""An answer's articles as the app shows them: cards for the relevant ones, a line for the rest.

Outside text is escaped with :func:`clinfo.render.md_escape` (see clinfo.render for why); the
answer itself (synthesis, references, searches) is laid out by :mod:`clinfo.render`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfo.render import doi_url, link_md, md_escape, pubmed_url

if TYPE_CHECKING:
    from clinfo.models import Article, ArticleSummary


def article_meta_md(article: Article) -> str:
    """``journal · year · PMID link · DOI link``, all escaped."""
    bits = [md_escape(article.journal, one_line=True) if article.journal else "journal not stated"]
    bits.append(str(article.year) if article.year else "year not stated")
    bits.append(link_md(md_escape(f"PMID {article.pmid}"), pubmed_url(article.pmid)))
    url = doi_url(article.doi)
    if url:
        bits.append(link_md("DOI", url))
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


def title_md(article: Article) -> str:
    """The title; an untitled record (PubMedQA's) shows the opening words of its abstract, marked."""
    if article.title.strip():
        return md_escape(article.title, one_line=True)
    opening = article.opening_words()
    if opening:
        return f"{md_escape(opening, one_line=True)} {UNTITLED_MARK}"
    return "_(untitled, no abstract)_"


def requested_fields(summary: ArticleSummary) -> list[str]:
    """The summary fields the screening asked for. Answers saved before ArticleSummary recorded
    it are judged by their content: a run that asked fills at least one field."""
    if summary.fields_requested is not None:
        return [name for name, _ in SUMMARY_FIELDS if name in summary.fields_requested]
    if any(getattr(summary, name).strip() for name, _ in SUMMARY_FIELDS):
        return [name for name, _ in SUMMARY_FIELDS]
    return []


def _reason(summary: ArticleSummary) -> str:
    reason = " ".join(summary.reason.split())
    return "" if reason.lower().rstrip(".") in _EMPTY_REASONS else reason


def relevance_md(summary: ArticleSummary) -> str:
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


def card_md(summary: ArticleSummary, n: int | None = None) -> str:
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


def irrelevant_md(summary: ArticleSummary) -> str:
    a = summary.article
    reason = _reason(summary)
    if reason:
        why = md_escape(reason, one_line=True)
    elif summary.relevance_source == "retrieval":
        why = "_below the retrieval-score threshold_"
    else:
        why = "_no reason given_"
    return f"**{title_md(a)}** ({article_meta_md(a)})  \n{why}"
