"""An answer's articles as the app shows them: cards for the relevant ones, a line for the rest.

Outside text is escaped with :func:`clinfo.render.md_escape` (see clinfo.render for why); the
answer itself (synthesis, references, searches) is laid out by :mod:`clinfo.render`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clinfo.render import doi_url, link_md, md_escape, pubmed_url

if TYPE_CHECKING:
    from clinfo.appraisal.agreement import Agreement
    from clinfo.models import Answer, Article, ArticleSummary, ClaimCheck, Reference, SetAside


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
    # the LLM's own words on the design; the card's "Design" line is the one decided by code
    ("design", "Design (as summarised)"),
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


# a yes/no question's stance on a card, in words
STANCE_TEXT = {
    "supporting": "supporting (its finding says yes)",
    "contradicting": "contradicting (its finding says no)",
    "mixed": "mixed (yes in part, no in part)",
    "not answering": "not answering (neither yes nor no)",
}


def stance_md(summary: ArticleSummary) -> str:
    """The article's answer to a yes/no question; "" when the question is not one."""
    if summary.stance is None:
        return ""
    if summary.stance == "not judged":
        why = "relevance from retrieval scores" if summary.relevance_source == "retrieval" else "the model gave none"
        return f"**Stance:** not judged ({why})"
    return f"**Stance:** {STANCE_TEXT[summary.stance]}"


# the stances the chart shows (the others are in the tally's line)
CHART_STANCES = ("supporting", "contradicting", "mixed")


def agreement_chart(agreement: Agreement | None) -> dict[str, Any] | None:
    """A Vega-Lite spec (data inline) of a yes/no question's tally: one horizontal bar per stance,
    stacked by design, strongest level first; None when there is nothing to draw (not a yes/no
    question, stances not judged, or no article supports, contradicts or is mixed)."""
    if agreement is None or not agreement.judged:
        return None
    from clinfo.appraisal.design import DESIGNS

    cells = [c for c in agreement.cells if c.stance in CHART_STANCES and c.count]
    if not cells:
        return None
    label = {c.design: f"{c.design} (level {c.level})" if c.level else f"{c.design} (not graded)" for c in cells}
    levels = {c.design: 99 if c.level is None else c.level for c in cells}
    strongest_first = sorted(label, key=lambda kind: (levels[kind], DESIGNS.index(kind)))
    rows = [
        {"stance": c.stance, "design": label[c.design], "articles": c.count, "order": strongest_first.index(c.design)}
        for c in cells
    ]
    return {
        "data": {"values": rows},
        "mark": {"type": "bar", "tooltip": True},
        "height": {"step": 22},
        "encoding": {
            "y": {"field": "stance", "type": "nominal", "sort": list(CHART_STANCES), "title": None},
            "x": {"field": "articles", "type": "quantitative", "title": "articles", "axis": {"tickMinStep": 1}},
            "color": {
                "field": "design",
                "type": "nominal",
                "sort": [label[k] for k in strongest_first],
                "title": "design (level of evidence)",
            },
            "order": {"field": "order", "type": "ordinal"},
        },
    }


def notices_md(article: Article) -> str:
    """A banner line for the expressions of concern and errata NLM links to a kept article; ""
    when there are none (retracted work never gets a card: it is set aside)."""
    from clinfo.appraisal.evidence_status import flags

    found = flags(article)
    if not found:
        return ""
    return "⚠️ " + " · ".join(f"**{md_escape(f.text[:1].upper() + f.text[1:], one_line=True)}**" for f in found)


# what decided an article's design, in words (clinfo.appraisal.design.Design.basis)
_DESIGN_BASIS = {
    "publication type": "from NLM's publication types",
    "MeSH": "from NLM's MeSH terms",
    "title/abstract": "from title/abstract",
    "none": "no design stated",
}


def design_md(article: Article) -> str:
    """The design badge: "**Design:** randomised trial · level 2 (from title/abstract)"."""
    d = article.design
    level = f"level {d.level}" if d.level else "not graded"
    return f"**Design:** {md_escape(d.kind)} · {level} ({_DESIGN_BASIS[d.basis]})"


