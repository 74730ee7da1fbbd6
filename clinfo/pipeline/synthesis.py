"""Step 5, synthesise: the cited answer from the relevant articles, and its TL;DR.

``llm`` mode: the LLM writes the synthesis (streamed, every ``[n]`` checked against the
reference list as it streams, :mod:`clinfo.pipeline.citations`) and a one-line TL;DR.
``extractive`` mode, for models too small to write one: code quotes the sentences of each
relevant abstract that best answer the question (:mod:`clinfo.pipeline.quotes`); nothing in it
is generated text. Citation numbers follow the relevance ranking: article ``n`` of the list
given is reference ``[n]``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from clinfo.llm.base import TokenCallback
from clinfo.models import ArticleSummary
from clinfo.pipeline.citations import CitationFilter
from clinfo.pipeline.run import QuestionRun

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


def evidence_blocks(run: QuestionRun, relevant: list[ArticleSummary]) -> list[str]:
    """The relevant articles -> one numbered block each for the synthesis prompt, within
    ``settings.synthesis_context_chars`` (the articles left out are warned about)."""
    blocks: list[str] = []
    used = 0
    for n, s in enumerate(relevant, start=1):
        a = s.article
        block = (
            f"[{n}] {a.title} ({a.journal or 'journal unknown'}, {a.year or 'n.d.'}). "
            f"Design: {s.design or 'not reported'}; sample size: {s.sample_size or 'not reported'}; "
            f"population: {s.population or 'not reported'}; risk of bias: {s.risk_of_bias or 'not reported'}.\n"
            f"Findings: {s.summary or s.reason}"
        )
        if blocks and used + len(block) > run.settings.synthesis_context_chars:
            run.warn(
                f"context budget reached: {len(relevant) - len(blocks)} relevant articles left out of the synthesis"
            )
            break
        blocks.append(block)
        used += len(block)
    return blocks


async def synthesize(run: QuestionRun, relevant: list[ArticleSummary], on_token: TokenCallback | None) -> Synthesis:
    """The relevant articles, best first -> the LLM's synthesis and TL;DR (two calls in parallel).

    The synthesis streams to ``on_token`` with its citations already checked; removed citations
    are counted in the trace. An empty synthesis is replaced by the article summaries, cited.
    """
    blocks = evidence_blocks(run, relevant)
    values = {"question": run.question, "articles": "\n\n".join(blocks), "count": len(blocks)}
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


def extractive_synthesis(question: str, relevant: list[ArticleSummary], screened: int) -> Synthesis:
    """The relevant articles, best first (``screened``: how many were screened) -> a synthesis
    written by code, for models too small to write one: from each of the first
    ``EXTRACTIVE_MAX`` articles, the sentences that best answer the question, quoted and cited.
    Nothing in it is generated text; the TL;DR says so."""
    from clinfo.pipeline.quotes import best_quote

    used = relevant[:EXTRACTIVE_MAX]
    by_retrieval = all(s.relevance_source == "retrieval" for s in used)
    intro = (
        f"Sentences quoted from the {len(used)} most relevant article(s), chosen as those that best match the question"
        " (conclusions and results preferred); nothing below is generated text:\n"
    )
    lines = [intro]
    for n, s in enumerate(used, start=1):
        quote = best_quote(question, s.article)
        where = ", ".join(dict.fromkeys(x.label.title() for x in quote.sentences if x.label))
        lines.append(f"- {quote.text.rstrip()}{f' ({where})' if where else ''} [{n}]")
    designs = [pt for s in used for pt in s.article.publication_types]
    strong = sum(pt in ("Randomized Controlled Trial", "Meta-Analysis", "Systematic Review") for pt in designs)
    judged = "match the question closely enough to count as relevant" if by_retrieval else "were judged relevant"
    tldr = (
        f"{len(relevant)} of {screened} screened articles {judged}"
        f" ({strong} trial(s) or systematic review(s) among those quoted); no synthesis was generated,"
        " so weigh the quoted sentences yourself."
    )
    return Synthesis(text="\n".join(lines), tldr=tldr, cited=list(range(1, len(used) + 1)), used=len(used))
