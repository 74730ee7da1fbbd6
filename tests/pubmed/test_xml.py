"""PubMed XML parsing: efetch (Entrez.read) and bulk files (lxml iterparse) on real records."""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path
from typing import Any

import pytest

from clinfo.errors import MalformedResponse
from clinfo.models import Article
from clinfo.pubmed.xml import DeletedCitations, iter_pubmed_xml, parse_efetch
from tests.support.eutils import BASELINE, EFETCH_HEAD, EFETCH_TAIL, FIXTURES, load_corpus

OLD_BASELINE = BASELINE.parent / "pubmed20n0014.xml.gz"
_RECORD = re.compile(rb"<PubmedArticle>.*?</PubmedArticle>", re.S)


def efetch_doc(records: list[bytes], head: bytes = EFETCH_HEAD) -> bytes:
    return head + b"\n".join(records) + b"\n" + EFETCH_TAIL


def by_pmid(articles: list[Article]) -> dict[str, Article]:
    return {a.pmid: a for a in articles}


def corpus_records(*pmids: str) -> list[bytes]:
    corpus = load_corpus()
    return [corpus[p].xml for p in pmids]


def first_records(path: Path, n: int) -> tuple[bytes, list[bytes]]:
    """The file's own XML prologue and its first ``n`` raw PubmedArticle records."""
    with gzip.open(path, "rb") as stream:
        data = stream.read(60_000 * n)
    head = data[: data.index(b"<PubmedArticleSet>") + len(b"<PubmedArticleSet>")] + b"\n"
    return head, [m.group(0) for m in _RECORD.finditer(data)][:n]


# --------------------------------------------------------------------------- fixture records


@pytest.fixture(scope="module")
def fixture_articles() -> dict[str, Article]:
    articles: list[Article] = []
    for path in sorted(FIXTURES.glob("pubmed*.xml")):
        articles += parse_efetch(path.read_bytes())
    return by_pmid(articles)


def test_every_fixture_file_parses(fixture_articles: dict[str, Article]) -> None:
    assert sorted(fixture_articles) == sorted(
        ["12091962", "9997", "11748933", "11700088", "27797938", "28775130", "30108519", "29963580"]
    )
    assert all(a.title for a in fixture_articles.values())


def test_structured_abstract_doi_authors_mesh(fixture_articles: dict[str, Article]) -> None:
    a = fixture_articles["27797938"]
    # inline <i>TERT</i> keeps its text and loses the tags
    assert (
        a.title == "Leucocyte telomere length, genetic variants at the TERT gene region and risk of pancreatic cancer."
    )
    assert [s.label for s in a.abstract_sections] == ["OBJECTIVE", "DESIGN", "RESULTS", "CONCLUSIONS"]
    assert a.abstract_sections[0].text.startswith("Telomere shortening occurs as an early event")
    assert "(TERT) gene region" in a.abstract_sections[0].text
    assert a.abstract.startswith("OBJECTIVE: Telomere shortening")
    assert a.authors[:3] == ["Bao Y", "Prescott J", "Yuan C"] and len(a.authors) == 22
    assert (a.journal, a.year, a.doi) == ("Gut", 2017, "10.1136/gutjnl-2016-312510")
    assert a.mesh[:2] == ["Adenocarcinoma", "Adult"] and len(a.mesh) == 21
    assert "Observational Study" in a.publication_types


def test_record_without_abstract_or_doi(fixture_articles: dict[str, Article]) -> None:
    a = fixture_articles["12091962"]
    assert a.title == "The treatment of AIDS behind the walls of correctional facilities."
    assert a.abstract_sections == [] and a.doi is None
    assert (a.authors, a.journal, a.year) == (["Olivero JM"], "Soc Justice", 1990)
    assert a.publication_types == ["Journal Article", "Review"]
    assert "Acquired Immunodeficiency Syndrome" in a.mesh


def test_quotes_inside_markup_and_multiword_surnames(fixture_articles: dict[str, Article]) -> None:
    assert fixture_articles["30108519"].title.startswith('A "Blood Relationship" Between the Overlooked')
    assert fixture_articles["28775130"].authors[1] == "Beane Freeman LE"
    assert fixture_articles["29963580"].journal == "J Med Imaging (Bellingham)"


def test_fallbacks_on_real_baseline_records() -> None:
    got = by_pmid(parse_efetch(efetch_doc(corpus_records("10704411", "29426732", "31719001", "32472320"))))
    # DOI only in PubmedData/ArticleIdList (no ELocationID)
    assert got["10704411"].doi and got["10704411"].doi.startswith("10.")
    # PubDate has only <MedlineDate>2018 Jul-Aug</MedlineDate>
    assert got["29426732"].year == 2018
    # an empty ArticleTitle falls back to the VernacularTitle
    assert got["32472320"].title == "Briefsammlung Wittelshöfer."
    assert "Collaborators" in got["31719001"].authors  # a CollectiveName author


# --------------------------------------------------------------------------- the two readers agree


