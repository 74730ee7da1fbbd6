"""Step 5, synthesise: the cited answer from the relevant articles, and its TL;DR.

``llm`` mode: the LLM writes the synthesis (streamed, every ``[n]`` checked against the
reference list as it streams, :mod:`clinfo.pipeline.citations`) and a one-line TL;DR.
``extractive`` mode, for models too small to write one: code quotes the sentences of each
relevant abstract that best answer the question (:mod:`clinfo.pipeline.quotes`); nothing in it
is generated text. Citation numbers follow the relevance ranking: article ``n`` of the list
given is reference ``[n]``.

The evidence blocks reach the LLM strongest design first (:func:`strongest_first`), each still
under its rank number: a block's number is its citation number and its place in the reference
list, so numbers stay the ranking's whatever order the prompt shows them in, and a design
classifier that changes does not renumber an answer. The context budget still keeps the best
ranked articles. For a yes/no question the prompts also get the tally of stances by design
(:mod:`clinfo.appraisal.agreement`): the synthesis must say when the evidence disagrees, and the
TL;DR hedges to the strongest design among the articles that support or contradict.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from clinfo.appraisal.agreement import JUDGED_STANCES, Agreement, design_order, design_phrase, tally
from clinfo.llm.base import TokenCallback
from clinfo.models import ArticleSummary, ClaimCheck
from clinfo.pipeline.citations import CitationFilter
from clinfo.pipeline.run import QuestionRun
from clinfo.prompts import as_data

EXTRACTIVE_MAX = 5  # articles quoted in an extractive synthesis

NO_EVIDENCE_TLDR = (
    "No relevant evidence was found for this question in the literature searched; "
    "this is an absence of retrieved evidence, not evidence of absence."
)


@dataclass(frozen=True)
class Synthesis:
    """A written answer: its text (citations checked), the TL;DR, the reference numbers cited in
    order of first citation, and how many of the relevant articles (the first ``used``) it drew
    on, which become the reference list."""

    text: str
    tldr: str
    cited: list[int]
    used: int
    # the sentences' claim checks when code already knows them (quotes: exact); None: check the text
    claims: list[ClaimCheck] | None = None


def evidence_blocks(run: QuestionRun, relevant: list[ArticleSummary]) -> list[str]:
    """The relevant articles -> one numbered block each for the synthesis prompt, within
    ``settings.synthesis_context_chars`` (the articles left out are warned about)."""
    blocks: list[str] = []
    used = 0
    for n, s in enumerate(relevant, start=1):
        a = s.article
        stance = f"Answer to the question: {s.stance}.\n" if s.stance in JUDGED_STANCES else ""
        block = (
            f"[{n}] {a.title} ({a.journal or 'journal unknown'}, {a.year or 'n.d.'}). "
            f"Level of evidence: {design_phrase(a.design.kind, a.design.level)}. "
            f"Design: {s.design or 'not reported'}; sample size: {s.sample_size or 'not reported'}; "
            f"population: {s.population or 'not reported'}; risk of bias: {s.risk_of_bias or 'not reported'}.\n"
            f"{stance}Findings: {s.summary or s.reason}"
        )
        if blocks and used + len(block) > run.settings.synthesis_context_chars:
            run.warn(
                f"context budget reached: {len(relevant) - len(blocks)} relevant articles left out of the synthesis"
            )
            break
        blocks.append(as_data(block))  # between <evidence> fences in the prompt: a fence tag in it is defused
        used += len(block)
    return blocks


def strongest_first(given: list[ArticleSummary]) -> list[int]:
    """Indexes of ``given`` (numbered in rank order) in the order their blocks reach the LLM:
    strongest design first (level, then design), rank order among equals."""
    return sorted(range(len(given)), key=lambda i: (design_order(given[i].article.design), i))


def agreement_note(agreement: Agreement | None) -> str:
    """The tally for the synthesis prompt, with what to do about disagreement ("" when the
    question is not yes/no)."""
    if agreement is None:
        return ""
    if not agreement.judged:
        return (
            "\n\nAgreement: not judged (relevance was decided from retrieval scores); do not claim the"
            " articles agree or disagree."
        )
    note = f"\n\nAgreement on the question, as each article was classed at screening: {agreement.summary}."
    if agreement.disagreement:
        note += (
            "\nThe evidence disagrees: say so plainly in the first paragraph, and say which designs support"
            " and which contradict."
        )
    return note


def strength_note(given: list[ArticleSummary], agreement: Agreement | None) -> str:
    """The strongest design for the TL;DR's hedge: among the articles that support or contradict
    when stances were judged, among all the articles given otherwise."""
    if agreement is not None and agreement.judged:
        if agreement.strongest_design is None:
            return f"\n\nNo article's finding supports or contradicts the question ({agreement.summary})."
        strongest = design_phrase(agreement.strongest_design, agreement.strongest_level)
        note = f"\n\nStrongest design among the articles that support or contradict: {strongest}."
        note += f" Tally: {agreement.summary}."
        if agreement.disagreement:
            note += " The evidence disagrees."
        return note
    if not given:
        return ""
    best = min((s.article.design for s in given), key=design_order)
    return f"\n\nStrongest design among these articles: {design_phrase(best.kind, best.level)}."


async def synthesize(
    run: QuestionRun,
    relevant: list[ArticleSummary],
    on_token: TokenCallback | None,
    agreement: Agreement | None = None,
) -> Synthesis:
    """The relevant articles, best first -> the LLM's synthesis and TL;DR (two calls in parallel).

    The synthesis streams to ``on_token`` with its citations already checked; removed citations
    are counted in the trace. An empty synthesis is replaced by the article summaries, cited.
    ``agreement`` (a yes/no question's tally) reaches both prompts, counted over the articles given.
    """
    blocks = evidence_blocks(run, relevant)
    given = relevant[: len(blocks)]
    if agreement is not None and len(given) < len(relevant):
        agreement = tally(given, judged=agreement.judged)
    values = {
        "question": run.question,
        "articles": "\n\n".join(blocks[i] for i in strongest_first(given)),
        "count": len(blocks),
        "agreement": agreement_note(agreement),
        "strength": strength_note(given, agreement),
    }
    citations = CitationFilter(len(blocks))
    streamed = False

    def stream(chunk: str) -> None:
        nonlocal streamed
        streamed = True
        shown = citations.feed(chunk)
        if shown and on_token is not None:
            on_token(shown)

    synthesis_text, tldr = await asyncio.gather(
        run.call_llm("synthesize", "synthesize", values, None, 900, stream),
        run.call_llm("tldr", "tldr", values, None, 120),
    )
    if not streamed:  # a backend that ignores on_token
        stream(synthesis_text)
    tail = citations.flush()
    if tail and on_token is not None:
        on_token(tail)
    text = citations.text
    if not synthesis_text.strip():
        run.trace.unparseable_llm_outputs += 1
        run.warn("the LLM returned an empty synthesis; showing the article summaries instead")
        text = "\n\n".join(f"{s.summary or s.reason} [{n}]" for n, s in enumerate(relevant[: len(blocks)], 1))
        citations = CitationFilter(len(blocks))
        citations.feed(text)
        citations.flush()
        if on_token is not None:
            on_token(text)
    tldr = " ".join(tldr.split()).strip().strip('"')
    if tldr.lower().startswith("tl;dr:"):
        tldr = tldr[6:].strip()
    if not tldr:
        run.warn("the LLM returned an empty TL;DR")
    run.trace.invalid_citations_removed += citations.removed
    return Synthesis(text=text, tldr=tldr, cited=citations.cited, used=len(blocks))


def extractive_synthesis(
    question: str, relevant: list[ArticleSummary], screened: int, agreement: Agreement | None = None
) -> Synthesis:
    """The relevant articles, best first (``screened``: how many were screened) -> a synthesis
    written by code, for models too small to write one: from each of the first
    ``EXTRACTIVE_MAX`` articles, the sentences that best answer the question, quoted and cited.
    Nothing in it is generated text; the TL;DR says so, names the strongest design quoted and, for
    a yes/no question whose stances were not judged (``agreement``), says that too."""
    from clinfo.claims import quoted
    from clinfo.pipeline.quotes import best_quote

    used = relevant[:EXTRACTIVE_MAX]
    by_retrieval = all(s.relevance_source == "retrieval" for s in used)
    intro = (
        f"Sentences quoted from the {len(used)} most relevant article(s), chosen as those that best match the question"
        " (conclusions and results preferred); nothing below is generated text:\n"
    )
    lines = [intro]
    claims = []
    start = len(intro) + 1
    for n, s in enumerate(used, start=1):
        quote = best_quote(question, s.article)
        where = ", ".join(dict.fromkeys(x.label.title() for x in quote.sentences if x.label))
        lines.append(f"- {quote.text.rstrip()}{f' ({where})' if where else ''} [{n}]")
        # a quote is its article's own words: its support is exact, no scoring needed
        label = ", ".join(dict.fromkeys(x.label for x in quote.sentences if x.label))
        support = quoted(quote.text.rstrip(), s.pmid, label)
        end = start + len(lines[-1])
        claims.append(
            ClaimCheck(
                text=lines[-1][2:], start=start + 2, end=end, citations=[n], supports=[support], supported=True, score=1
            )
        )
        start = end + 1
    designs = [s.article.design for s in used]
    # level 1-2: systematic reviews, meta-analyses and randomised trials, as decided by code
    strong = sum(d.level is not None and d.level <= 2 for d in designs)
    best = min(designs, key=design_order)
    judged = "match the question closely enough to count as relevant" if by_retrieval else "were judged relevant"
    unjudged = agreement is not None and not agreement.judged
    tldr = (
        f"{len(relevant)} of {screened} screened articles {judged}"
        f" ({strong} trial(s) or systematic review(s) among those quoted; strongest design quoted:"
        f" {design_phrase(best.kind, best.level)}); no synthesis was generated"
        + (", and no finding was classed as supporting or contradicting the question" if unjudged else "")
        + ", so weigh the quoted sentences yourself."
    )
    text = "\n".join(lines)
    return Synthesis(text=text, tldr=tldr, cited=list(range(1, len(used) + 1)), used=len(used), claims=claims)
