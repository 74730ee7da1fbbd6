"""Answer -> Markdown for terminals, files and the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clinfo.models import Answer


def trace_line(answer: "Answer") -> str:
    t = answer.trace
    cost = "cost unknown" if t.cost_usd is None else f"${t.cost_usd:.4f}"
    return (
        f"{t.articles_found} articles found, {t.articles_screened} screened, {len(answer.article_summaries)} relevant"
        f" · {t.llm_calls} LLM calls ({t.llm_cache_hits} cached), {t.prompt_tokens + t.completion_tokens} tokens, {cost}"
        f" · {t.total_seconds:.1f} s"
    )


def references_markdown(answer: "Answer") -> str:
    return "\n".join(f"{r.n}. {r.citation} <{r.url}>" for r in answer.references)


def answer_markdown(answer: "Answer", include_question: bool = True) -> str:
    parts: list[str] = []
    if include_question:
        parts.append(f"## {answer.question}")
    if answer.tldr:
        parts.append(f"**TL;DR:** {answer.tldr}")
    parts.append(answer.synthesis)
    if answer.references:
        parts.append("### References\n\n" + references_markdown(answer))
    if answer.queries:
        parts.append("### Searches\n\n" + "\n".join(f"- `{q.query}` ({q.hits} hits){' — ' + q.note if q.note else ''}" for q in answer.queries))
    parts.append(f"_{trace_line(answer)}_")
    return "\n\n".join(p for p in parts if p)
