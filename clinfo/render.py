"""Answer -> Markdown, for terminals and files (as written) and for the app and its exports (escaped).

One builder, :func:`answer_markdown`, lays the answer out; ``escape=True`` makes outside text
inert. Titles, abstracts, journal names, and the LLM's own text (derived from abstracts, so it
can carry injected markup) are then escaped before they reach a Markdown renderer: a title such
as ``<script>`` or ``[x](javascript:...)`` must read as text, never become HTML, a link or
formatting, and the only links are the ones built here from PMIDs and DOIs. A terminal shows
the text as written, so there nothing is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from clinfo.models import Answer, ClaimCheck, Reference, SetAside

DISCLAIMER = (
    "clinfo supports clinicians and researchers in finding and reading evidence; it does not diagnose, "
    "give medical advice or replace clinical judgement. LLM summaries can be wrong: read the cited "
    "articles before acting on them."
)

PUBMED = "https://pubmed.ncbi.nlm.nih.gov/{pmid}/"
# the tally of a yes/no question's stances (Answer.agreement), one line under the TL;DR
AGREEMENT_LABEL = "Agreement (yes/no question)"

# The parts of an answer in reading order; answer_markdown shows all but the disclaimer unless told.
SECTIONS = (
    "question", "tldr", "agreement", "synthesis", "claims", "references", "set_aside", "searches", "trace", "disclaimer"
)  # fmt: skip
DEFAULT_SECTIONS = SECTIONS[:-1]

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


# ---------------------------------------------------------------- escaping and links
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


def link_md(text_md: str, url: str | None, title: str = "") -> str:
    """``[text_md](url "title")`` from already-escaped text; the bare text when there is no URL."""
    if url is None:
        return text_md
    if title:
        clean = " ".join(title.split()).replace("\\", "\\\\").replace('"', '\\"')
        return f'[{text_md}]({url} "{clean}")'
    return f"[{text_md}]({url})"


def linked_text(text: str, references: Sequence[Reference]) -> str:
    """Escaped text whose ``[n]`` citations link to the PubMed page of reference n."""
    by_n = {r.n: r for r in references}
    out: list[str] = []
    pos = 0
    for m in _CITATION.finditer(text):
        segment = text[pos : m.start()]
        # md_escape drops leading blanks (they would start a code block); after a citation they are mid-line
        blanks = segment[: len(segment) - len(segment.lstrip(" "))] if pos else ""
        out.append(blanks + md_escape(segment))
        parts = []
        for number in m.group(1).split(", "):
            ref = by_n.get(int(number))
            parts.append(link_md(number, pubmed_url(ref.pmid), ref.title) if ref else number)
        out.append("\\[" + ", ".join(parts) + "\\]")
        pos = m.end()
    rest = text[pos:]
    out.append((rest[: len(rest) - len(rest.lstrip(" "))] if pos else "") + md_escape(rest))
    return "".join(out)


# ---------------------------------------------------------------- the parts of an answer
def reference_line(ref: Reference, *, escape: bool = False) -> str:
    # an expression of concern or erratum on the article travels with its reference
    notices = "; ".join(ref.flags)
    # "randomised trial, level 2": the design decided by code (clinfo.appraisal.design)
    design = ref.design.label if ref.design else ""
    if not escape:
        return (
            f"{ref.n}. {ref.citation} <{ref.url}>"
            + (f" ({design})" if design else "")
            + (f" [NLM notice: {notices}]" if notices else "")
        )
    label = f"PMID {ref.pmid}"
    line = f"\\[{ref.n}\\] {md_escape(ref.citation, one_line=True)} {link_md(md_escape(label), pubmed_url(ref.pmid))}"
    if design:
        line += f" · _{md_escape(design)}_"
    if notices:
        line += f" **NLM notice:** {md_escape(notices, one_line=True)}"
    if not ref.cited:
        line += " _(given to the LLM, not cited in the text)_"
    return line


UNSUPPORTED_MARK = "\u26a0"  # after a synthesis sentence that no abstract it cites supports, with its footnote number


def unsupported_claims(answer: Answer) -> list[ClaimCheck]:
    return [c for c in answer.claims if not c.supported]


def marked_synthesis(answer: Answer) -> str:
    """The synthesis with ``⚠k`` after each sentence no cited abstract supports (before its full stop),
    numbered as in :func:`claims_markdown`. A sentence no longer found where its check says is left unmarked."""
    text = answer.synthesis
    marks = []
    for k, c in enumerate(unsupported_claims(answer), start=1):
        if text[c.start : c.end] == c.text:
            end = c.end - 1 if c.text[-1:] in ".!?" else c.end
            marks.append((end, f" {UNSUPPORTED_MARK}{k}"))
    for end, mark in sorted(marks, reverse=True):
        text = text[:end] + mark + text[end:]
    return text


def claims_markdown(answer: Answer, *, escape: bool = False) -> str:
    """One footnote per sentence that no abstract it cites supports, quoting it and the closest sentence of each
    article it cites; "" when every citing sentence is supported."""
    unsupported = unsupported_claims(answer)
    if not unsupported:
        return ""
    head = (
        f"Claim check: {len(unsupported)} of {len(answer.claims)} sentences that cite articles"
        f" {'is' if len(unsupported) == 1 else 'are'} not supported by the abstracts they cite"
        f" (marked {UNSUPPORTED_MARK}); read those articles before relying on them."
    )
    lines = [f"**{md_escape(head)}**" if escape else head]
    for k, c in enumerate(unsupported, start=1):
        quotes = []
        for n, s in zip(c.citations, c.supports):
            where = f"{s.label.title()}, " if s.label else ""
            quotes.append(f'[{n}] "{s.sentence}" ({where}support {s.score:.2f})')
        text = f'{UNSUPPORTED_MARK}{k} "{c.text}" Closest cited sentence: {"; ".join(quotes) or "none"}.'
        lines.append(md_escape(text, one_line=True) if escape else "- " + " ".join(text.split()))
    # escaped: hard line breaks (a renderer would join the lines); plain: a list under the heading line
    return "  \n".join(lines) if escape else lines[0] + "\n\n" + "\n".join(lines[1:])


def set_aside_line(item: SetAside, *, escape: bool = False) -> str:
    """``PMID 31031480: retracted (retraction notice PMID 34092875) — title``."""
    title = " ".join(item.title.split())
    if not escape:
        return f"- PMID {item.pmid}: {item.reason}" + (f" — {title}" if title else "")
    label = link_md(md_escape(f"PMID {item.pmid}"), pubmed_url(item.pmid))
    return f"- {label}: {md_escape(item.reason, one_line=True)}" + (
        f" — {md_escape(title, one_line=True)}" if title else ""
    )


def set_aside_markdown(answer: Answer, *, escape: bool = False) -> str:
    return "\n".join(set_aside_line(item, escape=escape) for item in answer.set_aside)


def references_markdown(answer: Answer, *, escape: bool = False) -> str:
    # escaped: "\[n\]" lines with hard breaks, so a renderer neither renumbers nor joins them
    return ("  \n" if escape else "\n").join(reference_line(r, escape=escape) for r in answer.references)


def study_filter_line(answer: Answer, *, escape: bool = False) -> str:
    """What the evidence was restricted to (``trace.study_filter``), how, and what it left out; "" when unrestricted."""
    f = answer.trace.study_filter
    if f is None:
        return ""
    how = "PubMed syntax added to each query, then" if f.pubmed else "on"
    n = f.left_out
    text = (
        f"Restricted to {f.label} ({how} each record's design as decided by code;"
        f" {n} retrieved record{'s' * (n != 1)} outside the filter left out)."
    )
    line = md_escape(text, one_line=True) if escape else text
    return line + (f" Added to each PubMed query: `{' '.join(f.pubmed.replace('`', '').split())}`" if f.pubmed else "")


def searches_markdown(answer: Answer, *, escape: bool = False) -> str:
    restricted = study_filter_line(answer, escape=escape)
    lines = [restricted, ""] if restricted else []
    for q in answer.queries:
        # a backtick would end the code span early; the query keeps its words
        query = " ".join(q.query.replace("`", "").split())
        note = (md_escape(q.note, one_line=True) if escape else q.note) if q.note else ""
        lines.append(f"- `{query}` ({q.hits} hits)" + (f" — {note}" if note else ""))
    return "\n".join(lines)


def trace_line(answer: Answer) -> str:
    t = answer.trace
    cost = "cost unknown" if t.cost_usd is None else f"${t.cost_usd:.4f}"
    search = f" · search: {', '.join(t.search_modes)}" if t.search_modes else ""
    if t.study_filter is not None:
        search += f" · restricted to {t.study_filter.label} ({t.study_filter.left_out} left out)"
    supported = t.claims_checked - t.unsupported_claims
    claims = f" · {supported} of {t.claims_checked} citing sentences supported" if t.claims_checked else ""
    return (
        f"{t.articles_found} articles found, "
        + (f"{t.articles_set_aside} set aside as not evidence, " if t.articles_set_aside else "")
        + f"{t.articles_screened} screened, {len(answer.article_summaries)} relevant{claims}"
        f" · {t.llm_calls} LLM calls ({t.llm_cache_hits} cached), {t.prompt_tokens + t.completion_tokens} tokens,"
        f" {cost} · {t.total_seconds:.1f} s{search}"
    )


def answer_markdown(
    answer: Answer, *, escape: bool = False, level: int = 2, sections: Sequence[str] = DEFAULT_SECTIONS
) -> str:
    """The answer as one Markdown document.

    ``escape``: outside text made inert and citations linked to PubMed (the app, its exports);
    without it text is shown as written (a terminal, ``Answer.to_markdown``). ``level``: the
    heading level of the question; References and Searches sit one below. ``sections``: which
    parts of :data:`SECTIONS`, in reading order whatever order they are given in (the CLI,
    having streamed the synthesis, adds the rest with ``("tldr", "references", "trace")``).
    """
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown answer section(s): {', '.join(sorted(unknown))}")

    def line(text: str) -> str:
        return md_escape(text, one_line=True) if escape else text

    sub = "#" * (level + 1)
    parts: dict[str, str] = {"question": f"{'#' * level} {line(answer.question)}"}
    if answer.tldr:
        parts["tldr"] = f"**TL;DR:** {line(answer.tldr)}"
    if answer.agreement is not None:
        parts["agreement"] = f"**{AGREEMENT_LABEL}:** {line(answer.agreement.summary)}"
    synthesis = marked_synthesis(answer)
    parts["synthesis"] = linked_text(synthesis, answer.references) if escape else synthesis
    parts["claims"] = claims_markdown(answer, escape=escape)
    if answer.references:
        parts["references"] = f"{sub} References\n\n" + references_markdown(answer, escape=escape)
    if answer.set_aside:
        parts["set_aside"] = f"{sub} Set aside (not evidence)\n\n" + set_aside_markdown(answer, escape=escape)
    if answer.queries:
        parts["searches"] = f"{sub} Searches\n\n" + searches_markdown(answer, escape=escape)
    parts["trace"] = f"_{md_escape(trace_line(answer)) if escape else trace_line(answer)}_"
    parts["disclaimer"] = f"> {DISCLAIMER}"
    return "\n\n".join(parts[name] for name in SECTIONS if name in sections and parts.get(name, "").strip())
