"""The cache: lifetimes, the server in the key, a size cap, and failures that cost the cache, never the answer.

Entries expire by a clock the tests move (no sleeping, no timing); E-utilities traffic is the
loopback server's, on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from clinfo import ClinfoAI
from clinfo.cache import LLM, RECORDS, SEARCH, WARNING_PREFIX, Cache, open_cache
from clinfo.llm.base import CachedLLM, LLMRequest
from clinfo.llm.registry import create_llm
from clinfo.settings import Settings
from clinfo.sources.pubmed import PubMedSource
from clinfo.store import Database
from tests.support.eutils import EUtilsServer, load_corpus
from tests.support.openai_server import OpenAIServer
from tests.support.postgres import PG_PASSWORD
from tests.support.scripted import ScriptedLLM, screen_reply

HOUR = 3600.0
KEY = "ncbi-key-0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | Database:
    if request.param == "sqlite":
        return tmp_path / "cache.sqlite3"
    return Database(request.getfixturevalue("postgres_url"))


def source(server: EUtilsServer, cache: Cache, **settings: Any) -> PubMedSource:
    return PubMedSource(
        Settings(eutils_base_url=server.base_url, eutils_retries=0, **settings), cache=cache, requests_per_second=50.0
    )


def endpoints(server: EUtilsServer) -> list[str]:
    return [r.endpoint for r in server.requests]


# ---------------------------------------------------------------- lifetimes


async def test_search_results_expire_before_records(where: Path | Database, eutils_server: EUtilsServer) -> None:
    clock = Clock()
    cache = Cache(where, ttl={SEARCH: 24 * HOUR, RECORDS: 7 * 24 * HOUR}, clock=clock)
    term = eutils_server.sample_terms(1)[0]
    async with source(eutils_server, cache) as pubmed:
        first = await pubmed.search(term, limit=3)
        articles = await pubmed.fetch(first.pmids)
        clock.now += 23 * HOUR  # within both lifetimes: nothing is asked again
        assert await pubmed.search(term, limit=3) == first and await pubmed.fetch(first.pmids) == articles
        assert endpoints(eutils_server) == ["esearch", "efetch"]
        clock.now += 2 * HOUR  # the search result expired (a new trial would show), the records did not
        assert (await pubmed.search(term, limit=3)).pmids == first.pmids
        assert await pubmed.fetch(first.pmids) == articles
        assert endpoints(eutils_server) == ["esearch", "efetch", "esearch"]
        clock.now += 7 * 24 * HOUR  # now the records too (a retraction would show)
        await pubmed.fetch(first.pmids)
    assert endpoints(eutils_server) == ["esearch", "efetch", "esearch", "efetch"]
    assert eutils_server.requests[-1].params["id"].split(",") == first.pmids


def test_a_zero_lifetime_turns_one_namespace_off(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c.sqlite3", ttl={LLM: 0})
    cache.set(LLM, {"q": 1}, "reply")
    cache.set(SEARCH, {"q": 1}, "hits")
    assert cache.get(LLM, {"q": 1}) is None and cache.get(SEARCH, {"q": 1}) == b"hits"


def test_settings_give_the_lifetimes_and_the_cap(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, cache_ttl_search=60, cache_ttl_records=120, cache_ttl_llm=0, cache_max_mb=2)
    cache = open_cache(settings)
    assert (cache.ttl[SEARCH], cache.ttl[RECORDS], cache.ttl[LLM]) == (60, 120, 0)
    assert cache.max_bytes == 2 * 2**20 and cache.path == tmp_path / "cache.sqlite3"


# ---------------------------------------------------------------- the server is part of the key


async def test_another_servers_answers_are_never_served_as_ncbis(where: Path | Database) -> None:
    corpus = load_corpus()
    with EUtilsServer() as ncbi:
        term = ncbi.sample_terms(1, min_hits=4)[0]
        ncbi_hits = ncbi.expected_pmids(term, 3)
        # the mirror holds other records, so the same query has another answer there
        others = {p: r.xml for p, r in corpus.items() if p not in ncbi_hits}
        with EUtilsServer(records=others) as mirror:
            cache = Cache(where)
            async with source(mirror, cache) as from_mirror:
                mirror_hits = (await from_mirror.search(term, limit=3)).pmids
            async with source(ncbi, cache) as from_ncbi:
                assert (await from_ncbi.search(term, limit=3)).pmids == ncbi_hits
                await from_ncbi.fetch(ncbi_hits)
            assert mirror_hits and mirror_hits != ncbi_hits
            assert endpoints(ncbi) == ["esearch", "efetch"]  # asked, not served the mirror's answer
            async with source(mirror, cache) as again:  # each server's entry stays its own
                assert (await again.search(term, limit=3)).pmids == mirror_hits
            assert endpoints(mirror) == ["esearch"]


async def test_an_llm_servers_completions_are_its_own(where: Path | Database) -> None:
    # one model name on two OpenAI-compatible servers: the second is asked, not served the first's reply
    cache = Cache(where)
    request = LLMRequest(messages=({"role": "user", "content": "Question: does zinc shorten colds?"},), max_tokens=32)
    with OpenAIServer() as first, OpenAIServer() as second:
        for server in (first, second, first):
            llm = CachedLLM(create_llm("vllm:bench", Settings(base_url=server.base_url)), cache)
            try:
                completion = await llm.complete(request)
            finally:
                await llm.aclose()
            assert completion.text
        assert (first.requests, second.requests) == (1, 1)  # the repeat on the first server was a hit
    assert completion.cached


# ---------------------------------------------------------------- size cap


def test_the_size_cap_evicts_the_oldest(where: Path | Database) -> None:
    clock = Clock()
    cache = Cache(where, max_bytes=5000, clock=clock)
    for i in range(12):
        clock.now += 1
        cache.set(RECORDS, {"id": i}, bytes([i]) * 1000)
    kept = [i for i in range(12) if cache.get(RECORDS, {"id": i}) is not None]
    assert kept == list(range(12 - len(kept), 12))  # the newest, in one run
    assert 3 <= len(kept) <= 5  # within the cap, and not emptied
    with (cache.db or Database(where)).transaction() as tx:  # type: ignore[arg-type]
        assert tx.execute("SELECT SUM(size) FROM clinfo_cache").fetchone()[0] <= 5000


def test_expired_entries_go_first(tmp_path: Path) -> None:
    clock = Clock()
    cache = Cache(tmp_path / "c.sqlite3", ttl={SEARCH: 10.0, RECORDS: 1000.0}, max_bytes=10**6, clock=clock)
    cache.set(RECORDS, {"id": "old record"}, b"r")
    cache.set(SEARCH, {"q": "old search"}, b"s")
    clock.now += 20
    assert cache.evict() == 1  # the expired search; the record, older but alive, stays
    with sqlite3.connect(tmp_path / "c.sqlite3") as conn:
        assert conn.execute("SELECT namespace FROM clinfo_cache").fetchall() == [(RECORDS,)]


# ---------------------------------------------------------------- failures cost the cache, not the answer


def ask(server: EUtilsServer, **settings: Any) -> Any:
    llm = ScriptedLLM(
        {
            "plan": json.dumps({"queries": [server.sample_terms(1)[0]]}),
            "screen": screen_reply(lambda title: True),
            "synthesize": "The retrieved study bears on it [1].",
            "tldr": "Evidence is limited.",
        }
    )
    clinfo = ClinfoAI(
        llm=llm, source="pubmed", eutils_base_url=server.base_url, num_queries=1, prefilter_k=2, **settings
    )
    return clinfo.forward("What is known about it?")


def cache_warnings(answer: Any) -> list[str]:
    return [w for w in answer.trace.warnings if w.startswith(WARNING_PREFIX)]


def test_a_corrupt_cache_file_is_one_warning_and_the_answer_comes(tmp_path: Path, eutils_server: EUtilsServer) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "cache.sqlite3").write_bytes(b"this is not a database" * 200)
    answer = ask(eutils_server, cache_dir=cache_dir)
    assert answer.references  # answered from the server
    (warning,) = cache_warnings(answer)
    assert "file is not a database" in warning and "answered without it" in warning


def test_a_locked_cache_is_one_warning_and_the_answer_comes(tmp_path: Path, eutils_server: EUtilsServer) -> None:
    path = tmp_path / "cache.sqlite3"
    Cache(path).set(LLM, {"warm": 1}, "up")  # the tables exist
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock and keeps it
    try:
        cache = Cache(path, timeout=0.2)
        term = eutils_server.sample_terms(1)[0]
        result = PubMedSource(
            Settings(eutils_base_url=eutils_server.base_url), cache=cache, requests_per_second=50.0
        ).search(term)
        import asyncio

        assert (asyncio.run(result)).pmids == eutils_server.expected_pmids(term)
        assert cache.problem is not None and "locked" in cache.problem
        assert cache.enabled is False  # said once, then left alone for the rest of the question
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_database_that_is_down_is_one_warning_without_its_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql://clinfo:{PG_PASSWORD}@/clinfo?host={tmp_path}&port=1"
    cache = open_cache(Settings(database_url=url))
    assert cache.get(SEARCH, {"q": 1}) is None
    cache.set(SEARCH, {"q": 1}, "v")
    assert cache.get(SEARCH, {"q": 2}) is None
    assert cache.problem and cache.problem.startswith(f"{WARNING_PREFIX} (database postgresql://clinfo@/clinfo?")
    assert PG_PASSWORD not in cache.problem and PG_PASSWORD not in caplog.text
    assert caplog.text.count(WARNING_PREFIX) == 1


def test_the_answers_trace_has_one_warning_when_the_database_is_down(
    tmp_path: Path, eutils_server: EUtilsServer
) -> None:
    answer = ask(eutils_server, database_url=f"postgresql://clinfo@/clinfo?host={tmp_path}&port=1")
    assert answer.references
    assert len(cache_warnings(answer)) == 1


# ---------------------------------------------------------------- shared and keyless


def test_two_hosts_share_the_postgres_cache_and_no_key_is_stored(postgres_url: str) -> None:
    host_a, host_b = Cache(Database(postgres_url)), Cache(Database(postgres_url))
    request = {"endpoint": "esearch", "term": "zinc", "api_key": KEY, "server": "https://eutils.example/"}
    host_a.set(SEARCH, request, json.dumps({"pmids": ["1"]}))
    assert json.loads(host_b.get(SEARCH, {**request, "api_key": "another"}) or b"") == {"pmids": ["1"]}
    with Database(postgres_url).transaction() as tx:
        rows = tx.execute("SELECT namespace, key, value FROM clinfo_cache").fetchall()
    assert len(rows) == 1 and all(KEY not in str(v) and KEY.encode() not in bytes(rows[0][2]) for v in rows[0])
