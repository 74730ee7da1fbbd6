"""PubMed XML → :class:`~clinfo.pubmed.record.PubmedRecord` (or a subclass the caller names, such as
:class:`clinfo.models.Article`).

Two readers that must agree field for field:

* :func:`parse_efetch` for E-utilities ``efetch`` responses (a few hundred records), through
  Biopython's validating ``Entrez.read``;
* :func:`iter_pubmed_xml` for NLM baseline/update files (tens of thousands of records per file),
  streamed with ``lxml.etree.iterparse`` because ``Entrez.read`` costs ~3 ms a record.

Text is normalised the same way on both paths: inline markup (``<i>``, ``<sup>``, MathML) is
dropped but its text kept, and runs of whitespace collapse to one space.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from xml.sax.saxutils import unescape

from lxml import etree

from clinfo.errors import MalformedResponse, one_line
from clinfo.pubmed.record import AbstractSection, Correction, PubmedRecord

R = TypeVar("R", bound=PubmedRecord)

__all__ = ["DeletedCitations", "parse_efetch", "iter_pubmed_xml"]

_YEAR = re.compile(r"\d{4}")
# Entrez.read(escape=True) escapes character data but writes inline tags raw, so any '<' left
# in its strings opens a tag.
_TAG = re.compile(r"<[^<>]*>")


@dataclass
class DeletedCitations:
    """PMIDs an update file withdraws (``<DeleteCitation>``); a mirror should drop them."""

    pmids: list[str] = field(default_factory=list)


def _squash(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def _year(*candidates: str | None) -> int | None:
    for value in candidates:
        if value:
            m = _YEAR.search(value)
            if m:
                return int(m.group())
    return None


# --------------------------------------------------------------------------- Entrez (efetch)


def _etext(value: Any) -> str:
    if value is None:
        return ""
    return _squash(unescape(_TAG.sub("", str(value))))


def _bundled_dtds() -> set[str]:
    from Bio.Entrez.Parser import DataHandler

    names: set[str] = set()
    for folder in (DataHandler.global_dtd_dir, DataHandler.local_dtd_dir):
        if folder and os.path.isdir(folder):
            names.update(n for n in os.listdir(folder) if n.endswith(".dtd"))
    return names


_DOCTYPE_DTD = re.compile(rb'(<!DOCTYPE\s+PubmedArticleSet\b[^>]*?")([^"]*?)(pubmed_\d+\.dtd)(")')
_DTD_HOME = b"https://dtd.nlm.nih.gov/ncbi/pubmed/out/"


def _pin_dtd(data: bytes) -> bytes:
    """Point the DOCTYPE at an https URL of a DTD that Biopython ships.

    Biopython downloads unknown DTDs with urllib and no timeout, so a new NCBI DTD release would
    make every fetch hang (or fail offline); PubMed DTD revisions add optional elements, which
    the non-validating fallback in :func:`parse_efetch` tolerates. Biopython also refuses the
    plain-http DTD URLs that older baseline files carry.
    """
    head = data[:2048]
    m = _DOCTYPE_DTD.search(head)
    if not m:
        return data
    known = _bundled_dtds()
    name = m.group(3)
    if name.decode() not in known:
        pubmed = sorted(n for n in known if re.fullmatch(r"pubmed_\d+\.dtd", n))
        if not pubmed:
            return data
        name = pubmed[-1].encode()
    if m.group(2) == _DTD_HOME and name == m.group(3):
        return data
    fixed = m.group(1) + _DTD_HOME + name + m.group(4)
    return head[: m.start()] + fixed + head[m.end() :] + data[2048:]


def _valid_utf8(data: bytes) -> bytes:
    # expat stops at the first invalid byte; one bad character should cost that character only,
    # as it does on the bulk path.
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")


def parse_efetch(data: bytes, record: type[R] = PubmedRecord) -> list[R]:  # type: ignore[assignment]
    """Records (of class ``record``) from an efetch ``PubmedArticleSet`` response, in document order."""
    from Bio import Entrez
    from Bio.Entrez.Parser import ValidationError

    if not data or not data.strip():
        raise MalformedResponse("efetch returned an empty body")
    data = _pin_dtd(_valid_utf8(data))
    try:
        try:
            parsed = Entrez.read(io.BytesIO(data), escape=True)
        except ValidationError:
            # An element newer than our DTD: skip what we do not know rather than fail.
            parsed = Entrez.read(io.BytesIO(data), validate=False, escape=True)
    except MalformedResponse:
        raise
    except Exception as exc:  # expat, NotXMLError, CorruptedXMLError, RuntimeError from Bio
        raise MalformedResponse(f"efetch returned malformed PubMed XML: {one_line(exc, 200)}") from None
    if not isinstance(parsed, dict) or not ("PubmedArticle" in parsed or "PubmedBookArticle" in parsed):
        raise MalformedResponse("efetch response is not a PubmedArticleSet")
    found = [_from_entrez_article(r) for r in parsed.get("PubmedArticle", [])]
    found += [_from_entrez_book(r) for r in parsed.get("PubmedBookArticle", [])]
    return [record(**fields) for fields in found if fields is not None]


def _entrez_sections(abstract: Any) -> list[AbstractSection]:
    if not abstract:
        return []
    sections = []
    for part in abstract.get("AbstractText", []):
        text = _etext(part)
        if text:
            label = getattr(part, "attributes", {}).get("Label", "")
            sections.append(AbstractSection(label=_squash(label), text=text))
    return sections


def _entrez_authors(author_list: Any) -> list[str]:
    names = []
    for author in author_list or []:
        name = _author_name(
            _etext(author.get("LastName")), _etext(author.get("Initials")), _etext(author.get("CollectiveName"))
        )
        if name:
            names.append(name)
    return names


def _author_name(last: str, initials: str, collective: str) -> str:
    if last:
        return f"{last} {initials}".strip()
    return collective


def _entrez_doi(*id_lists: Any) -> str | None:
    for ids, attr in id_lists:
        for item in ids or []:
            if getattr(item, "attributes", {}).get(attr) == "doi":
                text = _etext(item)
                if text:
                    return text
    return None


# "Cites" (a record's reference list, in newer DTDs) is no notice about the record, and long.
_NOT_CORRECTIONS = frozenset({"Cites"})


def _correction(ref_type: str | None, source: str, pmid: str) -> Correction | None:
    ref_type = _squash(ref_type)
    if not ref_type or ref_type in _NOT_CORRECTIONS:
        return None
    return Correction(ref_type=ref_type, pmid=pmid if pmid.isdigit() else None, source=source)


def _entrez_corrections(items: Any) -> list[Correction]:
    out = []
    for item in items or []:
        link = _correction(
            getattr(item, "attributes", {}).get("RefType"), _etext(item.get("RefSource")), _etext(item.get("PMID"))
        )
        if link is not None:
            out.append(link)
    return out


def _from_entrez_article(rec: Any) -> dict[str, Any] | None:
    mc = rec.get("MedlineCitation") or {}
    pmid = _etext(mc.get("PMID"))
    if not pmid:
        return None
    art = mc.get("Article") or {}
    journal = art.get("Journal") or {}
    pubdate = (journal.get("JournalIssue") or {}).get("PubDate") or {}
    article_dates = art.get("ArticleDate") or []
    return dict(
        pmid=pmid,
        title=_etext(art.get("ArticleTitle")) or _etext(art.get("VernacularTitle")),
        abstract_sections=_entrez_sections(art.get("Abstract")),
        authors=_entrez_authors(art.get("AuthorList")),
        journal=_etext(journal.get("ISOAbbreviation")) or _etext(journal.get("Title")),
        year=_year(
            pubdate.get("Year"),
            pubdate.get("MedlineDate"),
            article_dates[0].get("Year") if article_dates else None,
        ),
        doi=_entrez_doi(
            (art.get("ELocationID"), "EIdType"),
            ((rec.get("PubmedData") or {}).get("ArticleIdList"), "IdType"),
        ),
        mesh=[m for m in (_etext(h.get("DescriptorName")) for h in mc.get("MeshHeadingList") or []) if m],
        publication_types=[p for p in (_etext(p) for p in art.get("PublicationTypeList") or []) if p],
        corrections=_entrez_corrections(mc.get("CommentsCorrectionsList")),
    )


def _from_entrez_book(rec: Any) -> dict[str, Any] | None:
    doc = rec.get("BookDocument") or {}
    pmid = _etext(doc.get("PMID"))
    if not pmid:
        return None
    book = doc.get("Book") or {}
    book_title = _etext(book.get("BookTitle"))
    # BookDocument may carry several AuthorLists (authors, editors); the first one names authors.
    author_lists = doc.get("AuthorList") or book.get("AuthorList") or []
    authors = _entrez_authors(author_lists[0]) if author_lists else []
    pubdate = book.get("PubDate") or {}
    return dict(
        pmid=pmid,
        title=_etext(doc.get("ArticleTitle")) or book_title,
        abstract_sections=_entrez_sections(doc.get("Abstract")),
        authors=authors,
        journal=book_title if doc.get("ArticleTitle") else _etext((book.get("Publisher") or {}).get("PublisherName")),
        year=_year(pubdate.get("Year"), pubdate.get("MedlineDate")),
        doi=_entrez_doi(
            (doc.get("ArticleIdList"), "IdType"),
            ((rec.get("PubmedBookData") or {}).get("ArticleIdList"), "IdType"),
        ),
        mesh=[],
        publication_types=[_etext(p) for p in doc.get("PublicationType") or []],
    )


# --------------------------------------------------------------------------- lxml (bulk files)


def _ltext(el: Any) -> str:
    if el is None:
        return ""
    # Most elements hold plain text; itertext() is only needed around inline markup.
    text = el.text if len(el) == 0 else "".join(el.itertext())
    return " ".join(text.split()) if text else ""


def _lfind(parent: Any, path: str) -> str:
    return _ltext(parent.find(path)) if parent is not None else ""


def _lsections(abstract: Any) -> list[AbstractSection]:
    if abstract is None:
        return []
    sections = []
    for part in abstract.iterfind("AbstractText"):
        text = _ltext(part)
        if text:
            label = part.get("Label")
            sections.append(AbstractSection(label=" ".join(label.split()) if label else "", text=text))
    return sections


def _lauthors(author_list: Any) -> list[str]:
    if author_list is None:
        return []
    names = []
    for author in author_list.iterfind("Author"):
        last = _ltext(author.find("LastName"))
        if last:
            initials = _ltext(author.find("Initials"))
            names.append(f"{last} {initials}" if initials else last)
        else:
            collective = _ltext(author.find("CollectiveName"))
            if collective:
                names.append(collective)
    return names


def _ldoi(*candidates: tuple[Any, str, str]) -> str | None:
    for parent, path, attr in candidates:
        if parent is None:
            continue
        for item in parent.iterfind(path):
            if item.get(attr) == "doi":
                text = _ltext(item)
                if text:
                    return text
    return None


def _xpath(path: str) -> Any:
    return etree.XPath(path, smart_strings=False)


# Compiled once: an XPath that returns strings builds no Python element proxies, which is most
# of the per-record cost on the bulk path. Paths start at <PubmedArticle>.
_X_PMID = _xpath("MedlineCitation/PMID/text()")
_X_ARTICLE = _xpath("MedlineCitation/Article")
_X_ISO = _xpath("MedlineCitation/Article/Journal/ISOAbbreviation/text()")
_X_JOURNAL_TITLE = _xpath("MedlineCitation/Article/Journal/Title/text()")
# document order = precedence: PubDate (Year or MedlineDate) comes before ArticleDate
_X_YEARS = _xpath(
    "MedlineCitation/Article/Journal/JournalIssue/PubDate/Year/text()"
    " | MedlineCitation/Article/Journal/JournalIssue/PubDate/MedlineDate/text()"
    " | MedlineCitation/Article/ArticleDate/Year/text()"
)
# ELocationID comes before PubmedData; PubmedData/ArticleIdList is the record's own (the
# ReferenceList nests other ArticleIdLists deeper)
_X_DOI = _xpath(
    "MedlineCitation/Article/ELocationID[@EIdType='doi']/text()"
    " | PubmedData/ArticleIdList/ArticleId[@IdType='doi']/text()"
)
_X_AUTHOR_PARTS = _xpath(
    "MedlineCitation/Article/AuthorList/Author/*[self::LastName or self::Initials or self::CollectiveName]"
)
_X_MESH = _xpath("MedlineCitation/MeshHeadingList/MeshHeading/DescriptorName/text()")
_X_PUBTYPES = _xpath("MedlineCitation/Article/PublicationTypeList/PublicationType/text()")
_X_CORRECTIONS = _xpath("MedlineCitation/CommentsCorrectionsList/CommentsCorrections")


def _lcorrections(el: Any) -> list[Correction]:
    out = []
    for item in _X_CORRECTIONS(el):
        link = _correction(item.get("RefType"), _lfind(item, "RefSource"), _lfind(item, "PMID"))
        if link is not None:
            out.append(link)
    return out


def _first_text(xpath: Any, el: Any) -> str:
    found = xpath(el)
    return " ".join(found[0].split()) if found else ""


def _authors_from_parts(parts: list[Any]) -> list[str]:
    # LastName or CollectiveName opens an author (DTD: one or the other); Initials follow LastName.
    names: list[str] = []
    last = initials = ""
    open_author = False
    for node in parts:
        tag = node.tag
        if tag == "Initials":
            initials = _ltext(node)
            continue
        if open_author and last:
            names.append(f"{last} {initials}" if initials else last)
        open_author, initials = True, ""
        if tag == "LastName":
            last = _ltext(node)
        else:
            last = ""
            collective = _ltext(node)
            if collective:
                names.append(collective)
    if open_author and last:
        names.append(f"{last} {initials}" if initials else last)
    return names


def _from_element(el: Any) -> dict[str, Any] | None:
    pmid = _first_text(_X_PMID, el)
    if not pmid:
        return None
    arts = _X_ARTICLE(el)
    if not arts:
        return {"pmid": pmid, "corrections": _lcorrections(el)}
    art = arts[0]
    dois = [d for d in (" ".join(t.split()) for t in _X_DOI(el)) if d]
    return dict(
        pmid=pmid,
        title=_lfind(art, "ArticleTitle") or _lfind(art, "VernacularTitle"),
        abstract_sections=_lsections(art.find("Abstract")),
        authors=_authors_from_parts(_X_AUTHOR_PARTS(el)),
        journal=_first_text(_X_ISO, el) or _first_text(_X_JOURNAL_TITLE, el),
        year=_year(*_X_YEARS(el)),
        doi=dois[0] if dois else None,
        mesh=[m for m in (" ".join(t.split()) for t in _X_MESH(el)) if m],
        publication_types=[p for p in (" ".join(t.split()) for t in _X_PUBTYPES(el)) if p],
        corrections=_lcorrections(el),
    )


def _from_book_element(el: Any) -> dict[str, Any] | None:
    doc = el.find("BookDocument")
    if doc is None:
        return None
    pmid = _lfind(doc, "PMID")
    if not pmid:
        return None
    book = doc.find("Book")
    book_title = _lfind(book, "BookTitle")
    author_list = doc.find("AuthorList")
    if author_list is None and book is not None:
        author_list = book.find("AuthorList")
    article_title = doc.find("ArticleTitle")
    return dict(
        pmid=pmid,
        title=_ltext(article_title) or book_title,
        abstract_sections=_lsections(doc.find("Abstract")),
        authors=_lauthors(author_list),
        journal=book_title if article_title is not None else _lfind(book, "Publisher/PublisherName"),
        year=_year(
            book.findtext("PubDate/Year") if book is not None else None,
            book.findtext("PubDate/MedlineDate") if book is not None else None,
        ),
        doi=_ldoi((doc, "ArticleIdList/ArticleId", "IdType"), (el, "PubmedBookData/ArticleIdList/ArticleId", "IdType")),
        mesh=[],
        publication_types=[_ltext(p) for p in doc.iterfind("PublicationType")],
    )


_GZIP_MAGIC = b"\x1f\x8b"


class _Utf8Repair(io.RawIOBase):
    """Pass bytes through, replacing invalid UTF-8 sequences with U+FFFD.

    libxml2 stops at an invalid byte, and its recover mode is worse: after an encoding error it
    silently drops entities such as ``&lt;`` from the rest of the file. Validating 64 KiB at a
    time costs ~0.2 s for a 233 MB baseline file; valid chunks are passed on untouched.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._carry = b""  # an incomplete character at the end of the last chunk

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = size if size and size > 0 else 1 << 16
        data = self._carry
        while True:
            chunk = self._raw.read(want)
            if not chunk:  # end of input: whatever is carried is an unfinished character
                self._carry = b""
                return data.decode("utf-8", "replace").encode("utf-8")
            data += chunk
            cut = _char_boundary(data)
            if cut:  # b"" would read as end of file
                break
        data, self._carry = data[:cut], data[cut:]
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace").encode("utf-8")

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _char_boundary(data: bytes) -> int:
    """Length of ``data`` without a multi-byte character cut off at its end."""
    end = len(data)
    i = end - 1
    while i > max(end - 4, 0) and data[i] & 0xC0 == 0x80:  # continuation bytes
        i -= 1
    lead = data[i]
    if lead < 0xC0:
        return end  # ASCII, or stray continuation bytes that no later byte can complete
    need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return i if end - i < need else end


