"""Building the local corpus from real PubMed XML and JSON Lines: counts, replacement, deletion,
idempotence, resumption after a kill, every kind of bad input, and the record store and lexical
index agreeing after each of them; upgrading a schema v1 (FTS5) corpus."""

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
from clinfo.corpus.lexical import LexicalIndex, lexical_dir
from clinfo.corpus.lexical_query import translate
from clinfo.corpus.store import SCHEMA_VERSION, RecordStore, article_to_row, corpus_info, open_corpus
from clinfo.corpus.upgrade import upgrade_corpus
from clinfo.errors import CorpusError
from clinfo.models import Article
from clinfo.pubmed.xml import DeletedCitations, iter_pubmed_xml
from clinfo.sources.corpus import LocalSource
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


def _lexical_pmids(db: Path) -> list[int]:
    """Every PMID the lexical index holds, with repeats if a PMID were indexed twice."""
    import tantivy

    index = tantivy.Index.open(str(lexical_dir(db)))
    searcher = index.searcher()
    res = searcher.search(tantivy.Query.all_query(), max(searcher.num_docs, 1), count=False, order_by_field="pmid")
    return [int(p) for p in searcher.fast_field_values("pmid", [a for _, a in res.hits])]


def _check_integrity(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM lexical_pending").fetchone()[0] == 0
    finally:
        conn.close()
    # The lexical index holds exactly the stored articles, each once.
    lexical = _lexical_pmids(db)
    assert len(lexical) == len(set(lexical)) and set(lexical) == _pmids(db)


class Engine:
    def __init__(self, db: Path) -> None:
        self.store = RecordStore.open(db)
        self.lexical = LexicalIndex(db, self.store.meta("analyzer") or "")

    def fetch(self, pmids: list) -> list:
        return self.store.fetch(pmids)

    def search(self, query: str, limit: int = 20) -> tuple[list[int], list[float], int]:
        return self.lexical.search(translate(query), limit)


def test_build_from_real_xml_keeps_every_field(tmp_path: Path, slice21: XmlSlice) -> None:
    src = write_xml(tmp_path / "a.xml.gz", slice21.header, slice21.records[:120])
    summary = build_index([src], tmp_path / "c.db", progress=False, workers=0)
    records = [a for a in iter_pubmed_xml(src, Article) if not isinstance(a, DeletedCitations)]
    parsed = {a.pmid: a for a in records}  # the later record of a repeated PMID wins
    with_abstract = {p for p, a in parsed.items() if a.abstract_sections}
    assert summary.citations_read == len(records) == 120
    assert summary.added == len(with_abstract) > 50
    assert summary.skipped["no abstract"] == sum(1 for a in records if not a.abstract_sections)
    # This slice of the update file lists PMID 30271887 twice.
    assert summary.skipped["duplicate PMID"] == sum(1 for a in records if a.abstract_sections) - len(with_abstract) == 1
    assert _pmids(tmp_path / "c.db") == {int(p) for p in with_abstract}
    # What comes back is the Article the parser produced, field for field.
    index = Engine(tmp_path / "c.db")
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
    index = Engine(db)
    (article,) = index.fetch([revised_pmid])
    assert article.title.startswith("Zyxwvutonium revised")
    assert index.fetch([deleted_pmid]) == []
    assert index.search("zyxwvutonium[ti]")[0] == [int(revised_pmid)]
    assert int(deleted_pmid) not in index.search(f"{deleted_pmid}[pmid]")[0]
    _check_integrity(db)
    # Ingesting the older file again, changed, makes it the latest file: its version wins.
    os.utime(older, ns=(time.time_ns(), time.time_ns() + 10**9))
    build_index([older], db, progress=False, workers=0)
    again = Engine(db)
    assert not again.fetch([revised_pmid])[0].title.startswith("Zyxwvutonium")
    assert again.search("zyxwvutonium[ti]")[0] == []
    _check_integrity(db)


def test_duplicate_pmid_in_one_file_keeps_the_later_record(tmp_path: Path, slice21: XmlSlice) -> None:
    i = next(i for i, r in enumerate(slice21.records) if "<AbstractText" in r)
    second = slice21.records[i].replace("<ArticleTitle>", "<ArticleTitle>Second copy: ", 1)
    src = write_xml(tmp_path / "d.xml", slice21.header, [slice21.records[i], *slice21.records[i + 1 : i + 5], second])
    summary = build_index([src], tmp_path / "c.db", progress=False, workers=0)
    assert summary.skipped["duplicate PMID"] == 1
    (article,) = Engine(tmp_path / "c.db").fetch([slice21.pmid(i)])
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
    index = Engine(tmp_path / "c.db")
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
    path.write_bytes(
        slice21.header.encode() + rec + b"\n" + slice21.records[i + 1].encode() + b"\n</PubmedArticleSet>\n"
    )
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
    proc = subprocess.Popen(
        [sys.executable, "-c", _BUILD_SCRIPT, str(src), str(db), str(workers)], env=env, start_new_session=True
    )
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

    # The interrupted corpus opens and answers queries with what its lexical index committed,
    # saying that a build is unfinished when the lexical index lags the records.
    killed = LocalSource(db)
    result = killed.search_sync("patients", limit=5)
    store = RecordStore.open(db)
    pending = store.pending()
    store.close()
    assert pending > 0 or result.pmids
    assert any("interrupted build" in w for w in result.warnings) == (pending > 0)
    killed.close()

    resumed = build_index([src], db, progress=False, workers=workers)
    assert resumed.files_ingested == 1
    assert resumed.added == ref_summary.added - partial  # nothing added twice
    assert _pmids(db) == _pmids(reference)
    _check_integrity(db)
    a, b = Engine(db), Engine(reference)
    for q in ("covid-19 vaccine", "cancer[tiab] AND 2021[dp]", '"randomized controlled trial"[pt]'):
        ra, rb = a.search(q, 10_000), b.search(q, 10_000)
        assert set(ra[0]) == set(rb[0]) and ra[2] == rb[2] > 0


def test_gzip_detection_by_content_for_unsuffixed_files(tmp_path: Path) -> None:
    qa = pubmedqa_items()
    data = gzip.compress(
        b"\n".join(__import__("json").dumps(pubmedqa_jsonl_record(p, qa[p])).encode() for p in list(qa)[:4])
    )
    src = tmp_path / "records.data"
    src.write_bytes(data)
    assert build_index([src], tmp_path / "c.db", progress=False, workers=0).added == 4


# ------------------------------------------------------------------------ schema v1 (FTS5) corpora

_V1_DDL = [  # what clinfo wrote before the lexical index (SCHEMA_VERSION 1)
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
        done_upto INTEGER NOT NULL DEFAULT 0, complete INTEGER NOT NULL DEFAULT 0, error TEXT,
        records INTEGER NOT NULL DEFAULT 0, added REAL NOT NULL, UNIQUE (name, size, mtime_ns))""",
    """CREATE TABLE docs (pmid INTEGER PRIMARY KEY, seq INTEGER NOT NULL, year INTEGER, title TEXT NOT NULL,
        abstract TEXT NOT NULL, mesh TEXT NOT NULL, pubtype TEXT NOT NULL, journal TEXT NOT NULL,
        extra TEXT NOT NULL)""",
    "CREATE INDEX docs_year ON docs(year)",
    "CREATE TABLE deleted (pmid INTEGER PRIMARY KEY, seq INTEGER NOT NULL)",
    """CREATE VIRTUAL TABLE fts USING fts5(title, abstract, mesh, pubtype, content='docs', content_rowid='pmid',
        tokenize='unicode61 remove_diacritics 2')""",
]


def _write_v1(db: Path, slice21: XmlSlice, n: int) -> set[int]:
    src = write_xml(db.parent / "v1.xml", slice21.header, slice21.records[:n])
    rows = {}
    for a in iter_pubmed_xml(src, Article):
        if not isinstance(a, DeletedCitations) and not isinstance(row := article_to_row(a, 1), str):
            rows[row[0]] = row
    conn = sqlite3.connect(db)
    for ddl in _V1_DDL:
        conn.execute(ddl)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", "1"), ("generation", "1")])
    conn.execute("INSERT INTO files (name, size, mtime_ns, complete, added) VALUES ('v1.xml', 1, 1, 1, 0)")
    conn.executemany("INSERT INTO docs VALUES (?,?,?,?,?,?,?,?,?)", list(rows.values()))
    conn.executemany(
        "INSERT INTO fts(rowid, title, abstract, mesh, pubtype) VALUES (?,?,?,?,?)",
        [(r[0], *r[3:7]) for r in rows.values()],
    )
    conn.commit()
    conn.close()
    return set(rows)


def test_v1_corpus_gets_one_line_naming_the_upgrade_then_upgrades_in_place(tmp_path: Path, slice21: XmlSlice) -> None:
    db = tmp_path / "old.db"
    pmids = _write_v1(db, slice21, 150)
    for attempt in (lambda: LocalSource(db), lambda: build_index([tmp_path / "v1.xml"], db, progress=False)):
        with pytest.raises(
            CorpusError, match=r"schema v1, SQLite FTS5\); upgrade it in place with 'clinfo index upgrade .*old.db'"
        ) as info:
            attempt()
        assert "\n" not in str(info.value)
    size_before = db.stat().st_size
    assert upgrade_corpus(db, progress=False) == len(pmids)
    assert db.stat().st_size < size_before  # FTS5 pages given back
    _check_integrity(db)
    assert corpus_info(db)["schema_version"] == str(SCHEMA_VERSION)
    # It answers as a corpus built today from the same records does.
    fresh = tmp_path / "fresh.db"
    build_index([tmp_path / "v1.xml"], fresh, progress=False, workers=0)
    a, b = LocalSource(db), LocalSource(fresh)
    for q in ("patients[tiab]", "cancer OR surgery", "patients AND 2000:2030[dp]"):
        ra, rb = a.search_sync(q, limit=1000), b.search_sync(q, limit=1000)
        assert set(ra.pmids) == set(rb.pmids) and ra.count == rb.count > 0
    a.close()
    b.close()
    # Upgrading again changes nothing; a later build extends the upgraded corpus.
    assert upgrade_corpus(db, progress=False) == len(pmids)
    more = write_xml(tmp_path / "more.xml", slice21.header, slice21.records[150:200])
    assert build_index([more], db, progress=False, workers=0).added > 0
    _check_integrity(db)


# ------------------------------------------------------------------- schema v2 (plain-text records)

_V2_DDL = [  # what clinfo wrote before records were compressed (SCHEMA_VERSION 2)
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    _V1_DDL[1],
    """CREATE TABLE docs (pmid INTEGER PRIMARY KEY, seq INTEGER NOT NULL, year INTEGER, title TEXT NOT NULL,
        abstract TEXT NOT NULL, mesh TEXT NOT NULL, pubtype TEXT NOT NULL, journal TEXT NOT NULL,
        extra TEXT NOT NULL)""",
    "CREATE TABLE deleted (pmid INTEGER PRIMARY KEY, seq INTEGER NOT NULL)",
    "CREATE TABLE lexical_pending (pmid INTEGER PRIMARY KEY)",
]


def _write_v2(db: Path, src: Path) -> set[int]:
    """A v2 corpus of the real records in ``src``, written as the v2 build wrote it: the plain rows
    ``article_to_row`` still makes, the ledger, a deletion, and the lexical index beside it."""
    from clinfo.corpus.lexical import ANALYZER, LexicalWriter

    rows = {}
    for a in iter_pubmed_xml(src, Article):
        if not isinstance(a, DeletedCitations) and not isinstance(row := article_to_row(a, 1), str):
            rows[row[0]] = row
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA page_size=8192")
    for ddl in _V2_DDL:
        conn.execute(ddl)
    meta = [("schema_version", "2"), ("generation", "7"), ("analyzer", ANALYZER), ("articles", str(len(rows)))]
    conn.executemany("INSERT INTO meta VALUES (?, ?)", meta)
    st = src.stat()
    conn.execute(
        "INSERT INTO files (name, size, mtime_ns, done_upto, complete, records, added) VALUES (?, ?, ?, 1, 1, ?, 0)",
        (src.name, st.st_size, st.st_mtime_ns, len(rows)),
    )
    conn.execute("INSERT INTO deleted VALUES (1, 1)")
    conn.executemany("INSERT INTO docs VALUES (?,?,?,?,?,?,?,?,?)", list(rows.values()))
    conn.commit()
    conn.close()
    lex = LexicalWriter(db, ANALYZER, create=True)
    lex.add((r[0], r[2], *r[3:7]) for r in rows.values())
    lex.commit()
    lex.close()
    return set(rows)


def _same_as_fresh(db: Path, src: Path, tmp_path: Path) -> None:
    """The upgraded corpus holds what a corpus built today from the same file holds, field for field."""
    fresh = tmp_path / "fresh.db"
    build_index([src], fresh, progress=False, workers=0)
    assert _pmids(db) == _pmids(fresh)
    a, b = Engine(db), Engine(fresh)
    pmids = sorted(_pmids(fresh))
    upgraded, built = a.fetch(pmids), b.fetch(pmids)
    # Each record keeps its own CommentsCorrections links; the links other records make to it (a
    # retraction notice's) were never in an old corpus: a rebuild brings them, and readers are told.
    assert (a.store.corrections_state, b.store.corrections_state) == ("partial", "complete")
    assert [x.model_copy(update={"corrections": []}) for x in upgraded] == [
        x.model_copy(update={"corrections": []}) for x in built
    ]
    for x, y in zip(upgraded, built):
        assert all(c in y.corrections for c in x.corrections)
    for q in ("patients[tiab]", "cancer OR surgery", "patients AND 2000:2030[dp]", '"randomized controlled trial"[pt]'):
        ra, rb = a.search(q, 1000), b.search(q, 1000)
        assert set(ra[0]) == set(rb[0]) and ra[2] == rb[2] > 0
    a.store.close()
    b.store.close()


def test_v2_corpus_gets_one_line_naming_the_upgrade_then_shrinks_in_place(tmp_path: Path, slice21: XmlSlice) -> None:
    src = write_xml(tmp_path / "v2.xml", slice21.header, slice21.records[:200])
    db = tmp_path / "old.db"
    pmids = _write_v2(db, src)
    lexical_before = sorted((f.name, f.stat().st_size) for f in lexical_dir(db).iterdir())
    for attempt in (
        lambda: LocalSource(db),
        lambda: build_index([src], db, progress=False),
        lambda: RecordStore.open(db),
    ):
        with pytest.raises(
            CorpusError,
            match=r"schema v2, uncompressed records\); upgrade it in place with 'clinfo index upgrade .*old.db'",
        ) as info:
            attempt()
        assert "\n" not in str(info.value)
    size_before = db.stat().st_size
    assert upgrade_corpus(db, progress=False) == len(pmids)
    assert db.stat().st_size < 0.7 * size_before  # 200 records: the 64 KiB dictionary is a third of it
    assert not Path(f"{db}.upgrading").exists()
    info = corpus_info(db)
    assert info["schema_version"] == str(SCHEMA_VERSION) and info["generation"] == "7" and "upgrading_from" not in info
    assert sorted((f.name, f.stat().st_size) for f in lexical_dir(db).iterdir()) == lexical_before  # not rebuilt
    _check_integrity(db)
    _same_as_fresh(db, src, tmp_path)
    # The ledger and deletions came along: the same file is not ingested again; upgrading again changes nothing.
    assert build_index([src], db, progress=False, workers=0).files_already_indexed == 1
    assert upgrade_corpus(db, progress=False) == len(pmids)
    more = write_xml(tmp_path / "more.xml", slice21.header, slice21.records[200:260])
    assert build_index([more], db, progress=False, workers=0).added > 0
    _check_integrity(db)


_UPGRADE_SCRIPT = """
import sys, time
import clinfo.corpus.upgrade as upgrade
upgrade._CHUNK = 20
real = upgrade.codec_for

class Slow:  # ~1 ms a record: a 2,000-record copy lasts long enough to be killed in the middle
    def __init__(self, codec):
        self.codec = codec
    def row(self, plain):
        time.sleep(0.001)
        return self.codec.row(plain)

upgrade.codec_for = lambda d: Slow(real(d))
upgrade.upgrade_corpus(sys.argv[1], progress=False)
"""


def test_upgrade_killed_midway_loses_nothing_and_resumes(tmp_path: Path) -> None:
    from tests.support.corpus import UPDATE_21, read_slice

    big = read_slice(UPDATE_21, 2500)
    src = write_xml(tmp_path / "big.xml", big.header, big.records)
    db = tmp_path / "old.db"
    pmids = _write_v2(db, src)
    before = db.read_bytes()
    copy = Path(f"{db}.upgrading")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _UPGRADE_SCRIPT, str(db)], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and _count_docs(copy) < 200:
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, "the upgrade finished before it could be killed"
    copied = _count_docs(copy)
    assert 0 < copied < len(pmids)
    # The v2 corpus is exactly as it was, and still says how to upgrade it.
    assert db.read_bytes() == before
    with pytest.raises(CorpusError, match="schema v2"):
        LocalSource(db)
    # The next run continues the copy (the rows it holds are kept, not written again) and finishes.
    conn = sqlite3.connect(copy)
    first_rows = {r[0]: r[1] for r in conn.execute("SELECT pmid, body FROM docs")}
    conn.close()
    assert upgrade_corpus(db, progress=False) == len(pmids)
    conn = sqlite3.connect(db)
    kept = {r[0]: r[1] for r in conn.execute(f"SELECT pmid, body FROM docs WHERE pmid <= {max(first_rows)}")}
    conn.close()
    assert kept == first_rows
    _check_integrity(db)
    _same_as_fresh(db, src, tmp_path)
