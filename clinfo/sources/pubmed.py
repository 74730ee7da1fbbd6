"""Live PubMed through NCBI E-utilities (esearch + efetch).

Every request is a form-encoded POST: the API key then travels in the body, never in a URL that
httpx, proxies or servers log. Requests draw evenly spaced start times from one budget per
E-utilities base URL, shared by every thread and event loop and, by default, every process on the
host (:mod:`clinfo.sources.rate_limit`), or with a PostgreSQL ``database_url`` every host using it
(one budget per API key, :mod:`clinfo.store.budget`); they retry transient failures with backoff,
and map every failure to a typed :mod:`clinfo.errors` exception whose message names the endpoint
and never the key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import io
import json
import logging
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from clinfo.cache import RECORDS as CACHE_RECORDS
from clinfo.cache import SEARCH as CACHE_SEARCH
from clinfo.errors import MalformedResponse, QuerySyntaxError, SourceError, SourceUnavailable, one_line
from clinfo.models import Article
from clinfo.pubmed.xml import parse_efetch
from clinfo.sources.base import DateRange, SearchResult, SourceStats
from clinfo.sources.rate_limit import SpacedRate
from clinfo.store import Database, configured_url, parse_database_url
from clinfo.store.budget import SharedSlot, budget_name

if TYPE_CHECKING:
    from clinfo.appraisal.filters import StudyFilter
    from clinfo.cache import Cache
    from clinfo.settings import Settings

__all__ = ["PubMedSource", "EFETCH_BATCH", "rate_for"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Params = dict[str, str] | Callable[[], dict[str, str]]  # a request's parameters, or what settles them at its start

EFETCH_BATCH = 200  # NCBI's advice for efetch id lists; larger lists risk 414s and slow answers
ESEARCH_MAX = 10000  # esearch refuses retmax beyond this
MAX_RETRY_AFTER = 60.0  # honour Retry-After up to here; a longer ask is better answered with an error
_OPEN_START = "1800/01/01"  # NCBI needs both mindate and maxdate
_OPEN_END = "3000/12/31"


def rate_for(settings: Settings) -> float:
    """NCBI's published limit: 3 requests/s, 10/s with an API key."""
    return 10.0 if settings.ncbi_api_key is not None else 3.0


# One budget per (endpoint, rate) in the process, whatever the thread or event loop.
_RATES: dict[tuple[str, float, str | None, str | None], SpacedRate] = {}
_RATES_LOCK = threading.Lock()
BUDGET_DB_TIMEOUT = 2.0  # seconds a request waits for the shared budget's database before using the host's


def _shared_rate(settings: Settings, per_second: float) -> SpacedRate:
    state_file, slot = None, None
    if settings.eutils_rate_scope == "host":
        digest = hashlib.sha256(f"{settings.eutils_base_url} {per_second}".encode()).hexdigest()[:16]
        state_file = Path(settings.cache_dir) / "rate" / f"eutils-{digest}.slot"
        slot = _database_slot(settings)
    key = (
        settings.eutils_base_url,
        per_second,
        str(state_file) if state_file else None,
        f"{slot.db.url.url} {slot.budget}" if slot else None,
    )
    with _RATES_LOCK:
        if key not in _RATES:
            _RATES[key] = SpacedRate(per_second, state_file, shared=slot)
        return _RATES[key]


def _database_slot(settings: Settings) -> SharedSlot | None:
    """With a PostgreSQL ``database_url``, the API key's budget that every host using it shares
    (the host's slot file stays the fallback while the database cannot be reached)."""
    url = configured_url(settings)
    if url is None or parse_database_url(url).kind != "postgresql":
        return None
    key = settings.ncbi_api_key.get_secret_value() if settings.ncbi_api_key is not None else None
    return SharedSlot(Database(url, timeout=BUDGET_DB_TIMEOUT), budget_name(settings.eutils_base_url, key))


class _EfetchBatch:
    """The PMIDs of one efetch request; others may join them until its start is granted (``sent``)."""

    def __init__(self, pmids: list[str], loop: asyncio.AbstractEventLoop) -> None:
        self.pmids = pmids
        self.loop = loop
        self.sent = False
        self.task: asyncio.Task[list[Article]]


