"""The steps of one question in order: plan -> search -> fetch -> set aside what is not evidence -> prefilter ->
screen -> synthesise -> check the claims (unless ``claim_check`` is off) -> Answer."""

from __future__ import annotations

from clinfo.appraisal.agreement import tally
from clinfo.appraisal.evidence_status import flags
from clinfo.appraisal.yes_no import is_yes_no_question
from clinfo.llm.base import TokenCallback
from clinfo.models import Answer, Reference
from clinfo.pipeline.claim_check import check_claims
from clinfo.pipeline.plan import plan_queries
from clinfo.pipeline.run import QuestionRun
from clinfo.pipeline.screen import BY_LLM, screen
from clinfo.pipeline.search import fetch, prefilter, search
from clinfo.pipeline.set_aside import set_aside, summary_line
from clinfo.pipeline.synthesis import NO_EVIDENCE_TLDR, extractive_synthesis, synthesize


async def answer_question(run: QuestionRun, on_token: TokenCallback | None = None) -> Answer:
    """Run every step for ``run``'s question and return the :class:`~clinfo.models.Answer`.

    Each step is timed in the trace and announced as a progress event. With no relevant
    article the answer says so plainly (``no_evidence``) and no synthesis is written; otherwise
    the reference list is built here from the records, numbered as the synthesis cites them.
    ``on_token`` receives the answer's text as it is written (or whole, when code writes it).
    """
    settings, trace = run.settings, run.trace
    answer = Answer(question=run.question, llm=run.llm.spec, source=run.source.name, trace=trace)
    with run.timed("plan"):
        queries = await plan_queries(run)
    run.emit("plan", f"{len(queries)} PubMed queries", queries=queries)
    with run.timed("search"):
        found = await search(run, queries)
    answer.queries = found.records
    trace.articles_found = len(found.fused)
    run.emit(
        "search",
        f"{len(found.fused)} articles found",
        count=len(found.fused),
        queries=[r.model_dump() for r in found.records],
    )
    with run.timed("fetch"):
        articles = await fetch(run, found.fused)
    run.emit("fetch", f"{len(articles)} records fetched", count=len(articles))
    articles, answer.set_aside = set_aside(run, articles)
    if answer.set_aside:
        run.emit("set_aside", summary_line(answer.set_aside), count=len(answer.set_aside))
    with run.timed("prefilter"):
        candidates = prefilter(run, found.fused, articles)
    run.emit("prefilter", f"{len(candidates)} candidates kept for screening", count=len(candidates))
    with run.timed("screen"):
        screening = await screen(run, candidates)
    summaries = screening.summaries
    relevant = sorted((s for s in summaries if s.relevant), key=lambda s: (-s.score, s.rank))
    answer.article_summaries = relevant
    answer.irrelevant_articles = [s for s in summaries if not s.relevant]
    run.emit(
        "screen",
        f"{len(relevant)} of {len(summaries)} articles judged relevant",
        relevant=len(relevant),
        total=len(summaries),
    )
    if not relevant:
        answer.no_evidence = True
        judged = (
            "none was judged relevant"
            if screening.decided_by == BY_LLM
            else f"none matched the question closely enough ({screening.decided_by})"
        )
        answer.synthesis = (
            f"No relevant evidence found. {len(found.fused)} articles were retrieved and {len(summaries)} screened"
            f" for this question; {judged}, so no synthesis was written."
        )
        if answer.set_aside:
            aside = summary_line(answer.set_aside)
            answer.synthesis = (
                f"No relevant evidence found. {len(found.fused)} articles were retrieved for this question;"
                f" {aside} and {len(summaries)} screened; {judged}, so no synthesis was written."
                if summaries
                else f"No relevant evidence found. {len(found.fused)} articles were retrieved for this question;"
                f" {aside}, and no other record had an abstract to screen, so no synthesis was written."
            )
        answer.tldr = NO_EVIDENCE_TLDR
        if on_token is not None:
            on_token(answer.synthesis)
    else:
        if is_yes_no_question(run.question):
            # stances read by the model only when it screened; retrieval scores leave them "not judged"
            answer.agreement = tally(relevant, judged=screening.decided_by == BY_LLM)
        run.emit("synthesize", "writing the synthesis", articles=len(relevant))
        with run.timed("synthesize"):
            if settings.synthesis_mode == "extractive":
                written = extractive_synthesis(run.question, relevant, len(summaries), answer.agreement)
                if on_token is not None:
                    on_token(written.text)
            else:
                written = await synthesize(run, relevant, on_token, answer.agreement)
        answer.synthesis, answer.tldr = written.text, written.tldr
        cited = written.cited
        if settings.claim_check != "off":
            with run.timed("claims"):
                answer.synthesis, answer.claims, cited = await check_claims(run, written, relevant[: written.used])
        answer.references = [
            Reference(
                n=n,
                pmid=s.pmid,
                citation=s.article.citation,
                url=s.article.url,
                title=s.article.title,
                cited=n in cited,
                flags=[f.text for f in flags(s.article)],
                design=s.article.design,
            )
            for n, s in enumerate(relevant[: written.used], start=1)
        ]
    trace.source_requests = run.source.stats.requests
    trace.source_cache_hits = run.source.stats.cache_hits
    run.emit("done", "answer ready", seconds=trace.total_seconds)
    return answer
