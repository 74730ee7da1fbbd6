"""PubMedSource against the loopback E-utilities server: real HTTP, real records, injected faults."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import logging
from pathlib import Path
from typing import Any

import pytest

from clinfo.cache import Cache
from clinfo.errors import MalformedResponse, QuerySyntaxError, SourceError, SourceUnavailable
from clinfo.settings import Settings
from clinfo.sources import DateRange, Source, create_source
from clinfo.sources.pubmed import PubMedSource, _retry_after
from tests.support.eutils import EUtilsServer

SECRET = "ncbi-key-0123456789abcdef"
FAST = 50.0  # requests/s for tests that are not about the rate limit


def make_source(
    server: EUtilsServer, *, cache: Cache | None = None, rps: float | None = FAST, **settings: Any
) -> PubMedSource:
    settings.setdefault("eutils_retries", 2)
    settings.setdefault("eutils_timeout", 5.0)
    return PubMedSource(
        Settings(eutils_base_url=server.base_url, **settings), cache=cache, backoff=0.01, requests_per_second=rps
    )


def gaps(server: EUtilsServer, skip: int = 0) -> list[float]:
    """Spacing of request arrivals; ``skip`` drops warm-up requests, whose arrival also carries
    one-off client start-up costs that would make the next gap look shorter than it was sent."""
    times = sorted(r.time for r in server.requests)[skip:]
    return [b - a for a, b in zip(times, times[1:])]


# --------------------------------------------------------------------------- search and fetch


async def test_search_returns_ranked_pmids_and_posts_ncbi_params(eutils_server: EUtilsServer) -> None:
    term = eutils_server.sample_terms()[0]
    async with make_source(eutils_server, ncbi_email="dev@example.org") as source:
        assert isinstance(source, Source) and source.name == "pubmed"
        result = await source.search(term, limit=7)
    assert result.pmids == eutils_server.expected_pmids(term, 7)
    assert len(result.pmids) == 7 and result.count >= 7
    assert result.query == term and result.translation and "[All Fields]" in result.translation
    (request,) = eutils_server.requests
    assert request.method == "POST" and request.path.endswith("/esearch.fcgi") and request.query == ""
    assert request.params == {
        "db": "pubmed",
        "term": term,
        "retmax": "7",
        "sort": "relevance",
        "retmode": "xml",
        "tool": "clinfo",
        "email": "dev@example.org",
    }
    assert source.stats.requests == 1 and source.stats.retries == 0


async def test_recorded_ncbi_answer_and_zero_hits(eutils_server: EUtilsServer) -> None:
    async with make_source(eutils_server) as source:
        recorded = await source.search("biopython")
        zero = await source.search("abcXYZ")
        zero_computed = await source.search("zzqxv[tiab] AND sepsis")
    assert recorded.count == 63 and recorded.pmids[:2] == ["41282813", "41148224"]
    assert recorded.translation == '"biopython"[All Fields]'
    assert (zero.pmids, zero.count) == ([], 0)
    assert zero.warnings == ["PhraseNotFound: abcXYZ", "OutputMessage: No items found."]
    assert (zero_computed.pmids, zero_computed.count) == ([], 0) and "PhraseNotFound: zzqxv" in zero_computed.warnings


async def test_empty_query_is_rejected_without_a_request(eutils_server: EUtilsServer) -> None:
    async with make_source(eutils_server) as source:
        with pytest.raises(QuerySyntaxError):
            await source.search("   ")
    assert eutils_server.requests == []


async def test_date_window_sends_pdat_and_fills_open_ends(eutils_server: EUtilsServer) -> None:
    term = "covid-19"
    async with make_source(eutils_server) as source:
        recent = await source.search(term, limit=50, dates=DateRange(start=dt.date(2021, 1, 1)))
        older = await source.search(term, limit=50, dates=DateRange(end=dt.date(2020, 12, 31)))
        both = await source.search(term, limit=50, dates=DateRange(dt.date(2019, 3, 4), dt.date(2020, 6, 30)))
        articles = await source.fetch(recent.pmids)
    sent = [r.params for r in eutils_server.requests if r.endpoint == "esearch"]
    assert [(p["datetype"], p["mindate"], p["maxdate"]) for p in sent] == [
        ("pdat", "2021/01/01", "3000/12/31"),
        ("pdat", "1800/01/01", "2020/12/31"),
        ("pdat", "2019/03/04", "2020/06/30"),
    ]
    assert recent.pmids and older.pmids and not set(recent.pmids) & set(older.pmids)
    assert set(both.pmids) <= set(older.pmids)
    assert all(a.year is not None and a.year >= 2021 for a in articles)


async def test_fetch_keeps_order_dedups_and_drops_missing(eutils_server: EUtilsServer) -> None:
    pmids = eutils_server.expected_pmids("breast cancer", 6)
    asked = [pmids[3], "27797938", pmids[0], "999999999", pmids[3], " 12091962 ", pmids[5]]
    async with make_source(eutils_server) as source:
        articles = await source.fetch(asked)
    assert [a.pmid for a in articles] == [pmids[3], "27797938", pmids[0], "12091962", pmids[5]]
    assert articles[1].title.startswith("Leucocyte telomere length")
    (request,) = eutils_server.requests
    assert request.method == "POST" and request.params["retmode"] == "xml"
    assert request.params["id"].split(",") == [pmids[3], "27797938", pmids[0], "999999999", "12091962", pmids[5]]


async def test_fetch_splits_into_batches_of_200(eutils_server: EUtilsServer) -> None:
    pmids = sorted(eutils_server.corpus)[:450]
    async with make_source(eutils_server) as source:
        articles = await source.fetch(list(reversed(pmids)))
        assert await source.fetch([]) == []
    assert [a.pmid for a in articles] == list(reversed(pmids))
    sizes = sorted(len(r.params["id"].split(",")) for r in eutils_server.requests)
    assert sizes == [50, 200, 200]
    assert len({r.peer for r in eutils_server.requests}) <= 3  # pooled keep-alive connections


async def test_connection_is_reused_between_requests(eutils_server: EUtilsServer) -> None:
    async with make_source(eutils_server) as source:
        for term in eutils_server.sample_terms(3):
            await source.search(term)
    assert len({r.peer for r in eutils_server.requests}) == 1


def test_create_source_builds_pubmed(eutils_env: EUtilsServer) -> None:
    source = create_source("pubmed", Settings())
    assert isinstance(source, PubMedSource) and source.base_url == eutils_env.base_url


# --------------------------------------------------------------------------- faults and retries


async def test_429_with_retry_after_waits_then_succeeds(eutils_server: EUtilsServer) -> None:
    eutils_server.fail(429, retry_after=1)
    async with make_source(eutils_server) as source:
        result = await source.search("sepsis")
    assert result.pmids == eutils_server.expected_pmids("sepsis")
    first, second = eutils_server.requests
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 1.0
    assert (source.stats.requests, source.stats.retries) == (2, 1)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _retry_after("2") == 2.0 and _retry_after(" 0.5 ") == 0.5
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True)
    assert 25 <= (_retry_after(later) or 0) <= 31
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: go now
    assert _retry_after("soon") is None and _retry_after(None) is None


async def test_http_date_retry_after_is_honoured(eutils_server: EUtilsServer) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    eutils_server.fail(503, retry_after=email.utils.format_datetime(when, usegmt=True))
    async with make_source(eutils_server) as source:
        await source.search("sepsis")
    first, second = eutils_server.requests
    # HTTP-dates have whole-second resolution, so the wait is between 1 and 2 s
    assert second.time - first.time >= 0.9 and second.status == 200


async def test_server_errors_until_exhaustion(eutils_server: EUtilsServer) -> None:
    eutils_server.fail(500, times=10)
    async with make_source(eutils_server, eutils_retries=3) as source:
        with pytest.raises(SourceUnavailable) as err:
            await source.search("sepsis")
    assert len(eutils_server.requests) == 4
    message = str(err.value)
    assert "esearch" in message and "HTTP 500" in message and "4 attempts" in message and "\n" not in message
    assert source.stats.retries == 3


async def test_backoff_grows_between_attempts(eutils_server: EUtilsServer) -> None:
    eutils_server.fail(502, times=3)
    source = PubMedSource(
        Settings(eutils_base_url=eutils_server.base_url, eutils_retries=3), backoff=0.2, requests_per_second=FAST
    )
    async with source:
        await source.search("sepsis")
    waits = gaps(eutils_server)
    # exponential: 0.2 s, 0.4 s, 0.8 s before jitter (jitter only adds)
    assert waits[0] >= 0.2 and waits[1] >= 0.4 and waits[2] >= 0.8


async def test_slow_answer_times_out_and_is_retried(eutils_server: EUtilsServer) -> None:
    eutils_server.slow(1.5, times=1)
    async with make_source(eutils_server, eutils_timeout=0.3) as source:
        result = await source.search("sepsis")
    assert result.pmids and len(eutils_server.requests) == 2 and source.stats.retries == 1


async def test_always_slow_ends_in_source_unavailable(eutils_server: EUtilsServer) -> None:
    eutils_server.slow(1.5, times=5)
    async with make_source(eutils_server, eutils_timeout=0.3, eutils_retries=1) as source:
        with pytest.raises(SourceUnavailable) as err:
            await source.fetch(["27797938"])
    assert "efetch" in str(err.value) and "timed out" in str(err.value)
    assert len(eutils_server.requests) == 2


async def test_unreachable_server_is_source_unavailable() -> None:
    settings = Settings(eutils_base_url="http://127.0.0.1:9/entrez/eutils/", eutils_retries=1, eutils_timeout=2)
    async with PubMedSource(settings, backoff=0.01, requests_per_second=FAST) as source:
        with pytest.raises(SourceUnavailable, match="esearch unavailable after 2 attempts: connection failed"):
            await source.search("sepsis")


async def test_truncated_xml_is_retried_then_malformed(eutils_server: EUtilsServer) -> None:
    eutils_server.truncate(800, endpoint="efetch")
    async with make_source(eutils_server) as source:
        articles = await source.fetch(["27797938"])  # one truncated answer, then a whole one
        assert [a.pmid for a in articles] == ["27797938"]
        eutils_server.truncate(800, times=3, endpoint="efetch")
        with pytest.raises(MalformedResponse) as err:
            await source.fetch(["28775130"])
        eutils_server.truncate(300, times=3, endpoint="esearch")
        with pytest.raises(MalformedResponse, match="esearch"):
            await source.search("sepsis")
    assert "efetch" in str(err.value) and "\n" not in str(err.value)


async def test_other_4xx_fails_at_once(eutils_server: EUtilsServer) -> None:
    eutils_server.fail(400)
    async with make_source(eutils_server) as source:
        with pytest.raises(SourceError) as err:
            await source.search("sepsis")
    assert not isinstance(err.value, SourceUnavailable) and "HTTP 400" in str(err.value)
    assert len(eutils_server.requests) == 1


async def test_failed_batch_fails_the_fetch(eutils_server: EUtilsServer) -> None:
    eutils_server.fail(500, times=10, endpoint="efetch")
    async with make_source(eutils_server) as source:
        with pytest.raises(SourceUnavailable):
            await source.fetch(sorted(eutils_server.corpus)[:250])


# --------------------------------------------------------------------------- secrets


async def test_api_key_only_in_post_bodies(
    eutils_server: EUtilsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cache = Cache(tmp_path / "cache.sqlite3")
    source = make_source(eutils_server, cache=cache, ncbi_api_key=SECRET, ncbi_email="dev@example.org")
    async with source:
        result = await source.search("myocardial infarction", limit=5)
        await source.fetch(result.pmids)
        eutils_server.fail(429, times=3)  # NCBI's 429 body echoes the key back
        with pytest.raises(SourceUnavailable) as err:
            await source.search("stroke")
    cache.close()
    assert all(
        r.params["api_key"] == SECRET and SECRET not in r.query and r.method == "POST" for r in eutils_server.requests
    )
    assert all(r.params["tool"] == "clinfo" and r.params["email"] == "dev@example.org" for r in eutils_server.requests)
    assert SECRET not in str(err.value) and "HTTP 429" in str(err.value)
    assert "HTTP Request: POST" in caplog.text and "retrying" in caplog.text  # the logs were captured
    assert SECRET not in caplog.text
    files = list(tmp_path.glob("cache.sqlite3*"))
    assert files and all(SECRET.encode() not in f.read_bytes() for f in files)


# --------------------------------------------------------------------------- rate limit


async def test_concurrent_requests_are_spaced_at_3_per_second(eutils_server: EUtilsServer) -> None:
    async with make_source(eutils_server, rps=None) as source:
        await source.search("warm up")
        await asyncio.gather(*(source.search(t) for t in eutils_server.sample_terms(5)))
    assert len(eutils_server.requests) == 6
    assert min(gaps(eutils_server, skip=1)) >= 0.5 / 3  # starts are 1.25/3 s apart; arrivals jitter on a busy machine


async def test_api_key_raises_the_rate_to_10_per_second(eutils_server: EUtilsServer) -> None:
    async with make_source(eutils_server, rps=None, ncbi_api_key=SECRET) as source:
        await source.search("warm up")
        await asyncio.gather(*(source.search(t) for t in eutils_server.sample_terms(5) * 2))
    spacing = gaps(eutils_server, skip=1)
    assert len(spacing) == 9 and min(spacing) >= 0.5 / 10
    assert sum(spacing) < 0.7 * 9 / 3  # clearly faster than the keyless rate


async def test_instances_share_one_limiter_per_base_url(eutils_server: EUtilsServer) -> None:
    first, second = make_source(eutils_server, rps=None), make_source(eutils_server, rps=None)
    terms = eutils_server.sample_terms(4)
    await first.search("warm up")
    await second.search("warm up")
    await asyncio.gather(
        first.search(terms[0]), second.search(terms[1]), first.search(terms[2]), second.search(terms[3])
    )
    await first.aclose()
    await second.aclose()
    assert len(eutils_server.requests) == 6
    assert min(gaps(eutils_server, skip=2)) >= 0.5 / 3  # starts are 1.25/3 s apart; arrivals jitter on a busy machine


def test_rate_and_client_survive_repeated_asyncio_run(eutils_server: EUtilsServer) -> None:
    # The sync facade runs every question in a new event loop; the source and its limiter
    # outlive each loop.
    source = make_source(eutils_server, rps=None)
    terms = eutils_server.sample_terms(2)
    for term in terms * 2:
        assert asyncio.run(source.search(term)).pmids == eutils_server.expected_pmids(term)
    asyncio.run(source.aclose())
    fresh = make_source(eutils_server, rps=None)  # a new instance right after: same limiter
    asyncio.run(fresh.search(terms[0]))
    asyncio.run(fresh.aclose())
    assert len(eutils_server.requests) == 5
    assert min(gaps(eutils_server)) >= 0.5 / 3  # starts are 1.25/3 s apart; arrivals jitter on a busy machine


# --------------------------------------------------------------------------- cache


async def test_cache_hits_make_no_requests(eutils_server: EUtilsServer, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache.sqlite3")
    pmids = eutils_server.expected_pmids("pregnancy", 4)
    async with make_source(eutils_server, cache=cache) as source:
        first = await source.search("pregnancy", limit=4)
        articles = await source.fetch(pmids[:3])
    async with make_source(eutils_server, cache=cache) as again:
        assert await again.search("pregnancy", limit=4) == first
        assert await again.fetch(pmids[:3]) == articles
        assert len(eutils_server.requests) == 2
        assert (again.stats.requests, again.stats.cache_hits) == (0, 4)
        # overlapping fetch: only the article not seen before goes over the wire
        more = await again.fetch(pmids[2:4])
    assert [a.pmid for a in more] == pmids[2:4]
    assert eutils_server.requests[-1].params["id"] == pmids[3]
    other_limit = make_source(eutils_server, cache=cache)
    async with other_limit:
        await other_limit.search("pregnancy", limit=2)  # different parameters, different entry
    assert len(eutils_server.requests) == 4
    cache.close()


async def test_failures_are_not_cached(eutils_server: EUtilsServer, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache.sqlite3")
    eutils_server.fail(500, times=3)
    async with make_source(eutils_server, cache=cache) as source:
        with pytest.raises(SourceUnavailable):
            await source.search("asthma")
        assert (await source.search("asthma")).pmids == eutils_server.expected_pmids("asthma")
    assert source.stats.cache_hits == 0
    cache.close()


def test_server_as_a_script_context_manager_with_own_records() -> None:
    import httpx

    from tests.support.eutils import load_corpus

    record = load_corpus()["27797938"].xml
    with EUtilsServer(records={"27797938": record}, latency=0.05) as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/")
        hits = httpx.get(server.base_url + "esearch.fcgi", params={"term": "telomere[tiab] AND pancreatic"})
        fetched = httpx.get(server.base_url + "efetch.fcgi", params={"id": "27797938,1"})
        missing = httpx.get(server.base_url + "einfo.fcgi")
    assert "<Id>27797938</Id>" in hits.text and "<Count>1</Count>" in hits.text
    assert fetched.content.count(b"<PubmedArticle>") == 1 and record in fetched.content
    assert missing.status_code == 404
    assert [r.method for r in server.requests] == ["GET", "GET", "GET"]
    assert server.requests[1].time - server.requests[0].time >= 0.05  # latency added per response