class _Transient(Exception):
    """A failure worth another attempt (429, 5xx, timeout, connection trouble)."""

    def __init__(self, reason: str, retry_after: float | None = None, timeout: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.timeout = timeout


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _ncbi_date(day: dt.date | None, default: str) -> str:
    return day.strftime("%Y/%m/%d") if day else default


class PubMedSource:
    """PubMed over E-utilities; implements :class:`clinfo.sources.base.Source`.

    ``client``: an ``httpx.AsyncClient`` to use (left open by :meth:`aclose`); by default one
    is made per event loop. ``backoff``: first retry delay in seconds (doubles per attempt, plus
    jitter, capped at 10 s) when the server gives no Retry-After. ``requests_per_second``
    overrides NCBI's limit (mirrors, benchmarks against a loopback server).

    With a ``cache``, esearch answers are kept per (term, limit, dates) and efetch records per
    PMID, each with its lifetime and under this server's base URL, so overlapping fetches only
    ask for what is new; ``stats.cache_hits`` counts searches
    and articles served from it.
    """

    name = "pubmed"

    def __init__(
        self,
        settings: Settings,
        cache: Cache | None = None,
        client: httpx.AsyncClient | None = None,
        *,
        backoff: float = 0.5,
        requests_per_second: float | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache if cache is not None and cache.enabled else None
        self.stats = SourceStats()
        self.base_url = settings.eutils_base_url
        self._given_client = client
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._backoff = wait_exponential(multiplier=backoff, max=10.0) + wait_random(0, backoff)
        self._rate = _shared_rate(settings, requests_per_second or rate_for(settings))
        self._forming: _EfetchBatch | None = None  # the efetch request waiting for its start, if any
        try:
            # the client (its SSL context takes ~25 ms) is made when the loop next waits, typically
            # while the plan's LLM call is in flight, rather than in front of the first search
            asyncio.get_running_loop().call_soon(self._http)
        except RuntimeError:  # made outside an event loop: the first request makes it
            pass

    # ------------------------------------------------------------------ Source API
    async def search(
        self, query: str, *, limit: int = 20, dates: DateRange | None = None, studies: StudyFilter | None = None
    ) -> SearchResult:
        """``studies``: its PubMed form is added to the term (:meth:`StudyFilter.apply`), so the
        result (and ``SearchResult.query``) is the restricted search."""
        query = (query or "").strip()
        if not query:
            raise QuerySyntaxError("empty PubMed query")
        if studies is not None:
            query = studies.apply(query)
        params: dict[str, str] = {
            "db": "pubmed",
            "term": query,
            "retmax": str(max(0, min(int(limit), ESEARCH_MAX))),
            "sort": "relevance",
            "retmode": "xml",
        }
        if dates is not None and (dates.start or dates.end):
            params["datetype"] = "pdat"
            params["mindate"] = _ncbi_date(dates.start, _OPEN_START)
            params["maxdate"] = _ncbi_date(dates.end, _OPEN_END)

        cached = self._cache_get({"endpoint": "esearch", **params})
        if cached is not None:
            data = json.loads(cached)
            return SearchResult(query=query, **data)
        result = await self._request("esearch", params, lambda body: _parse_esearch(query, body))
        self._cache_set(
            {"endpoint": "esearch", **params},
            json.dumps(
                {
                    "pmids": result.pmids,
                    "count": result.count,
                    "translation": result.translation,
                    "warnings": result.warnings,
                }
            ),
        )
        return result

    async def fetch(self, pmids: Sequence[str]) -> list[Article]:
        wanted = list(dict.fromkeys(str(p).strip() for p in pmids if str(p).strip().isdigit()))
        found: dict[str, Article] = {}
        missing = []
        for pmid in wanted:
            cached = self._cache_get(_efetch_key(pmid))
            if cached is not None:
                found[pmid] = Article.model_validate_json(cached)
            else:
                missing.append(pmid)
        asked = set(missing)
        for article in await self._efetch_missing(missing):
            if article.pmid in asked and article.pmid not in found:
                found[article.pmid] = article
                self._cache_set(_efetch_key(article.pmid), article.model_dump_json())
        return [found[p] for p in wanted if p in found]

    async def aclose(self) -> None:
        client, loop = self._client, self._client_loop
        self._client = self._client_loop = None
        if client is not None and loop is asyncio.get_running_loop():
            await client.aclose()
        # A client from an earlier asyncio.run() cannot be closed from this loop; its loop is
        # gone and its connections with it.

    async def __aenter__(self) -> PubMedSource:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ transport
    async def _efetch_missing(self, missing: list[str]) -> list[Article]:
        """The records of ``missing``, in efetch requests of at most EFETCH_BATCH PMIDs.

        PMIDs join the request that is still waiting for its start where it has room: a fetch asked
        for while another waits its turn (the records of a query that came back while the others'
        searches held the budget) leaves with it, and costs no start of its own."""
        if not missing:
            return []
        loop = asyncio.get_running_loop()
        rest, waits = list(missing), []
        forming = self._forming
        if forming is not None and forming.loop is loop and not forming.sent:
            joined = rest[: EFETCH_BATCH - len(forming.pmids)]
            if joined:
                forming.pmids += joined
                rest = rest[len(joined) :]
                waits.append(forming.task)
        for i in range(0, len(rest), EFETCH_BATCH):
            batch = _EfetchBatch(rest[i : i + EFETCH_BATCH], loop)
            batch.task = loop.create_task(self._efetch(batch))
            # several fetches may wait on one request: its failure is theirs, never an unretrieved one
            batch.task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._forming = batch
            waits.append(batch.task)
        # shielded: a caller that gives up leaves the request to the others who joined it
        results = await asyncio.gather(*(asyncio.shield(t) for t in waits))
        return [article for result in results for article in result]

    async def _efetch(self, batch: _EfetchBatch) -> list[Article]:
        def start() -> dict[str, str]:
            # the start is granted: what the request asks for is settled now
            batch.sent = True
            if self._forming is batch:
                self._forming = None
            return {"db": "pubmed", "id": ",".join(batch.pmids), "retmode": "xml"}

        return await self._request("efetch", start, _parse_articles, parse_in_thread=True)

    def _http(self) -> httpx.AsyncClient:
        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # Pooled connections belong to the loop that opened them; a new asyncio.run() needs
            # a new client (the old loop is gone, its client can only be dropped).
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.eutils_timeout),
                headers={"User-Agent": f"{self.settings.ncbi_tool} (clinfo)"},
            )
            self._client_loop = loop
        return self._client

    def _form(self, params: dict[str, str]) -> dict[str, str]:
        form = dict(params)
        form["tool"] = self.settings.ncbi_tool
        if self.settings.ncbi_email:
            form["email"] = self.settings.ncbi_email
        if self.settings.ncbi_api_key is not None:
            form["api_key"] = self.settings.ncbi_api_key.get_secret_value()
        return form

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            # Server said when; add a little jitter after it so many clients do not return at once.
            return min(asked, MAX_RETRY_AFTER) + random.uniform(0, 0.1)
        return float(self._backoff(state))

    def _before_sleep(self, endpoint: str) -> Any:
        def note(state: RetryCallState) -> None:
            self.stats.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.debug(
                "PubMed %s attempt %d failed (%s); retrying in %.2f s",
                endpoint,
                state.attempt_number,
                one_line(exc, 200),
                wait,
            )

        return note

    async def _request(
        self, endpoint: str, params: Params, parse: Callable[[bytes], T], parse_in_thread: bool = False
    ) -> T:
        url = f"{self.base_url}{endpoint}.fcgi"
        attempts = self.settings.eutils_retries + 1
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception_type((_Transient, MalformedResponse)),
            before_sleep=self._before_sleep(endpoint),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    body = await self._post(endpoint, url, params)
                    if parse_in_thread:
                        # Entrez.read costs ~3 ms a record: keep the event loop responsive.
                        return await asyncio.to_thread(parse, body)
                    return parse(body)
        except _Transient as exc:
            what = f"timed out (timeout {self.settings.eutils_timeout:g} s)" if exc.timeout else exc.reason
            raise SourceUnavailable(
                f"PubMed {endpoint} unavailable after {attempts} attempt{'s' * (attempts > 1)}: {what}"
            ) from None
        except MalformedResponse as exc:
            raise MalformedResponse(
                f"PubMed {endpoint} gave an unusable response after {attempts} attempt{'s' * (attempts > 1)}: {exc}"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _post(self, endpoint: str, url: str, params: Params) -> bytes:
        # Everything slow comes before the budget is taken (a new client loads its SSL context,
        # ~0.1 s), so the request leaves right when its start is granted.
        client = self._http()
        await self._rate.acquire()
        if callable(params):  # parameters settled at the start (an efetch that others may join until then)
            params = params()
        form = self._form(params)
        self.stats.requests += 1
        log.debug("PubMed %s POST %s", endpoint, _describe(params))
        try:
            response = await client.post(url, data=form)
        except httpx.TimeoutException:
            raise _Transient("timed out", timeout=True) from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}", retry_after=_retry_after(response.headers.get("Retry-After")))
        if status != 200:
            # Bodies are not quoted: NCBI echoes the API key in some error bodies.
            raise SourceError(f"PubMed {endpoint} rejected the request: HTTP {status} {response.reason_phrase}".strip())
        return response.content

    # ------------------------------------------------------------------ cache
    def _cache_get(self, request: dict[str, str]) -> bytes | None:
        if self.cache is None:
            return None
        value = self.cache.get(*self._cache_entry(request))
        if value is not None:
            self.stats.cache_hits += 1
        return value

    def _cache_set(self, request: dict[str, str], value: str) -> None:
        if self.cache is not None:
            self.cache.set(*self._cache_entry(request), value)

    def _cache_entry(self, request: dict[str, str]) -> tuple[str, dict[str, str]]:
        # Searches and records have their own lifetimes; the server is part of the key, so a
        # mirror's or a test server's answers are never served as NCBI's.
        namespace = CACHE_SEARCH if request.get("endpoint") == "esearch" else CACHE_RECORDS
        return namespace, {**request, "server": self.base_url}