class _Prefixed(io.RawIOBase):
    """A stream with its first bytes (already read to sniff gzip) put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _open_bytes(stream_or_path: str | os.PathLike[str] | IO[bytes]) -> tuple[IO[bytes], list[IO[Any]], str]:
    """The decompressed byte stream, the handles to close afterwards, and a name for messages."""
    to_close: list[IO[Any]] = []
    if isinstance(stream_or_path, (str, os.PathLike)):
        raw: IO[bytes] = open(stream_or_path, "rb")
        to_close.append(raw)
        name = Path(stream_or_path).name
    else:
        raw = stream_or_path
        name = Path(str(getattr(stream_or_path, "name", None) or "stream")).name
    head = raw.read(2)
    if isinstance(head, str):
        raise TypeError("iter_pubmed_xml needs a binary stream (open the file with 'rb')")
    stream: IO[bytes] = _Prefixed(head, raw)  # type: ignore[assignment]
    if head == _GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[arg-type]
        to_close.append(stream)
    return stream, to_close, name


def iter_pubmed_xml(
    stream_or_path: str | os.PathLike[str] | IO[bytes],
    record: type[R] = PubmedRecord,  # type: ignore[assignment]
) -> Iterator[R | DeletedCitations]:
    """Stream a PubMed baseline/update file (``.xml`` or ``.xml.gz``, path or binary stream).

    Yields one ``record`` (:class:`PubmedRecord` unless named) per ``PubmedArticle``/``PubmedBookArticle`` and one
    :class:`DeletedCitations` per ``DeleteCitation`` block, in file order, holding only one
    record in memory. Invalid UTF-8 is replaced (U+FFFD) rather than fatal. A truncated or
    corrupt file yields every complete record before the fault, then raises
    :class:`MalformedResponse` (one line, naming the file).
    """
    stream, to_close, name = _open_bytes(stream_or_path)
    try:
        context = etree.iterparse(
            _Utf8Repair(stream),
            events=("end",),
            tag=("PubmedArticle", "PubmedBookArticle", "DeleteCitation", "PubmedArticleSet"),
            resolve_entities=False,
            no_network=True,
            huge_tree=True,
            collect_ids=False,
        )
        finished = False
        try:
            for _, el in context:
                tag = el.tag
                if tag == "PubmedArticleSet":
                    finished = True
                    break
                item: R | DeletedCitations | None = None
                if tag == "PubmedArticle" or tag == "PubmedBookArticle":
                    fields = _from_element(el) if tag == "PubmedArticle" else _from_book_element(el)
                    item = record(**fields) if fields is not None else None
                else:
                    item = DeletedCitations([p for p in (_ltext(x) for x in el.iterfind("PMID")) if p])
                # Free the record and the already-processed siblings the root still points to.
                el.clear()
                parent = el.getparent()
                if parent is not None:
                    while el.getprevious() is not None:
                        del parent[0]
                if item is not None:
                    yield item
        except (OSError, EOFError, zlib.error) as exc:  # gzip: bad CRC, truncated stream, bad header
            raise MalformedResponse(f"{name}: corrupt compressed data: {one_line(exc, 200)}") from None
        except etree.XMLSyntaxError as exc:
            raise MalformedResponse(f"{name}: malformed XML: {one_line(exc, 200)}") from None
        if not finished:
            raise MalformedResponse(f"{name}: file ends before </PubmedArticleSet> (truncated?)")
    finally:
        for handle in reversed(to_close):
            handle.close()
