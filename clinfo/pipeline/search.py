"""Steps 2 and 3: search every query, fuse the rankings, fetch; then prefilter the candidates.

Each query's ranking is searched concurrently (a zero-hit query is broadened once, see
:func:`clinfo.pipeline.plan.broaden_query`); rankings are fused by reciprocal rank, never through
a set that forgets order. A query's records are asked for as soon as its search returns, while the
other queries are still being searched; the fetch step then waits for them and asks for the rest.
The prefilter fuses the search order with BM25 against the question and keeps
``settings.prefilter_k`` articles, so the number of per-article LLM calls is bounded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from clinfo.models import Article, QueryRecord
from clinfo.pipeline.plan import broaden_query
from clinfo.pipeline.run import QuestionRun
from clinfo.rank_fusion import rrf
from clinfo.sources.base import search_studies
from clinfo.terms import search_words


@dataclass(frozen=True)
class QueryResult:
    """What one planned query gave: its record(s) for the answer (the query, and the broader
    query searched after zero hits) and the PMIDs found, best first."""

    records: list[QueryRecord]
    pmids: list[str]


@dataclass(frozen=True)
class SearchOutcome:
    """Every query searched (for the answer) and the fused ranking of the PMIDs found, ignored PMIDs left out."""

    records: list[QueryRecord]
    fused: list[str]


async def search_query(run: QuestionRun, query: str) -> QueryResult:
    """One query -> the source's ranked PMIDs (within the run's date window); after zero hits,
    the broader query's (unless the ``keywords`` planner wrote it: nothing is broader)."""
    limit = run.settings.results_per_query + len(run.ignore)
    result = await search_studies(run.source, query, limit=limit, dates=run.dates, studies=run.studies)
    run.left_out.update(result.left_out)
    records = [QueryRecord(query=query, hits=result.count)]
    if result.mode and result.mode not in run.trace.search_modes:
        run.trace.search_modes.append(result.mode)
    for w in result.warnings:
        run.warn(f"{query!r}: {w}")
    if result.pmids:
        return QueryResult(records, result.pmids)
    run.trace.zero_hit_queries += 1
    if run.settings.planner == "keywords":
        # the query already is the question's words OR-ed: nothing broader to search, and the
        # keyword planner is chosen for models that cannot write a query
        return QueryResult(records, [])
    broader = await broaden_query(run, query)
    if broader is None:
        return QueryResult(records, [])
    run.searched.add(broader.query)
    result = await search_studies(run.source, broader.query, limit=limit, dates=run.dates, studies=run.studies)
    run.left_out.update(result.left_out)
    records.append(QueryRecord(query=broader.query, hits=result.count, note=broader.note))
    return QueryResult(records, result.pmids)


async def search(run: QuestionRun, queries: list[str]) -> SearchOutcome:
    """The planned queries -> every query searched and one ranking fused from theirs (RRF)."""
    run.searched = set(queries)

    async def searched(query: str) -> QueryResult:
        result = await search_query(run, query)
        fetch_early(run, result.pmids)
        return result

    try:
        results = await asyncio.gather(*(searched(q) for q in queries))
    except BaseException:
        for task in run.early_fetches:
            task.cancel()
        run.early_fetches = []
        raise
    records = [r for result in results for r in result.records]
    rankings = [[p for p in result.pmids if p not in run.ignore] for result in results]
    return SearchOutcome(records, rrf(rankings))


def fetch_early(run: QuestionRun, pmids: list[str]) -> None:
    """Asks the source for the records of one query's ``pmids`` now, while other queries are
    still being searched (on PubMed, the request joins one still waiting for its turn in the
    NCBI budget, or waits behind the searches that asked first)."""
    new = [p for p in pmids if p not in run.ignore and p not in run.fetch_asked]
    if not new:
        return
    run.fetch_asked.update(new)
    task = asyncio.ensure_future(run.source.fetch(new))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failure is raised by fetch()
    run.early_fetches.append(task)


async def fetch(run: QuestionRun, fused: list[str]) -> list[Article]:
    """The fused PMIDs -> their records from the source (those asked for early, then the rest), in
    fused order, ignored PMIDs and records outside the run's study filter left out."""
    early, run.early_fetches = run.early_fetches, []
    fetched = [a for batch in await asyncio.gather(*early) for a in batch]
    rest = [p for p in fused if p not in run.fetch_asked]
    if rest:
        fetched += await run.source.fetch(rest)
    by_pmid = {a.pmid: a for a in fetched}
    articles = [by_pmid[p] for p in fused if p in by_pmid]
    return keep_studies(run, [a for a in articles if a.pmid not in run.ignore])


def keep_studies(run: QuestionRun, articles: list[Article]) -> list[Article]:
    """The records whose design (``Article.design``, decided by code) passes the run's study filter.

    PubMed's text words over-match (a cohort that ``randomly`` sampled its participants), and a
    plug-in source may ignore the filter: what the answer screens obeys it all the same. The
    records left out are counted in ``trace.study_filter.left_out``.
    """
    studies, note = run.studies, run.trace.study_filter
    if not studies.active:
        return articles
    kept = []
    for article in articles:
        if studies.admits(article):
            kept.append(article)
        else:
            run.left_out.add(article.pmid)
    if note is not None:
        note.left_out = len(run.left_out - run.ignore)
    return kept


def bm25_rank(query: str, documents: Sequence[str]) -> list[int]:
    """Indices of ``documents`` best first by BM25 (Okapi) against ``query``; stable for ties."""
    if not documents:
        return []
    from rank_bm25 import BM25Okapi

    corpus = [search_words(d) or ["\u0000"] for d in documents]
    scores = BM25Okapi(corpus).get_scores(search_words(query))
    return sorted(range(len(documents)), key=lambda i: (-float(scores[i]), i))


def prefilter(run: QuestionRun, fused: list[str], articles: list[Article]) -> list[Article]:
    """The fetched records -> the ``settings.prefilter_k`` best with an abstract, best first.

    Best is the reciprocal-rank fusion of the search order and BM25 of the question over title,
    abstract and MeSH. Records without an abstract are counted in the trace and dropped.
    """
    with_abstract = [a for a in articles if a.abstract.strip()]
    run.trace.articles_without_abstract = len(articles) - len(with_abstract)
    if not with_abstract:
        return []
    position = {pmid: i for i, pmid in enumerate(fused)}
    search_order = [a.pmid for a in sorted(with_abstract, key=lambda a: position.get(a.pmid, len(position)))]
    texts = [f"{a.title}\n{a.abstract}\n{' '.join(a.mesh)}" for a in with_abstract]
    bm25_order = [with_abstract[i].pmid for i in bm25_rank(run.question, texts)]
    by_pmid = {a.pmid: a for a in with_abstract}
    kept = [by_pmid[p] for p in rrf([search_order, bm25_order])[: run.settings.prefilter_k]]
    decide_designs_soon(kept)
    return kept


def decide_designs_soon(articles: list[Article]) -> None:
    """Decides each article's design (``Article.design``, about 2 ms a record, kept once decided) on a
    thread: screening then waits on the LLM, and the agreement tally, the synthesis prompt and the
    answer read the designs right after it. A record whose design fails here fails where it is read."""

    def decide() -> None:
        for article in articles:
            try:
                article.design  # noqa: B018 - decided and cached on the record
            except Exception:
                continue

    threading.Thread(target=decide, name="clinfo-designs", daemon=True).start()
