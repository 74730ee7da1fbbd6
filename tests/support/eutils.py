"""A loopback NCBI E-utilities server that serves real PubMed data, with fault injection.

Use it from a test::

    def test_something(eutils_server):
        settings = Settings(eutils_base_url=eutils_server.base_url, eutils_retries=1)
        term = eutils_server.sample_terms()[0]          # a realistic query with hits
        ...
        assert eutils_server.requests[0].params["term"] == term

or from a script / benchmark (no pytest needed)::

    from tests.support.eutils import EUtilsServer
    with EUtilsServer(latency=0.05) as server:       # 50 ms added to every response
        os.environ["CLINFO_EUTILS_BASE_URL"] = server.base_url
        ...

Fixtures (add ``"tests.support.eutils"`` to ``pytest_plugins``):

* ``eutils_server`` — a started :class:`EUtilsServer` for one test.
* ``eutils_env`` — the same server, with ``CLINFO_EUTILS_BASE_URL`` pointing at it (for code that
  builds ``Settings()`` itself, such as the CLI).

What it serves (``esearch.fcgi`` and ``efetch.fcgi`` under ``base_url``, GET or POST):

* **efetch** — the real XML of the requested PMIDs (``id``, comma-separated), wrapped in a
  ``PubmedArticleSet`` with NCBI's current DOCTYPE. Records: the first ``records`` citations of
  ``shared/data/pubmed-baseline/pubmed21n1298.xml.gz`` (default 3000, loaded once per process)
  plus every record in ``shared/fixtures/eutils/pubmed*.xml``. Unknown PMIDs are left out.
* **esearch** — NCBI-format XML (``Count``, ``RetMax``, ``RetStart``, ``IdList``,
  ``TranslationSet``, ``QueryTranslation``) from a simple match: a term is evaluated as a boolean
  expression, as PubMed does (upper-case ``AND``/``OR``/``NOT`` left to right, no precedence,
  parentheses group, adjacent terms ANDed). A leaf's words must all occur in title or abstract
  (a quoted phrase as consecutive words, ``word*`` as a prefix), except ``[pt]`` (one of the
  record's publication types) and ``[mh]``/``[majr]`` (one of its MeSH descriptors), matched
  whole and case-insensitively: unlike PubMed, MeSH and publication types are not exploded.
  Hits are ranked by how many of the words outside NOT, ``[pt]`` and ``[mh]`` they contain, then
  by total occurrences (ties: higher PMID first). A term that does not parse falls back to
  every word required. ``retmax``/``retstart`` page it;
  ``datetype=pdat`` with ``mindate``/``maxdate`` filters on publication year. No match gives
  a zero-hit answer shaped like NCBI's (``ErrorList``/``WarningList``). The recorded NCBI
  answers are replayed verbatim for their own terms: ``biopython`` (esearch1.xml),
  ``PNAS[ta] AND 97[vi]`` (esearch3.xml), ``abcXYZ`` (esearch8.xml). :meth:`expected_pmids`
  gives the ranking a term will get.

Attributes:

* ``base_url`` — ``http://127.0.0.1:<port>/entrez/eutils/`` (ends in ``/``).
* ``requests`` — list of :class:`LoggedRequest` (method, path, endpoint, params merged from the
  URL and the form body, ``query`` = raw URL query string, ``body`` = raw body, ``time`` =
  ``time.monotonic()`` on arrival, ``peer`` = client (host, port), ``status`` sent).
* ``faults`` — a deque of :class:`Fault`; each request takes the first fault whose
  ``endpoint`` matches (or is None). Helpers: :meth:`fail`, :meth:`slow`, :meth:`truncate`.
* ``latency`` — seconds added to every response (benchmarks); settable at any time.
* ``corpus`` — PMID -> :class:`Record` (raw XML, year, word counts) it serves.

Constructor: ``EUtilsServer(records=3000, latency=0.0)``; ``records`` is a count of baseline
citations, or a mapping PMID -> raw ``<PubmedArticle>`` XML to serve exactly those.

Helpers: ``sample_terms(n=5, min_hits=3)`` realistic clinical queries with at least
``min_hits`` hits; ``expected_pmids(term, retmax=20, mindate=None, maxdate=None)``;
``fail(status, times=1, retry_after=None, endpoint=None)`` (429 bodies echo the request's
``api_key``, as NCBI's do); ``slow(seconds, times=1, endpoint=None)``;
``truncate(nbytes=600, times=1, endpoint=None)``.
"""

from __future__ import annotations

import collections
import gzip
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

