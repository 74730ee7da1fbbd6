"""A query's records are asked for as soon as its search returns, within the NCBI budget.

Against the loopback E-utilities server with the real limiter: a fetch asked for while other
requests wait takes no start ahead of them, and fetches asked for while one waits for its start
leave in that one request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from clinfo.pipeline.run import QuestionRun
from clinfo.pipeline.search import fetch, search
from clinfo.settings import Settings
from clinfo.sources.pubmed import PubMedSource
from tests.support.eutils import EUtilsServer
from tests.support.scripted import ScriptedLLM


def source(server: EUtilsServer, tmp_path: Path, rps: float) -> PubMedSource:
    settings = Settings(eutils_base_url=server.base_url, eutils_rate_scope="process", cache_dir=tmp_path)
    return PubMedSource(settings, requests_per_second=rps)


def endpoints(server: EUtilsServer) -> list[str]:
    return [r.endpoint for r in sorted(server.requests, key=lambda r: r.time)]


async def test_fetches_asked_while_one_waits_for_its_start_leave_in_that_request(
    eutils_server: EUtilsServer, tmp_path: Path
) -> None:
    pubmed = source(eutils_server, tmp_path, rps=2.0)
    first, second = list(eutils_server.corpus)[:3], list(eutils_server.corpus)[3:7]
    try:
        await pubmed.search("cancer[tiab]")  # takes the budget's start: both fetches wait for the next
        a, b = await asyncio.gather(pubmed.fetch(first), pubmed.fetch(second))
    finally:
        await pubmed.aclose()
    assert [x.pmid for x in a] == first and [x.pmid for x in b] == second  # each caller gets its own
    assert endpoints(eutils_server) == ["esearch", "efetch"]
    assert eutils_server.requests[-1].params["id"].split(",") == first + second
    assert pubmed.stats.requests == 2


async def test_records_are_asked_for_as_searches_return_without_taking_a_search_start(
    eutils_server: EUtilsServer, tmp_path: Path
) -> None:
    pubmed = source(eutils_server, tmp_path, rps=4.0)
    settings = Settings(eutils_base_url=eutils_server.base_url)
    run = QuestionRun(settings, ScriptedLLM({}), pubmed, "Is aspirin or heparin better after stroke?")
    queries = ["stroke[tiab]", "aspirin[tiab]", "heparin[tiab]"]
    try:
        found = await search(run, queries)
        articles = await fetch(run, found.fused)
    finally:
        await pubmed.aclose()
    # the first query's records were asked for while the other two searches waited for their starts:
    # first come, first served, so every search went before any efetch
    order = endpoints(eutils_server)
    assert order[:3] == ["esearch"] * 3 and set(order[3:]) == {"efetch"}
    # every record found was fetched, once, and comes back in the fused order
    assert [a.pmid for a in articles] == [p for p in found.fused if p in {a.pmid for a in articles}]
    assert {a.pmid for a in articles} == set(found.fused)
    asked = [p for r in eutils_server.requests if r.endpoint == "efetch" for p in r.params["id"].split(",")]
    assert sorted(asked) == sorted(found.fused)
