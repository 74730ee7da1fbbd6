"""Step 4, screen: which candidates bear on the question, with a reason (and, from an LLM, a summary).

Two ways, chosen by ``settings.screening``: ``llm`` asks the model about each candidate, in
parallel within the run's concurrency bound; ``retrieval`` decides from retrieval signals
(:mod:`clinfo.pipeline.relevance`: term coverage, plus similarity where an encoder runtime is
installed) with no LLM call, for models too small to judge.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from clinfo.appraisal.agreement import parse_stance
from clinfo.appraisal.yes_no import is_yes_no_question
from clinfo.errors import LLMError, LLMUnavailable
from clinfo.jsonout import parse_json
from clinfo.models import Article, ArticleSummary
from clinfo.pipeline.run import QuestionRun
from clinfo.pipeline.schemas import RELEVANCE_SCHEMA, SCREEN_SCHEMA, SUMMARY_FIELDS, with_stance
from clinfo.prompts import as_data

BY_LLM = "the LLM's judgement"

# asked of a yes/no question's screening; empty otherwise, so other questions' prompts (and their
# cached replies) are unchanged
STANCE_INSTRUCTION = (
    "\nThe question asks whether something is so. Say what this article's own finding answers:"
    ' "supporting" (yes), "contradicting" (no), "mixed" (yes in part, no in part) or "not answering"'
    " (neither way)."
)
STANCE_FIELD = ', "stance": "<supporting, contradicting, mixed or not answering>"'


@dataclass(frozen=True)
class Screening:
    """One summary per candidate screened (in candidate order; a candidate the LLM failed on is
    left out) and what decided relevance, for the answer's no-evidence message."""

    summaries: list[ArticleSummary]
    decided_by: str


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _as_score(value: Any, relevant: bool) -> int:
    try:
        score = int(round(float(value)))
    except (TypeError, ValueError):
        score = 6 if relevant else 1
    return max(0, min(10, score))


def _field_text(value: Any) -> str:
    text = " ".join(str(value or "").split())
    # small models copy the prompt's placeholders ("<one sentence>", "...") instead of writing
    if text in ("...", "…") or (text.startswith("<") and text.endswith(">")):
        return ""
    return text


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("yes", "true", "relevant"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("no", "false", "irrelevant", "not relevant"):
        return False
    return None


async def screen_article(run: QuestionRun, rank: int, article: Article) -> ArticleSummary | None:
    """One candidate (``rank``: its prefilter position) -> the LLM's verdict, score and summary fields.

    An unreadable reply counts as not relevant (and is counted in the trace); a failed call
    leaves the article out (None) with a warning, unless the backend is unavailable, which
    stops the run.
    """
    settings = run.settings
    stance = is_yes_no_question(run.question)
    values = {
        "question": run.question,
        # the article's texts go between <article> fences in the prompt: a fence tag in them is defused
        "title": as_data(article.title or "(no title)"),
        "journal": as_data(article.journal or "unknown journal"),
        "year": article.year or "year unknown",
        "publication_types": as_data(", ".join(article.publication_types) or "not stated"),
        "abstract": as_data(_clip(article.abstract, settings.screen_abstract_chars)),
        "stance_instruction": STANCE_INSTRUCTION if stance else "",
        "stance_field": STANCE_FIELD if stance else "",
    }
    requested = [k for k in SUMMARY_FIELDS if k != "reason"] if settings.summarize else []
    try:
        schema = SCREEN_SCHEMA if settings.summarize else RELEVANCE_SCHEMA
        schema = with_stance(schema) if stance else schema
        text = await run.call_llm("screen", "screen_article", values, schema, 500 if settings.summarize else 150)
    except LLMUnavailable:
        raise
    except LLMError as exc:
        run.warn(f"PMID {article.pmid} not screened: {exc}")
        return None
    data = parse_json(text)
    relevant = _as_bool(data.get("relevant")) if isinstance(data, dict) else None
    if relevant is None:
        run.trace.unparseable_llm_outputs += 1
        run.warn(f"PMID {article.pmid}: unreadable screening reply, counted as not relevant")
        return ArticleSummary(
            article=article,
            relevant=False,
            reason="the LLM's judgement could not be read",
            rank=rank,
            fields_requested=requested,
            stance="not judged" if stance else None,
        )
    assert isinstance(data, dict)
    fields = {k: _field_text(data.get(k)) for k in SUMMARY_FIELDS if settings.summarize or k == "reason"}
    return ArticleSummary(
        article=article,
        relevant=relevant,
        score=_as_score(data.get("score"), relevant),
        rank=rank,
        relevance_source="llm",
        fields_requested=requested,
        # a stance the reply left out or garbled is "not judged", never guessed
        stance=(parse_stance(data.get("stance")) or "not judged") if stance else None,
        **fields,
    )


async def screen_by_llm(run: QuestionRun, articles: list[Article]) -> Screening:
    """The candidates -> the LLM's summary of each, all in flight at once (bounded by the run),
    with a progress event per article."""
    done = 0

    async def one(rank: int, article: Article) -> ArticleSummary | None:
        nonlocal done
        summary = await screen_article(run, rank, article)
        done += 1
        run.emit(
            "screen",
            f"screened {done}/{len(articles)}",
            done=done,
            total=len(articles),
            pmid=article.pmid,
            relevant=bool(summary and summary.relevant),
        )
        return summary

    results = await asyncio.gather(*(one(i, a) for i, a in enumerate(articles)))
    summaries = [r for r in results if r is not None]
    run.trace.articles_screened = len(summaries)
    return Screening(summaries, BY_LLM)


async def screen_by_retrieval(run: QuestionRun, articles: list[Article]) -> Screening:
    """The candidates -> a verdict for each from retrieval signals (term coverage, plus
    similarity where an encoder runtime is installed). No LLM call."""
    # imported on use: its term background is read only when retrieval screens; and the module,
    # not its functions, since the calibration benchmark wraps relevance.similarities
    from clinfo.pipeline import relevance

    settings = run.settings
    similarity = None
    if settings.relevance_similarity:
        similarity = await asyncio.to_thread(relevance.similarities, run.question, articles)
        if similarity is None:
            run.warn(
                "relevance from term coverage only: the similarity model is not installed or cannot load"
                " (pip install 'clinfo[offline]')"
            )
    verdicts = relevance.judge(run.question, articles, similarity=similarity, threshold=settings.relevance_threshold)
    # no model read the findings: a yes/no question's stances are "not judged", said so in the answer
    stance = "not judged" if is_yes_no_question(run.question) else None
    summaries = [
        ArticleSummary(
            article=a,
            relevant=v.relevant,
            score=round(10 * v.score),
            reason=v.reason,
            rank=rank,
            relevance_source="retrieval",
            fields_requested=[],
            stance=stance,
        )
        for rank, (a, v) in enumerate(zip(articles, verdicts))
    ]
    run.trace.articles_screened = len(summaries)
    run.emit(
        "screen",
        f"screened {len(summaries)}/{len(articles)} by retrieval scores",
        done=len(summaries),
        total=len(articles),
    )
    return Screening(summaries, "term coverage and similarity" if similarity is not None else "term coverage")


async def screen(run: QuestionRun, articles: list[Article]) -> Screening:
    """The prefiltered candidates -> their screening, by the LLM or by retrieval signals (``settings.screening``)."""
    if run.settings.screening == "retrieval":
        return await screen_by_retrieval(run, articles)
    return await screen_by_llm(run, articles)
