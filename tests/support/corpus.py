"""Fixtures for the local corpus: slices of the real NLM files, written as small XML/JSONL inputs."""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.common import SHARED

BASELINE = SHARED / "data" / "pubmed-baseline"
UPDATE_21 = BASELINE / "pubmed21n1298.xml.gz"  # 2021 update file, long reference lists
BASELINE_20 = BASELINE / "pubmed20n0014.xml.gz"  # 1970s baseline file
PUBMEDQA = SHARED / "data" / "pubmedqa"

_PMID = re.compile(r"<PMID[^>]*>(\d+)</PMID>")


@dataclass
class XmlSlice:
    """The first records of a real PubMed file, as raw XML strings."""

    header: str  # XML declaration, DOCTYPE and <PubmedArticleSet>
    records: list[str]  # "<PubmedArticle>...</PubmedArticle>"

    def pmid(self, i: int) -> str:
        m = _PMID.search(self.records[i])
        assert m, "record without PMID"
        return m.group(1)


@functools.lru_cache(maxsize=8)
def read_slice(path: Path, n: int) -> XmlSlice:
    """The first ``n`` PubmedArticle elements of a (gzipped) PubMed file, read as a stream."""
    buf = ""
    records: list[str] = []
    header = None
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        while len(records) < n:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            buf += chunk
            if header is None:
                start = buf.find("<PubmedArticle>")
                if start < 0:
                    continue
                header, buf = buf[:start], buf[start:]
            while len(records) < n:
                end = buf.find("</PubmedArticle>")
                if end < 0:
                    break
                end += len("</PubmedArticle>")
                records.append(buf[:end].strip())
                buf = buf[end:]
    assert header is not None and len(records) == n
    return XmlSlice(header, records)


_ARTICLE_START = re.compile(rb"<PubmedArticle>\s*<MedlineCitation[^>]*>\s*<PMID[^>]*>(\d+)</PMID>")


@functools.lru_cache(maxsize=8)
def records_by_pmid(path: Path, pmids: tuple[str, ...]) -> dict[str, str]:
    """The raw ``<PubmedArticle>`` XML of ``pmids`` wherever they stand in a (gzipped) PubMed file
    (a PMID listed twice: its later record); PMIDs the file lacks are left out. ~4 s per call."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    wanted = {p.encode() for p in pmids}
    found: dict[str, str] = {}
    for m in _ARTICLE_START.finditer(data):
        if m.group(1) in wanted:
            end = data.index(b"</PubmedArticle>", m.end()) + len(b"</PubmedArticle>")
            found[m.group(1).decode()] = data[m.start() : end].decode("utf-8")
    return found


def write_xml(
    path: Path,
    header: str,
    records: Iterable[str],
    deletes: Iterable[str] = (),
    *,
    gz: bool | None = None,
    truncate_at: int | None = None,
) -> Path:
    """A PubMed XML file from raw records (and a DeleteCitation block); optionally cut short."""
    body = header + "\n".join(records)
    deletes = list(deletes)
    if deletes:
        body += "\n<DeleteCitation>" + "".join(f'<PMID Version="1">{p}</PMID>' for p in deletes) + "</DeleteCitation>"
    body += "\n</PubmedArticleSet>\n"
    data = body.encode("utf-8")
    if truncate_at is not None:
        data = data[:truncate_at]
    if gz if gz is not None else path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def write_jsonl(path: Path, lines: Iterable[Any]) -> Path:
    """JSON Lines: dicts are serialised, bytes are written as they are (for bad-input cases)."""
    out = bytearray()
    for line in lines:
        out += line if isinstance(line, bytes) else json.dumps(line).encode("utf-8")
        out += b"\n"
    data = bytes(out)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def pubmedqa_items(name: str = "pqal_dev.json") -> dict[str, dict[str, Any]]:
    return json.loads((PUBMEDQA / name).read_text(encoding="utf-8"))


def pubmedqa_jsonl_record(pmid: str, item: dict[str, Any]) -> dict[str, Any]:
    labels = item.get("LABELS") or []
    sections = [{"label": labels[i] if i < len(labels) else "", "text": t} for i, t in enumerate(item["CONTEXTS"])]
    sections.append({"label": "CONCLUSIONS", "text": item["LONG_ANSWER"]})
    return {
        "pmid": pmid,
        "title": "",
        "abstract": sections,
        "year": int(item["YEAR"]) if item.get("YEAR") else None,
        "mesh": item["MESHES"],
    }


@pytest.fixture(scope="session")
def slice21() -> XmlSlice:
    """400 real records from the 2021 update file."""
    if not UPDATE_21.is_file():
        pytest.fail(f"{UPDATE_21} missing; tests need the project's shared data")
    return read_slice(UPDATE_21, 400)


@pytest.fixture(scope="session")
def slice20() -> XmlSlice:
    """200 real records from the 1970s baseline file (many without abstracts)."""
    return read_slice(BASELINE_20, 200)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory, slice21: XmlSlice, slice20: XmlSlice) -> Path:
    """A corpus built once per session from both slices plus 50 PubMedQA items as JSONL."""
    from clinfo.corpus.build import build_index

    folder = tmp_path_factory.mktemp("corpus")
    f20 = write_xml(folder / "slice20.xml.gz", slice20.header, slice20.records)
    f21 = write_xml(folder / "slice21.xml", slice21.header, slice21.records)
    qa = pubmedqa_items()
    jl = write_jsonl(folder / "qa.jsonl", [pubmedqa_jsonl_record(p, qa[p]) for p in list(qa)[:50]])
    out = folder / "corpus.db"
    summary = build_index([f20, f21, jl], out, progress=False, workers=0)
    assert summary.added > 300 and not summary.files_failed
    return out