@pytest.mark.parametrize("path,n", [(BASELINE, 300), (OLD_BASELINE, 300)])
def test_bulk_reader_matches_entrez_on_real_records(path: Path, n: int) -> None:
    head, records = first_records(path, n)
    doc = head + b"\n".join(records) + b"\n</PubmedArticleSet>\n"
    via_entrez = parse_efetch(doc)
    via_lxml = list(iter_pubmed_xml(io.BytesIO(doc)))
    assert len(via_entrez) == n
    assert via_lxml == via_entrez  # every field of every record


def test_bulk_reader_matches_entrez_on_markup_heavy_records(fixture_articles: dict[str, Article]) -> None:
    # <sup>, MathML and multi-section abstracts are where the two text paths could drift apart
    records = corpus_records("29807784", "31993508", "32472320")
    assert parse_efetch(efetch_doc(records)) == list(iter_pubmed_xml(io.BytesIO(efetch_doc(records))))
    for path in sorted(FIXTURES.glob("pubmed*.xml")):
        assert list(iter_pubmed_xml(path)) == parse_efetch(path.read_bytes())


def test_gzip_and_plain_path_and_stream_give_the_same_records(tmp_path: Path) -> None:
    head, records = first_records(BASELINE, 40)
    doc = head + b"\n".join(records) + b"\n</PubmedArticleSet>\n"
    (tmp_path / "a.xml").write_bytes(doc)
    (tmp_path / "a.xml.gz").write_bytes(gzip.compress(doc))
    plain = list(iter_pubmed_xml(tmp_path / "a.xml"))
    assert len(plain) == 40
    assert list(iter_pubmed_xml(str(tmp_path / "a.xml.gz"))) == plain
    with open(tmp_path / "a.xml.gz", "rb") as stream:
        assert list(iter_pubmed_xml(stream)) == plain


class _Repeating(io.RawIOBase):
    """An update-file-shaped stream made lazily from real records repeated ``times`` times."""

    def __init__(self, head: bytes, records: list[bytes], times: int, tail: bytes) -> None:
        block = b"\n".join(records) + b"\n"
        self._parts = iter([head] + [block] * times + [tail])
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._buffer) < len(buffer):
            part = next(self._parts, None)
            if part is None:
                break
            self._buffer += part
        n = min(len(buffer), len(self._buffer))
        buffer[:n], self._buffer = self._buffer[:n], self._buffer[n:]
        return n


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def test_streams_with_bounded_memory_and_reports_deletions() -> None:
    head, records = first_records(BASELINE, 20)
    # NLM update files end with the citations they withdraw, in this form
    deleted = ["31688362", "31764432", "31895213"]
    tail = b"<DeleteCitation>\n" + b"".join(b'<PMID Version="1">%s</PMID>\n' % p.encode() for p in deleted)
    tail += b"</DeleteCitation>\n</PubmedArticleSet>\n"
    times = 150  # 3,000 records, ~40 MB of XML: kept as a tree that is ~340 MB
    stream = io.BufferedReader(_Repeating(head, records, times, tail))
    before = peak = rss_mb()
    articles = 0
    deletions = []
    for item in iter_pubmed_xml(stream):
        if isinstance(item, DeletedCitations):
            deletions.append(item.pmids)
        else:
            articles += 1
            if articles % 500 == 0:
                peak = max(peak, rss_mb())
    assert articles == 20 * times
    assert deletions == [deleted]
    assert peak - before < 100


# --------------------------------------------------------------------------- faults