import pytest

from tests.support.loopback import ThreadedServer

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
BASELINE = SHARED / "data" / "pubmed-baseline" / "pubmed21n1298.xml.gz"
FIXTURES = SHARED / "fixtures" / "eutils"
DEFAULT_RECORDS = 3000

EFETCH_HEAD = (
    b'<?xml version="1.0" ?>\n'
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n<PubmedArticleSet>\n'
)
EFETCH_TAIL = b"</PubmedArticleSet>\n"
ESEARCH_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
    '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
)
# Recorded NCBI answers, replayed for the terms they were recorded with (Biopython's test suite).
RECORDED_SEARCHES = {
    "biopython": "esearch1.xml",
    "pnas[ta] and 97[vi]": "esearch3.xml",
    "abcxyz": "esearch8.xml",
}
# Clinical words known to hit several of the default records; sample_terms() keeps those that do.
_CANDIDATE_TERMS = [
    "breast cancer",
    "myocardial infarction",
    "covid-19[tiab] AND children",
    "depression[tiab] AND covid-19",
    "diabetes AND obesity",
    "stroke AND randomized",
    "hypertension",
    "pregnancy",
    "sepsis",
    "asthma",
    "vaccine",
    "insulin",
]

_RECORD = re.compile(rb"<(PubmedArticle|PubmedBookArticle)>.*?</\1>", re.S)
_PMID = re.compile(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>")
_TEXT = re.compile(rb"<(ArticleTitle|AbstractText|VernacularTitle)\b[^>]*>(.*?)</\1>", re.S)
_MARKUP = re.compile(r"<[^>]+>")
_PUBYEAR = re.compile(rb"<PubDate>\s*(?:<Year>(\d{4})|<MedlineDate>\D*(\d{4}))")
_ARTICLE_YEAR = re.compile(rb"<ArticleDate[^>]*>\s*<Year>(\d{4})")
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_FIELD_TAG = re.compile(r"\[[^\]]*\]")
_OPERATORS = {"and", "or", "not"}
_PUBTYPE = re.compile(rb"<PublicationType\b[^>]*>([^<]*)</PublicationType>")
_DESCRIPTOR = re.compile(rb"<DescriptorName\b[^>]*>([^<]*)</DescriptorName>")
# the boolean term language: parentheses, quoted phrases and bare words, each with an optional [tag]
_TERM_TOKEN = re.compile(r'\s*(?:(\()|(\))|"([^"]*)"\s*(\[[^\]]*\])?|([^\s()"\[]+)\s*(\[[^\]]*\])?)')
_META_TAGS = {"pt": "pubtypes", "publication type": "pubtypes", "mh": "mesh", "mesh": "mesh", "mesh terms": "mesh",
              "majr": "mesh", "mesh major topic": "mesh"}  # fmt: skip


@dataclass(frozen=True)
class Record:
    pmid: str
    xml: bytes  # the record exactly as in the source file
    year: int | None
    words: Mapping[str, int]  # lower-cased word -> occurrences in title + abstract
    text: str = ""  # " w1 w2 ... " the title + abstract words in order, for phrases
    pubtypes: frozenset[str] = frozenset()  # lower-cased publication types
    mesh: frozenset[str] = frozenset()  # lower-cased MeSH descriptor names


def _names(pattern: re.Pattern[bytes], raw: bytes) -> frozenset[str]:
    return frozenset(" ".join(v.decode("utf-8", "replace").lower().split()) for v in pattern.findall(raw))


def _record(raw: bytes) -> Record | None:
    m = _PMID.search(raw)
    if not m:
        return None
    text = " ".join(_MARKUP.sub(" ", t.decode("utf-8", "replace")) for _, t in _TEXT.findall(raw))
    y = _PUBYEAR.search(raw) or _ARTICLE_YEAR.search(raw)
    year = int(next(g for g in y.groups() if g)) if y else None
    words = _WORD.findall(text.lower())
    return Record(
        m.group(1).decode(),
        raw,
        year,
        collections.Counter(words),
        f" {' '.join(words)} ",
        _names(_PUBTYPE, raw),
        _names(_DESCRIPTOR, raw),
    )


def _baseline_records(limit: int) -> Iterator[bytes]:
    buf = b""
    found = 0
    with gzip.open(BASELINE, "rb") as stream:
        while found < limit:
            chunk = stream.read(1 << 20)
            if not chunk:
                return
            buf += chunk
            end = 0
            for m in _RECORD.finditer(buf):
                yield m.group(0)
                end = m.end()
                found += 1
                if found >= limit:
                    return
            buf = buf[end:]


_CORPUS_CACHE: dict[int, dict[str, Record]] = {}
_CORPUS_LOCK = threading.Lock()


def load_corpus(records: int = DEFAULT_RECORDS) -> dict[str, Record]:
    """PMID -> Record for the first ``records`` baseline citations plus the fixture records.

    Cached per process: the first call costs about a second for 3000 records.
    """
    with _CORPUS_LOCK:
        if records not in _CORPUS_CACHE:
            corpus: dict[str, Record] = {}
            raws = list(_baseline_records(records))
            for path in sorted(FIXTURES.glob("pubmed*.xml")):
                raws += [m.group(0) for m in _RECORD.finditer(path.read_bytes())]
            for raw in raws:
                rec = _record(raw)
                if rec is not None:
                    corpus[rec.pmid] = rec
            _CORPUS_CACHE[records] = corpus
        return _CORPUS_CACHE[records]


@dataclass
class Fault:
    """One injected misbehaviour, used by the next matching request."""

    status: int | None = None  # answer with this HTTP status instead of the real response
    retry_after: str | float | None = None  # Retry-After header: seconds or an HTTP-date
    delay: float = 0.0  # sleep this long before answering
    truncate: int | None = None  # send only the first N bytes of the real body (valid HTTP framing)
    endpoint: str | None = None  # "esearch" or "efetch"; None matches any request


@dataclass
class LoggedRequest:
    method: str
    path: str
    endpoint: str
    params: dict[str, str]
    query: str
    body: bytes
    time: float
    peer: tuple[str, int] = ("", 0)  # client address: one port for many requests = connection reuse
    status: int = 0


def query_words(term: str) -> list[str]:
    """The words the server matches for a PubMed-syntax term (field tags and operators dropped)."""
    words = _WORD.findall(_FIELD_TAG.sub(" ", term.lower()))
    return [w for w in dict.fromkeys(words) if w not in _OPERATORS]


@dataclass(frozen=True)
class _Leaf:
    text: str
    tag: str  # lower-cased field tag without brackets; "" when untagged
    quoted: bool

    def words(self) -> list[str]:
        return [w for w in _WORD.findall(self.text.lower()) if w not in _OPERATORS]

    def matches(self, rec: Record) -> bool:
        field = _META_TAGS.get(self.tag.split(":")[0].strip())
        if field is not None:
            return " ".join(self.text.lower().split()) in getattr(rec, field)
        words = self.words()
        if not words:
            return False
        if self.quoted and len(words) > 1:
            return f" {' '.join(words)} " in rec.text
        if self.text.endswith("*") and len(words) == 1:
            return f" {words[0]}" in rec.text
        return all(w in rec.words for w in words)


def _parse_term(term: str) -> tuple[Any, list[str]] | None:
    """(expression, ranking words) for a term, or None when it does not parse. An expression is a
    ``_Leaf`` or ``(op, left, right)``; ranking words come from leaves outside NOT, [pt] and [mh]."""
    tokens: list[tuple[str, Any]] = []
    pos, term = 0, term.strip()
    while pos < len(term):
        m = _TERM_TOKEN.match(term, pos)
        if not m or m.end() == pos:
            return None
        pos = m.end()
        lpar, rpar, quoted, qtag, word, wtag = m.groups()
        if lpar or rpar:
            tokens.append((lpar or rpar, None))
        elif quoted is not None:
            tokens.append(("leaf", _Leaf(quoted, (qtag or "[]")[1:-1].lower(), True)))
        elif word in ("AND", "OR", "NOT"):
            tokens.append(("op", word))
        elif wtag or _Leaf(word, "", False).words():  # a lone lower-case "and"/"or" is a stopword, as in PubMed
            tokens.append(("leaf", _Leaf(word, (wtag or "[]")[1:-1].lower(), False)))
    ranking: list[str] = []

    def expr(i: int, negated: bool) -> tuple[Any, int]:
        node, i = unit(i, negated)
        while i < len(tokens) and tokens[i][0] != ")":
            op = "AND"
            if tokens[i][0] == "op":
                op, i = tokens[i][1], i + 1
            right, i = unit(i, negated ^ (op == "NOT"))
            node = (op, node, right)
        return node, i

    def unit(i: int, negated: bool) -> tuple[Any, int]:
        if i >= len(tokens):
            raise ValueError("term ends early")
        kind, value = tokens[i]
        if kind == "(":
            node, i = expr(i + 1, negated)
            if i >= len(tokens) or tokens[i][0] != ")":
                raise ValueError("unbalanced parentheses")
            return node, i + 1
        if kind != "leaf":
            raise ValueError(f"unexpected {kind}")
        if not negated and value.tag.split(":")[0].strip() not in _META_TAGS:
            ranking.extend(value.words())
        return value, i + 1

    try:
        node, end = expr(0, False)
    except ValueError:
        return None
    if end != len(tokens):
        return None
    return node, list(dict.fromkeys(ranking))


def _evaluate(node: Any, rec: Record) -> bool:
    if isinstance(node, _Leaf):
        return node.matches(rec)
    op, left, right = node
    if op == "AND":
        return _evaluate(left, rec) and _evaluate(right, rec)
    if op == "OR":
        return _evaluate(left, rec) or _evaluate(right, rec)
    return _evaluate(left, rec) and not _evaluate(right, rec)


class EUtilsServer(ThreadedServer):
    """Real HTTP on 127.0.0.1 with real PubMed records; see the module docstring."""

    def __init__(
        self,
        records: int | Mapping[str, bytes] = DEFAULT_RECORDS,
        latency: float = 0.0,
    ) -> None:
        if isinstance(records, int):
            self.corpus: dict[str, Record] = load_corpus(records)
        else:
            self.corpus = {p: r for p, r in ((p, _record(x)) for p, x in records.items()) if r is not None}
        self.latency = latency
        self.requests: list[LoggedRequest] = []
        self.faults: collections.deque[Fault] = collections.deque()
        self._lock = threading.Lock()
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EUtilsServer:
        handler = type("Handler", (_Handler,), {"server_ref": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # a test's slow fault must not hold up teardown
        self._serve(httpd, "eutils-server")
        self.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/entrez/eutils/"
        return self

    # ------------------------------------------------------------------ fault helpers
    def fail(
        self, status: int, *, times: int = 1, retry_after: str | float | None = None, endpoint: str | None = None
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and a Retry-After header if given)."""
        for _ in range(times):
            self.faults.append(Fault(status=status, retry_after=retry_after, endpoint=endpoint))

    def slow(self, seconds: float, *, times: int = 1, endpoint: str | None = None) -> None:
        """Delay the next ``times`` responses by ``seconds`` (to trip client timeouts)."""
        for _ in range(times):
            self.faults.append(Fault(delay=seconds, endpoint=endpoint))

    def truncate(self, nbytes: int = 600, *, times: int = 1, endpoint: str | None = None) -> None:
        """Cut the next ``times`` response bodies to ``nbytes`` (well-framed HTTP, broken XML)."""
        for _ in range(times):
            self.faults.append(Fault(truncate=nbytes, endpoint=endpoint))

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.faults):
                if fault.endpoint in (None, endpoint):
                    del self.faults[i]
                    return fault
        return None

    # ------------------------------------------------------------------ data helpers
    def expected_pmids(
        self, term: str, retmax: int = 20, mindate: str | None = None, maxdate: str | None = None
    ) -> list[str]:
        """The PMIDs esearch returns for ``term`` (best first), for assertions."""
        return self._rank(term, _year_of(mindate), _year_of(maxdate))[:retmax]

    def sample_terms(self, n: int = 5, min_hits: int = 3) -> list[str]:
        """Realistic clinical queries that have at least ``min_hits`` hits in the loaded records."""
        terms = [t for t in _CANDIDATE_TERMS if len(self._rank(t, None, None)) >= min_hits]
        return terms[:n]

    def _rank(self, term: str, min_year: int | None, max_year: int | None) -> list[str]:
        words = query_words(term)
        if not words:
            return []
        parsed = _parse_term(term)
        if parsed is not None:
            node, words = parsed
        scored = []
        for rec in self.corpus.values():
            if min_year is not None and (rec.year is None or rec.year < min_year):
                continue
            if max_year is not None and (rec.year is None or rec.year > max_year):
                continue
            counts = [rec.words.get(w, 0) for w in words]
            if _evaluate(node, rec) if parsed is not None else all(counts):
                scored.append((sum(c > 0 for c in counts), sum(counts), int(rec.pmid)))
        scored.sort(reverse=True)
        return [str(row[-1]) for row in scored]

    # ------------------------------------------------------------------ responses
    def esearch(self, params: Mapping[str, str]) -> bytes:
        term = params.get("term", "")
        recorded = RECORDED_SEARCHES.get(" ".join(term.lower().split()))
        if recorded:
            return (FIXTURES / recorded).read_bytes()
        retmax = _int(params.get("retmax"), 20)
        retstart = _int(params.get("retstart"), 0)
        min_year = max_year = None
        if params.get("datetype", "pdat") == "pdat":
            min_year, max_year = _year_of(params.get("mindate")), _year_of(params.get("maxdate"))
        hits = self._rank(term, min_year, max_year)
        page = hits[retstart : retstart + retmax]
        words = query_words(term)
        translation = " AND ".join(f'"{w}"[All Fields]' for w in words)
        if min_year is not None or max_year is not None:
            translation = f"({translation}) AND {params.get('mindate', '')}:{params.get('maxdate', '')}[dp]"
        out = [
            ESEARCH_HEAD,
            f"<eSearchResult><Count>{len(hits)}</Count><RetMax>{len(page)}</RetMax>",
            f"<RetStart>{retstart}</RetStart>",
        ]
        out.append("<IdList>\n" + "".join(f"<Id>{p}</Id>\n" for p in page) + "</IdList>" if page else "<IdList/>")
        out.append(f"<TranslationSet/><QueryTranslation>{escape(translation)}</QueryTranslation>")
        if not hits:
            unknown = [w for w in words if not any(w in r.words for r in self.corpus.values())]
            if unknown:
                out.append(
                    "<ErrorList>"
                    + "".join(f"<PhraseNotFound>{escape(w)}</PhraseNotFound>" for w in unknown)
                    + "</ErrorList>"
                )
            out.append("<WarningList><OutputMessage>No items found.</OutputMessage></WarningList>")
        out.append("</eSearchResult>\n")
        return "".join(out).encode("utf-8")

    def efetch(self, params: Mapping[str, str]) -> bytes:
        ids = [i.strip() for i in params.get("id", "").split(",") if i.strip()]
        parts = [EFETCH_HEAD]
        for pmid in dict.fromkeys(ids):
            rec = self.corpus.get(pmid)
            if rec is not None:
                parts += [rec.xml, b"\n"]
        parts.append(EFETCH_TAIL)
        return b"".join(parts)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _year_of(date: str | None) -> int | None:
    m = re.match(r"\s*(\d{4})", date or "")
    return int(m.group(1)) if m else None


class _Handler(BaseHTTPRequestHandler):
    server_ref: EUtilsServer
    protocol_version = "HTTP/1.1"  # keep-alive, as NCBI does, so client connection reuse is exercised

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # test output stays quiet; the request log is self.server_ref.requests

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length) if length else b"")

    def _serve(self, body: bytes) -> None:
        server = self.server_ref
        arrived = time.monotonic()
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        endpoint = url.path.rsplit("/", 1)[-1].removesuffix(".fcgi")
        logged = LoggedRequest(
            self.command, url.path, endpoint, params, url.query, body, arrived, peer=tuple(self.client_address[:2])
        )
        with server._lock:
            server.requests.append(logged)

        fault = server._take_fault(endpoint)
        pause = server.latency + (fault.delay if fault else 0.0)
        if pause:
            time.sleep(pause)

        headers: dict[str, str] = {}
        if endpoint not in ("esearch", "efetch") or not url.path.startswith("/entrez/eutils/"):
            status, payload, ctype = 404, b"unknown E-utility\n", "text/plain"
        elif fault and fault.status:
            status, ctype = fault.status, "application/json"
            # NCBI's real 429 body echoes the API key back; a client must never surface it.
            key = params.get("api_key", "")
            payload = (
                f'{{"error":"API rate limit exceeded","api-key":"{key}"}}'
                if fault.status == 429
                else f'{{"error":"injected status {fault.status}"}}'
            ).encode()
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
        else:
            status, ctype = 200, "text/xml; charset=UTF-8"
            payload = server.esearch(params) if endpoint == "esearch" else server.efetch(params)
            if fault and fault.truncate is not None:
                payload = payload[: fault.truncate]
        logged.status = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to tell it


@pytest.fixture
def eutils_server() -> Iterator[EUtilsServer]:
    """A started loopback E-utilities server with real PubMed records (see module docstring)."""
    with EUtilsServer() as server:
        yield server


@pytest.fixture
def eutils_env(eutils_server: EUtilsServer, monkeypatch: pytest.MonkeyPatch) -> EUtilsServer:
    """``eutils_server`` with ``CLINFO_EUTILS_BASE_URL`` pointing at it."""
    monkeypatch.setenv("CLINFO_EUTILS_BASE_URL", eutils_server.base_url)
    return eutils_server
