"""What a corpus build reads: the input files, and the records in each.

Two formats: PubMed XML (``.xml``, ``.xml.gz``: NLM's baseline and update files, read by
``clinfo.pubmed.xml``, deletions included) and JSON Lines (``.jsonl``, ``.ndjson``, gzipped or not:
one article object a line: ``pmid``, ``title``, ``abstract``, ``mesh``...). A file with another
suffix is recognised by its first bytes. Readers yield an ``Article``, a ``DeletedCitations`` block (XML) or,
for an unusable record, the reason as a string, which the build counts and skips.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from clinfo.errors import CorpusError
from clinfo.models import AbstractSection, Article, Correction

__all__ = ["CountingReader", "input_files", "iter_jsonl", "jsonl_article", "read_items"]

# ------------------------------------------------------------------------------------ JSON Lines


def _json_sections(value: Any) -> list[AbstractSection] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [AbstractSection(text=value)] if value.strip() else []
    if isinstance(value, list):
        out = []
        for part in value:
            if isinstance(part, str):
                out.append(AbstractSection(text=part))
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(AbstractSection(label=str(part.get("label") or ""), text=part["text"]))
            else:
                return None
        return out
    if isinstance(value, dict):  # {"BACKGROUND": "...", "METHODS": "..."}
        if not all(isinstance(v, str) for v in value.values()):
            return None
        return [AbstractSection(label=str(k), text=v) for k, v in value.items()]
    return None


def _str_list(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _json_corrections(value: Any) -> list[Correction] | None:
    """``[{"ref_type": "RetractionIn", "pmid": "34092875", "source": "..."}, ...]`` (NLM's
    CommentsCorrections; ``pmid`` and ``source`` optional)."""
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("ref_type"), str) or not item["ref_type"].strip():
            return None
        pmid, source = item.get("pmid"), item.get("source") or ""
        if isinstance(pmid, int) and not isinstance(pmid, bool):
            pmid = str(pmid)
        if not (pmid is None or (isinstance(pmid, str) and pmid.strip().isdigit())) or not isinstance(source, str):
            return None
        out.append(Correction(ref_type=item["ref_type"].strip(), pmid=pmid.strip() if pmid else None, source=source))
    return out


def jsonl_article(obj: Any) -> Article | str:
    """One decoded JSON Lines object as an Article, or the reason it is unusable (a skip reason)."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    pmid = obj.get("pmid")
    if isinstance(pmid, bool) or not isinstance(pmid, (int, str)) or not str(pmid).strip().isdigit():
        return "invalid PMID"
    sections = _json_sections(obj.get("abstract"))
    mesh, ptypes, authors = (
        _str_list(obj.get("mesh")),
        _str_list(obj.get("publication_types")),
        _str_list(obj.get("authors")),
    )
    corrections = _json_corrections(obj.get("corrections"))
    title, journal, year, doi = obj.get("title") or "", obj.get("journal") or "", obj.get("year"), obj.get("doi")
    if isinstance(year, str) and year.strip().isdigit():
        year = int(year)
    if (
        sections is None
        or mesh is None
        or ptypes is None
        or authors is None
        or corrections is None
        or not isinstance(title, str)
        or not isinstance(journal, str)
        or not (year is None or (isinstance(year, int) and not isinstance(year, bool)))
        or not (doi is None or isinstance(doi, str))
    ):
        return "bad field type"
    return Article(
        pmid=str(pmid).strip(),
        title=title,
        abstract_sections=sections,
        journal=journal,
        year=year,
        doi=doi,
        mesh=mesh,
        publication_types=ptypes,
        authors=authors,
        corrections=corrections,
    )


def iter_jsonl(stream: IO[bytes]) -> Iterator[Article | str]:
    """Articles from JSON Lines, or the reason a line is unusable; blank lines are ignored."""
    for raw in stream:
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield "invalid UTF-8"
            continue
        try:
            obj = json.loads(text)
        except ValueError:
            yield "not JSON"
            continue
        yield jsonl_article(obj)


# ------------------------------------------------------------------------------- input handling

_XML_SUFFIXES = (".xml", ".xml.gz")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")


def input_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files to ingest, in order; a directory contributes its XML and JSONL files sorted by name."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(
                f for f in path.iterdir() if f.is_file() and f.name.lower().endswith(_XML_SUFFIXES + _JSONL_SUFFIXES)
            )
            if not found:
                raise CorpusError(f"no .xml, .xml.gz or .jsonl files in directory {path}")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        elif path.exists():
            raise CorpusError(f"not a regular file: {path}")
        else:
            raise CorpusError(f"no such file: {path}")
    return out


class CountingReader(io.RawIOBase):
    """Counts the bytes read from the file, which drives the progress bar for gzip files too."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw = raw
        self.count = 0
        self.name = name  # the XML reader names the file in its error messages

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        return n or 0

    def close(self) -> None:
        self._raw.close()
        super().close()


def _is_jsonl(path: Path, head: bytes) -> bool:
    """Whether a file holds JSON Lines: by its suffix, else by its first bytes (gzip looked into)."""
    name = path.name.lower()
    if name.endswith(_JSONL_SUFFIXES):
        return True
    if name.endswith(_XML_SUFFIXES):
        return False
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(512)
        except (OSError, EOFError, zlib.error):
            return False
    return head.lstrip()[:1] in (b"{", b"[")


def read_items(path: Path, raw: CountingReader) -> Iterator[Any]:
    """The items of the file at ``path``, read through ``raw``, in file order: ``Article``,
    ``DeletedCitations`` (XML) or the reason a record is unusable (``str``)."""
    buffered = io.BufferedReader(raw, buffer_size=1 << 16)
    if _is_jsonl(path, buffered.peek(512)[:512]):
        stream: IO[bytes] = buffered
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        return iter_jsonl(stream)
    from clinfo.pubmed.xml import iter_pubmed_xml

    return iter_pubmed_xml(buffered, Article)
