"""Building the local corpus from real PubMed XML and JSON Lines: counts, replacement, deletion,
idempotence, resumption after a kill, and every kind of bad input."""

from __future__ import annotations

import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinfo.corpus.build import build_index
from clinfo.corpus.lexical import FtsIndex
from clinfo.corpus.store import SCHEMA_VERSION, corpus_info, open_corpus
from clinfo.errors import CorpusError
from clinfo.sources.pubmed_xml import DeletedCitations, iter_pubmed_xml
from tests.support.common import REPO
from tests.support.corpus import (
    XmlSlice,
    pubmedqa_items,
    pubmedqa_jsonl_record,
    write_jsonl,
    write_xml,
)


def _pmids(db: Path) -> set[int]:
    conn = open_corpus(db)
    try:
        return {r[0] for r in conn.execute("SELECT pmid FROM docs")}
    finally:
        conn.close()


def _check_integrity(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Raises if the FTS index disagrees with the docs table.
        conn.execute("INSERT INTO fts(fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def test_build_from_real_xml_keeps_every_field(tmp_path: Path, slice21: XmlSlice) -> None:
    src = write_xml(tmp_path / "a.xml.gz", slice21.header, slice21.records[:120])
    summary = build_index([src], tmp_path / "c.db", progress=False, workers=0)
    records = [a for a in iter_pubmed_xml(src) if not isinstance(a, DeletedCitations)]
    parsed = {a.pmid: a for a in records}  # the later record of a repeated PMID wins
    with_abstract = {p for p, a in parsed.items() if a.abstract_sections}
    assert summary.citations_read == len(records) == 120
    assert summary.added == len(with_abstract) > 50
    assert summary.skipped["no abstract"] == sum(1 for a in records if not a.abstract_sections)
    # This slice of the update file lists PMID 30271887 twice.
    assert summary.skipped["duplicate PMID"] == sum(1 for a in records if a.abstract_sections) - len(with_abstract) == 1
    assert _pmids(tmp_path / "c.db") == {int(p) for p in with_abstract}
    # What comes back is the Article the parser produced, field for field.
    index = FtsIndex(open_corpus(tmp_path / "c.db"))
    pmids = sorted(with_abstract)[:25]
    for article in index.fetch(pmids):
        assert article == parsed[article.pmid]
    _check_integrity(tmp_path / "c.db")


def test_parallel_build_of_two_files_with_summary_line(tmp_path: Path, slice21: XmlSlice, slice20: XmlSlice) -> None:
    a = write_xml(tmp_path / "pubmed20.xml.gz", slice20.header, slice20.records)
    b = write_xml(tmp_path / "pubmed21.xml.gz", slice21.header, slice21.records[:150])
    summary = build_index([a, b], tmp_path / "c.db", progress=False, workers=2)
    assert summary.files_ingested == 2 and summary.citations_read == 350
    line = summary.line()
    assert "read 350 citations from 2 file(s)" in line and "no abstract" in line and "\n" not in line
    assert summary.articles == len(_pmids(tmp_path / "c.db")) == summary.added


def test_rerun_is_idempotent_and_skips_ingested_files(tmp_path: Path, slice21: XmlSlice) -> None:
    src = write_xml(tmp_path / "a.xml", slice21.header, slice21.records[:80])
    db = tmp_path / "c.db"
    first = build_index([src], db, progress=False, workers=0)
    info = corpus_info(db)
    again = build_index([src], db, progress=False, workers=0)
    assert again.files_already_indexed == 1 and again.citations_read == 0 and again.added == 0
    assert again.articles == first.articles
    assert corpus_info(db)["generation"] == info["generation"]  # nothing changed, no new generation
    # The same content under a new mtime is a new input: re-read, but nothing duplicated.
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = build_index([src], db, progress=False, workers=0)
    assert third.citations_read == 80 and third.added == 0 and third.replaced == first.added
    assert third.articles == first.articles
    _check_integrity(db)


def test_later_file_replaces_and_deletes_whatever_order_workers_finish(tmp_path: Path, slice21: XmlSlice) -> None:
    recs = slice21.records[:60]
    idx = [i for i in range(60) if "<AbstractText" in recs[i]]
    revised_i, deleted_i = idx[0], idx[1]
    revised_pmid, deleted_pmid = slice21.pmid(revised_i), slice21.pmid(deleted_i)
    revised = recs[revised_i].replace("<ArticleTitle>", "<ArticleTitle>Zyxwvutonium revised: ", 1)
    older = write_xml(tmp_path / "u1.xml.gz", slice21.header, recs)
    newer = write_xml(tmp_path / "u2.xml.gz", slice21.header, [revised], deletes=[deleted_pmid])
    db = tmp_path / "c.db"
    summary = build_index([older, newer], db, progress=False, workers=2)
    # Which worker finishes first varies; the counts say which way it went, the result is the same.
    assert summary.replaced + summary.skipped["superseded by a later file"] == 1
    assert summary.deleted + summary.skipped["deleted by a later file"] == 1
    index = FtsIndex(open_corpus(db))
    (article,) = index.fetch([revised_pmid])
    assert article.title.startswith("Zyxwvutonium revised")
    assert index.fetch([deleted_pmid]) == []
    assert index.search("zyxwvutonium[ti]")[0] == [int(revised_pmid)]
    _check_integrity(db)
    # Ingesting the older file again, changed, makes it the latest file: its version wins.
    os.utime(older, ns=(time.time_ns(), time.time_ns() + 10**9))
    build_index([older], db, progress=False, workers=0)
    assert not FtsIndex(open_corpus(db)).fetch([revised_pmid])[0].title.startswith("Zyxwvutonium")


def test_duplicate_pmid_in_one_file_keeps_the_later_record(tmp_path: Path, slice21: XmlSlice) -> None:
    i = next(i for i, r in enumerate(slice21.records) if "<AbstractText" in r)
    second = slice21.records[i].replace("<ArticleTitle>", "<ArticleTitle>Second copy: ", 1)
    src = write_xml(tmp_path / "d.xml", slice21.header, [slice21.records[i], *slice21.records[i + 1 : i + 5], second])
    summary = build_index([src], tmp_path / "c.db", progress=False, workers=0)
    assert summary.skipped["duplicate PMID"] == 1
    (article,) = FtsIndex(open_corpus(tmp_path / "c.db")).fetch([slice21.pmid(i)])
    assert article.title.startswith("Second copy")


def test_jsonl_bad_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    qa = pubmedqa_items()
    good = [pubmedqa_jsonl_record(p, qa[p]) for p in list(qa)[:5]]
    lines = [
        *good,
        b"{not json",
        b'{"pmid": "77", "title": "caf\xe9 au lait", "abstract": "x"}',  # latin-1, not UTF-8
        b"[1, 2, 3]",
        {"title": "no pmid", "abstract": "text"},
        {"pmid": "abc", "title": "t", "abstract": "text"},
        {"pmid": "78", "title": "A title but no abstract"},
        {"pmid": "79", "title": "Bad mesh", "abstract": "text", "mesh": "not a list"},
        {"pmid": 80, "abstract": "An abstract without a title is kept.", "year": "2001"},
        {**good[0], "title": "duplicate of the first line"},
        b"",
        b'{"pmid": "81", "title": "cut off mid-li',
    ]
    src = write_jsonl(tmp_path / "bad.jsonl.gz", lines)
    summary = build_index([src], tmp_path / "c.db", progress=False, workers=0)
    assert summary.skipped == {
        "not JSON": 2,
        "invalid UTF-8": 1,
        "not a JSON object": 1,
        "invalid PMID": 2,
        "no abstract": 1,
        "bad field type": 1,
        "duplicate PMID": 1,
    }
    assert summary.added == 6 and not summary.files_failed
    index = FtsIndex(open_corpus(tmp_path / "c.db"))
    (untitled,) = index.fetch(["80"])
    assert untitled.title == "" and untitled.year == 2001
    (first,) = index.fetch([good[0]["pmid"]])
    assert first.title == "duplicate of the first line"  # later line wins, counted as a duplicate
    assert [s.label for s in first.abstract_sections][-1] == "CONCLUSIONS"


def test_corrupt_gzip_keeps_records_before_the_fault(tmp_path: Path, slice21: XmlSlice) -> None:
    src = write_xml(tmp_path / "c.xml.gz", slice21.header, slice21.records[:200])
    data = bytearray(src.read_bytes())
    mid = len(data) * 2 // 3
    data[mid : mid + 64] = bytes(64)  # a run of zeros in the deflate stream
    src.write_bytes(bytes(data))
    summary = build_index([src], tmp_path / "c.db", progress=False, workers=1)
    assert len(summary.files_failed) == 1
    name, reason = summary.files_failed[0]
    assert name == "c.xml.gz" and "c.xml.gz" in reason and "\n" not in reason
    assert 0 < summary.citations_read < 200
    assert "failed: c.xml.gz" in summary.line()
    _check_integrity(tmp_path / "c.db")
    # A failed file is not retried until it changes.
    assert build_index([src], tmp_path / "c.db", progress=False, workers=0).files_already_indexed == 1


def test_truncated_xml_keeps_records_before_the_cut(tmp_path: Path, slice21: XmlSlice) -> None:
    full = write_xml(tmp_path / "full.xml", slice21.header, slice21.records[:100])
    cut = write_xml(tmp_path / "cut.xml", slice21.header, slice21.records[:100], truncate_at=full.stat().st_size // 2)
    summary = build_index([cut], tmp_path / "c.db", progress=False, workers=0)
    assert summary.files_failed and "cut.xml" in summary.files_failed[0][1]
    assert 10 < summary.citations_read < 100
    _check_integrity(tmp_path / "c.db")


def test_xml_record_with_invalid_utf8_is_skipped(tmp_path: Path, slice21: XmlSlice) -> None:
    i = next(i for i, r in enumerate(slice21.records) if "<AbstractText" in r)
    rec = slice21.records[i].encode("utf-8").replace(b"<ArticleTitle>", b"<ArticleTitle>\xff\xfe ", 1)
    path = tmp_path / "u.xml"
    path.write_bytes(slice21.header.encode() + rec + b"\n" + slice21.records[i + 1].encode() + b"\n</PubmedArticleSet>\n")
    summary = build_index([path], tmp_path / "c.db", progress=False, workers=0)
    assert summary.skipped["invalid UTF-8"] == 1
    assert int(slice21.pmid(i)) not in _pmids(tmp_path / "c.db")


def test_missing_inputs_and_foreign_files_raise_corpus_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        build_index([tmp_path / "nope.xml.gz"], tmp_path / "c.db", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no .xml"):
        build_index([tmp_path / "empty"], tmp_path / "c.db", progress=False)
    with pytest.raises(CorpusError, match="no corpus at"):
        open_corpus(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorpusError, match="not a readable clinfo corpus"):
        open_corpus(junk)
    with pytest.raises(CorpusError):
        build_index([], junk, progress=False)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(CorpusError, match="not a clinfo corpus"):
        open_corpus(other)


def test_incompatible_schema_version_is_refused(tmp_path: Path) -> None:
    qa = pubmedqa_items()
    src = write_jsonl(tmp_path / "a.jsonl", [pubmedqa_jsonl_record(p, qa[p]) for p in list(qa)[:3]])
    db = tmp_path / "c.db"
    build_index([src], db, progress=False)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(CorpusError, match=f"schema v999; this clinfo reads v{SCHEMA_VERSION}; rebuild"):
        open_corpus(db)
    with pytest.raises(CorpusError, match="v999"):
        build_index([src], db, progress=False)


def test_progress_goes_to_stderr(tmp_path: Path, slice21: XmlSlice, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_xml(tmp_path / "p.xml", slice21.header, slice21.records[:30])
    build_index([src], tmp_path / "c.db", progress=True, workers=0)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "indexing" in captured.err and "citations" in captured.err


_BUILD_SCRIPT = """
import sys
from clinfo.corpus.build import build_index
build_index([sys.argv[1]], sys.argv[2], progress=False, workers=int(sys.argv[3]), batch_size=25)
"""


def _count_docs(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM docs").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("workers", [0, 1])
def test_build_killed_midway_is_usable_and_resumes(tmp_path: Path, workers: int) -> None:
    from tests.support.corpus import UPDATE_21, read_slice

    big = read_slice(UPDATE_21, 2500)
    src = write_xml(tmp_path / "big.xml", big.header, big.records)
    reference = tmp_path / "reference.db"
    ref_summary = build_index([src], reference, progress=False, workers=0)

    db = tmp_path / "killed.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Own process group, so the kill reaches the parser worker too.
    proc = subprocess.Popen([sys.executable, "-c", _BUILD_SCRIPT, str(src), str(db), str(workers)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and _count_docs(db) < 100:
            time.sleep(0.01)
        # SIGKILL: no cleanup handlers run, as when a machine or OOM killer ends the build.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    partial = _count_docs(db)
    assert 0 < partial < ref_summary.added

    # The interrupted corpus opens and answers queries with what it has.
    index = FtsIndex(open_corpus(db))
    assert index.search("patients")[2] > 0
    index.conn.close()
    _check_integrity(db)

    resumed = build_index([src], db, progress=False, workers=workers)
    assert resumed.files_ingested == 1
    assert resumed.added == ref_summary.added - partial  # nothing added twice
    assert _pmids(db) == _pmids(reference)
    _check_integrity(db)
    a, b = FtsIndex(open_corpus(db)), FtsIndex(open_corpus(reference))
    for q in ("covid-19 vaccine", "cancer[tiab] AND 2021[dp]", '"randomized controlled trial"[pt]'):
        assert a.search(q, 20)[:3] == b.search(q, 20)[:3]


def test_gzip_detection_by_content_for_unsuffixed_files(tmp_path: Path) -> None:
    qa = pubmedqa_items()
    data = gzip.compress(b"\n".join(__import__("json").dumps(pubmedqa_jsonl_record(p, qa[p])).encode() for p in list(qa)[:4]))
    src = tmp_path / "records.data"
    src.write_bytes(data)
    assert build_index([src], tmp_path / "c.db", progress=False, workers=0).added == 4