def _parse_articles(data: bytes) -> list[Article]:
    return parse_efetch(data, Article)


def _describe(params: dict[str, str]) -> dict[str, str | int]:
    # params never hold credentials (those are added in _form); long id lists are summarised
    shown: dict[str, str | int] = {k: v for k, v in params.items() if k != "id"}
    if "id" in params:
        shown["ids"] = params["id"].count(",") + 1
    return shown


def _efetch_key(pmid: str) -> dict[str, str]:
    # One entry per article, so overlapping fetches share what was already retrieved.
    return {"endpoint": "efetch", "db": "pubmed", "id": pmid, "retmode": "xml"}


def _parse_esearch(query: str, body: bytes) -> SearchResult:
    from Bio import Entrez

    try:
        record = Entrez.read(io.BytesIO(body))
    except RuntimeError as exc:
        # Entrez raises RuntimeError for NCBI's <ERROR> element: a query NCBI will not run.
        message = one_line(exc, 200)
        if "backend" in message.lower():
            raise _Transient(f"NCBI search backend error: {message}") from None
        raise SourceError(f"PubMed esearch refused the query: {message}") from None
    except Exception as exc:  # expat/Bio parse errors on a truncated or non-XML body
        raise MalformedResponse(f"esearch returned malformed XML: {one_line(exc, 200)}") from None
    if not isinstance(record, dict) or "IdList" not in record or "Count" not in record:
        raise MalformedResponse("esearch response has no Count/IdList")
    warnings = []
    for section in ("ErrorList", "WarningList"):
        for kind, values in (record.get(section) or {}).items():
            warnings += [f"{kind}: {one_line(v, 200)}" for v in values]
    try:
        count = int(record["Count"])
    except (TypeError, ValueError):
        raise MalformedResponse("esearch response has a non-numeric Count") from None
    translation = record.get("QueryTranslation")
    return SearchResult(
        query=query,
        pmids=[str(p) for p in record["IdList"]],
        count=count,
        translation=str(translation) if translation else None,
        warnings=warnings,
    )
