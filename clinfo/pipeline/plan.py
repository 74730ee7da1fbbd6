"""Step 1, plan: the PubMed queries for a question, validated; and a broader query after zero hits.

The LLM writes PubMed-syntax queries; code validates them (balanced parentheses and quotes,
known field tags) and asks once for a repair when none is usable. When even that fails, or the
``keywords`` planner is chosen (models that cannot write a query), the question's own words are
searched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from clinfo.errors import QuerySyntaxError
from clinfo.jsonout import parse_json
from clinfo.pipeline.run import QuestionRun
from clinfo.pipeline.schemas import QUERIES_SCHEMA, QUERY_SCHEMA
from clinfo.terms import search_words

_CONTENT_WORD = re.compile(r"[A-Za-z]{3,}")


@dataclass(frozen=True)
class CheckedQueries:
    """Queries that passed validation (normalised, deduplicated, in order) and why the others failed."""

    valid: list[str]
    problems: list[str]


@dataclass(frozen=True)
class BroaderQuery:
    """The query to search after one found nothing, and how it was chosen (for the answer's query list)."""

    query: str
    note: str


def check_queries(candidates: Iterable[str]) -> CheckedQueries:
    """Validate LLM-written queries: PubMed syntax, and at least one search word."""
    from clinfo.pubmed.query import validate

    good: list[str] = []
    problems: list[str] = []
    for raw in candidates:
        try:
            query = validate(raw)
        except QuerySyntaxError as exc:
            problems.append(f"{raw!r}: {exc}")
            continue
        if "<" in query or ">" in query or not _CONTENT_WORD.search(query):
            # small models copy the prompt's "<query>" placeholder or write no search term at all
            problems.append(f"{raw!r}: not a search query")
            continue
        if query not in good:
            good.append(query)
    return CheckedQueries(good, problems)


def read_queries(text: str) -> list[str]:
    """The queries in an LLM reply: JSON ``{"queries": [...]}`` / ``{"query": ...}`` / a list, or
    failing JSON, the lines that look like PubMed queries."""
    data = parse_json(text)
    if isinstance(data, dict):
        data = data.get("queries", data.get("query", []))
    if isinstance(data, str):
        data = [data]
    if isinstance(data, list):
        return [q.strip() for q in data if isinstance(q, str) and q.strip()]
    lines = [line.strip().lstrip("-*0123456789.) ").strip().strip('"`') for line in text.splitlines()]
    return [line for line in lines if "[" in line or " AND " in line or " OR " in line]


def fallback_query(question: str) -> str:
    """The question's content words OR-ed: high recall; the source's ranking and the BM25
    prefilter then do the precision work (what a weak planner needs)."""
    words = list(dict.fromkeys(search_words(question)))[:8]
    return " OR ".join(words) if words else question


async def plan_queries(run: QuestionRun) -> list[str]:
    """The question -> up to ``settings.num_queries`` valid PubMed queries (never none).

    One LLM call, a second to repair when no query is valid, and the question's words when
    that fails too. Invalid queries are counted and warned about in the trace.
    """
    settings, trace = run.settings, run.trace
    if settings.planner == "keywords":
        return [fallback_query(run.question)]
    n = settings.num_queries
    text = await run.call_llm("plan", "plan_queries", {"question": run.question, "n": n}, QUERIES_SCHEMA, 400)
    candidates = read_queries(text)
    checked = check_queries(candidates[: n * 2])
    if not checked.valid:
        trace.invalid_queries += len(checked.problems)
        problems = checked.problems
        if not candidates:
            trace.unparseable_llm_outputs += 1
            problems = problems or ["no queries could be read from the reply"]
        text = await run.call_llm(
            "plan",
            "repair_queries",
            {"question": run.question, "n": n, "problems": "\n".join(f"- {p}" for p in problems)},
            QUERIES_SCHEMA,
            400,
        )
        checked = check_queries(read_queries(text))
    trace.invalid_queries += len(checked.problems)
    for p in checked.problems:
        run.warn(f"invalid query dropped: {p}")
    queries = checked.valid
    if not queries:
        queries = [fallback_query(run.question)]
        run.warn(f"the LLM wrote no valid query; searching for {queries[0]!r}")
    return queries[:n]


async def broaden_query(run: QuestionRun, query: str) -> BroaderQuery | None:
    """A query that found nothing -> a wider one not yet searched in this run, or None.

    The LLM is asked for a broader query; when it writes none usable, the question's words are
    the wider query. None when the wider query is already being searched (searching it twice
    would count it twice in the fusion).
    """
    text = await run.call_llm("broaden", "broaden_query", {"question": run.question, "query": query}, QUERY_SCHEMA, 200)
    broader = check_queries(read_queries(text))
    fallback = fallback_query(run.question)
    if broader.valid and broader.valid[0] not in run.searched:
        return BroaderQuery(broader.valid[0], f"broadened from {query!r} after 0 hits")
    if fallback not in run.searched:
        return BroaderQuery(fallback, f"question words, after 0 hits for {query!r} and no usable broader query")
    if not broader.valid:
        run.warn(f"{query!r} returned no results and no broader query could be written ({'; '.join(broader.problems)})")
    return None