def test_truncated_gzip_yields_good_records_then_raises() -> None:
    raw = OLD_BASELINE.read_bytes()
    full = []
    for item in iter_pubmed_xml(io.BytesIO(raw)):
        full.append(item)
        if len(full) == 3000:
            break
    got: list[object] = []
    with pytest.raises(MalformedResponse) as err:
        for item in iter_pubmed_xml(io.BytesIO(raw[: len(raw) // 40])):
            got.append(item)
    assert 0 < len(got) < 30000
    assert got == full[: len(got)]
    assert "\n" not in str(err.value) and "compressed" in str(err.value)


def test_corrupt_gzip_member_raises_malformed_after_good_records() -> None:
    raw = bytearray(OLD_BASELINE.read_bytes()[:2_000_000])
    raw[1_000_000:1_000_400] = bytes(400)  # zeros in the middle of the deflate stream
    got = []
    with pytest.raises(MalformedResponse):
        for item in iter_pubmed_xml(io.BytesIO(bytes(raw))):
            got.append(item)
    assert len(got) > 100


def test_truncated_xml_drops_the_partial_record(tmp_path: Path) -> None:
    head, records = first_records(BASELINE, 50)
    doc = head + b"\n".join(records) + b"\n</PubmedArticleSet>\n"
    complete = list(iter_pubmed_xml(io.BytesIO(doc)))
    cut = doc.index(records[40]) + len(records[40]) // 2  # in the middle of the 41st record
    path = tmp_path / "cut.xml"
    path.write_bytes(doc[:cut])
    got = []
    with pytest.raises(MalformedResponse) as err:
        for item in iter_pubmed_xml(path):
            got.append(item)
    assert got == complete[:40]
    assert "cut.xml" in str(err.value) and "\n" not in str(err.value)


def test_missing_closing_root_is_reported() -> None:
    head, records = first_records(BASELINE, 3)
    got = []
    with pytest.raises(MalformedResponse):
        for item in iter_pubmed_xml(io.BytesIO(head + b"\n".join(records))):
            got.append(item)
    assert len(got) == 3  # whole records before the end are still delivered


def test_invalid_utf8_costs_one_character_not_the_file() -> None:
    head, records = first_records(BASELINE, 30)
    doc = head + b"\n".join(records) + b"\n</PubmedArticleSet>\n"
    clean = list(iter_pubmed_xml(io.BytesIO(doc)))
    target = clean[5]
    broken = doc.replace(
        target.title[:12].encode(), target.title[:6].encode() + b"\xff\xfe" + target.title[6:12].encode(), 1
    )
    got = list(iter_pubmed_xml(io.BytesIO(broken)))
    assert len(got) == 30
    assert "\ufffd" in got[5].title
    assert got[:5] == clean[:5] and got[6:] == clean[6:]  # later non-ASCII text decodes normally
    assert "\ufffd" in parse_efetch(broken)[5].title


def test_efetch_failures_are_malformed_response() -> None:
    doc = (FIXTURES / "pubmed2.xml").read_bytes()
    for bad in (doc[: len(doc) // 2], b"<html><body>Service unavailable</body></html>", b"", b"   "):
        with pytest.raises(MalformedResponse) as err:
            parse_efetch(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(MalformedResponse):
        parse_efetch((FIXTURES / "esearch1.xml").read_bytes())  # well-formed, but not PubMed records


def test_efetch_with_an_unknown_newer_dtd_parses_offline() -> None:
    doc = (FIXTURES / "pubmed4.xml").read_bytes().replace(b"pubmed_180101.dtd", b"pubmed_990101.dtd")
    assert [a.pmid for a in parse_efetch(doc)] == ["27797938"]


def test_empty_article_set_is_no_articles() -> None:
    assert parse_efetch(efetch_doc([])) == []
    assert list(iter_pubmed_xml(io.BytesIO(efetch_doc([])))) == []


def test_book_record_same_on_both_paths() -> None:
    # NCBI Bookshelf records share PubMed's set; shaped after pubmed_250101.dtd (BookDocument).
    book = b"""<PubmedBookArticle><BookDocument><PMID Version="1">20301295</PMID>
<ArticleIdList><ArticleId IdType="bookaccession">NBK1116</ArticleId></ArticleIdList>
<Book><Publisher><PublisherName>University of Washington, Seattle</PublisherName></Publisher>
<BookTitle book="gene">GeneReviews<sup>&#xae;</sup></BookTitle><PubDate><Year>1993</Year></PubDate>
<AuthorList Type="editors">
<Author ValidYN="Y"><LastName>Adam</LastName><ForeName>Margaret P</ForeName><Initials>MP</Initials></Author>
</AuthorList>
</Book><LocationLabel Type="chapter">Cystic Fibrosis</LocationLabel>
<ArticleTitle book="gene" part="cf">CFTR-Related Disorders</ArticleTitle>
<Language>eng</Language>
<AuthorList Type="authors">
<Author ValidYN="Y"><LastName>Ong</LastName><ForeName>Thida</ForeName><Initials>T</Initials></Author>
</AuthorList>
<PublicationType UI="D016454">Review</PublicationType>
<Abstract>
<AbstractText Label="CLINICAL CHARACTERISTICS">CFTR-related disorders encompass cystic fibrosis.</AbstractText>
</Abstract>
</BookDocument><PubmedBookData>
<History><PubMedPubDate PubStatus="pubmed"><Year>2010</Year><Month>3</Month><Day>20</Day></PubMedPubDate></History>
<PublicationStatus>ppublish</PublicationStatus>
<ArticleIdList><ArticleId IdType="pubmed">20301295</ArticleId></ArticleIdList>
</PubmedBookData></PubmedBookArticle>"""
    doc = efetch_doc([book] + corpus_records("27797938"))
    via_entrez = by_pmid(parse_efetch(doc))  # Entrez.read lists articles before books
    assert via_entrez == by_pmid(list(iter_pubmed_xml(io.BytesIO(doc))))  # type: ignore[arg-type]
    book_article = via_entrez["20301295"]
    assert (book_article.title, book_article.journal, book_article.year) == (
        "CFTR-Related Disorders",
        "GeneReviews®",
        1993,
    )
    assert book_article.authors == ["Ong T"] and book_article.publication_types == ["Review"]


@pytest.mark.parametrize("read_size", [1, 2, 3, 5, 4096])
def test_utf8_repair_is_exact_whatever_the_chunking(read_size: int) -> None:
    from clinfo.pubmed.xml import _Utf8Repair

    data = corpus_records("32472320")[0] + "é—😀".encode() + b"\xff\xc3" + "ö".encode() + b"\xe2\x82"
    reader = _Utf8Repair(io.BytesIO(data))
    out = b"".join(iter(lambda: reader.read(read_size), b""))
    assert out == data.decode("utf-8", "replace").encode("utf-8")