def set_aside_md(item: SetAside) -> str:
    """A record set aside as not evidence: title, PMID link and why."""
    title = md_escape(item.title, one_line=True) if item.title.strip() else "_(untitled)_"
    pmid = link_md(md_escape(f"PMID {item.pmid}"), pubmed_url(item.pmid))
    return f"**{title}** ({pmid})  \n{md_escape(item.reason[:1].upper() + item.reason[1:], one_line=True)}"


def card_md(summary: ArticleSummary, n: int | None = None) -> str:
    """One relevant article: title, where it appeared, its design and level (decided by code), any
    notice NLM links to it (expression of concern, erratum), how its relevance was decided, and the
    structured summary fields the screening asked for (no others)."""
    a = summary.article
    head = f"**{title_md(a)}**" if n is None else f"**\\[{n}\\] {title_md(a)}**"
    lines = [head + "  ", article_meta_md(a), ""]  # two trailing spaces: a line break, not a join
    lines += [design_md(a), ""]
    banner = notices_md(a)
    if banner:
        lines += [banner, ""]
    lines += [relevance_md(summary), ""]
    stance = stance_md(summary)
    if stance:
        lines += [stance, ""]
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


CLAIM_LABEL_CHARS = 160  # an expander label is one line: longer sentences are cut there


def claims_caption(answer: Answer) -> str:
    """What the claim check found, in one escaped line; "" when nothing was checked."""
    n = len(answer.claims)
    if not n:
        return ""
    if all(s.signals == "quote" for c in answer.claims for s in c.supports):
        return "Each quoted sentence opens to the article it is quoted from."
    bad = sum(not c.supported for c in answer.claims)
    found = "all supported" if not bad else f"{bad} not supported by what {'it cites' if bad == 1 else 'they cite'}"
    return md_escape(
        f"Claim check: {n} sentence{'s' * (n != 1)} cite articles, {found}."
        " Each opens to the sentence of the cited abstract it rests on."
    )


def claim_label(check: ClaimCheck, mark: int | None = None) -> str:
    """An expander label: the sentence (cut), its support, and ``⚠k`` when no cited abstract supports it."""
    from clinfo.render import UNSUPPORTED_MARK

    text = " ".join(check.text.split())
    if len(text) > CLAIM_LABEL_CHARS:
        text = text[: CLAIM_LABEL_CHARS - 1].rstrip() + "…"
    quoted = all(s.signals == "quote" for s in check.supports)
    how = "quoted" if quoted else f"support {check.score:.2f}" + ("" if check.supported else ", not supported")
    head = f"{UNSUPPORTED_MARK}{mark} " if mark is not None else ""
    return f"{head}{md_escape(text, one_line=True)} · _{how}_"


def claim_md(check: ClaimCheck, references: list[Reference]) -> str:
    """Each article the sentence cites: the reference, the sentence of its abstract that matches the claim
    best (quoted, with its section) and how well it supports the claim. Everything escaped."""
    by_n = {r.n: r for r in references}
    blocks = []
    for n, s in zip(check.citations, check.supports):
        ref = by_n.get(n)
        name = md_escape(ref.title or ref.citation, one_line=True) if ref else "reference not listed"
        pmid = link_md(md_escape(f"PMID {s.pmid}"), pubmed_url(s.pmid)) if s.pmid else ""
        if s.signals == "quote":
            verdict = "quoted from the abstract by code: exact"
        else:
            how = "terms only: no sentence encoder installed" if s.signals == "coverage" else "terms and similarity"
            verdict = f"support {s.score:.2f} ({how}): " + ("supports the sentence" if s.supported else "does not")
        where = f"{md_escape(s.label.title(), one_line=True)} · " if s.label and s.label != "TITLE" else ""
        sentence = f"> {md_escape(s.sentence, one_line=True)}" if s.sentence else "_no abstract text to quote_"
        blocks.append(f"**\\[{n}\\]** {name} {pmid}  \n{where}_{verdict}_\n\n{sentence}")
    return "\n\n".join(blocks)
