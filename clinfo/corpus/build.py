"""Building a corpus: PubMed XML or JSON Lines files into the record store (``clinfo.corpus.store``)
and the lexical index beside it (``clinfo.corpus.lexical``).

Every input file gets a sequence number in the order given (across runs, later runs are later).
A record replaces the stored one only if it comes from a later file, and a deletion only removes a
record from the same or an earlier file. Applying a record is therefore independent of the order
in which parallel workers deliver their batches, and "the later file wins" still holds.

Speed: parsing is the bottleneck (lxml on long reference lists), so each file is parsed in its own
worker process while this process is the single SQLite writer, committing one transaction per
batch. ``synchronous=OFF`` with WAL is safe against a killed process (the WAL is replayed or
discarded on the next open); only an OS crash could lose the last commits, and the ``files``
table would then re-ingest them.

The two stores never disagree after a finished build: each SQLite batch records the PMIDs it
changed in ``lexical_pending``; the lexical index commits every ``_LEXICAL_COMMIT_EVERY`` changes
and at the end, and only then is ``lexical_pending`` emptied. A killed build leaves the lexical
index at its last commit (consistent in itself) and the PMIDs to redo; the next build replays them
from the stored records before ingesting anything else.
"""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import sqlite3
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from clinfo.corpus.lexical import ANALYZER, LexicalWriter, lexical_dir
from clinfo.corpus.store import (
    _DDL,
    CORRECTIONS_DDL,
    SCHEMA_VERSION,
    _check_schema,
    article_to_row,
    codec_for,
    corpus_codec,
    link_rows,
    packaged_dict,
)
from clinfo.corpus.writelock import writes_corpus
from clinfo.errors import CorpusError, MalformedResponse, one_line
from clinfo.models import AbstractSection, Article, Correction

__all__ = ["BuildSummary", "build_index", "input_files"]

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


def _jsonl_article(obj: Any) -> Article | str:
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


def _iter_jsonl(stream: IO[bytes]) -> Iterator[Article | str]:
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
        yield _jsonl_article(obj)


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


class _CountingReader(io.RawIOBase):
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


# ------------------------------------------------------------------------------------ the worker

_BATCH = 2000


def _parse_file(path: str, file_id: int, skip: int, out: Any, batch_size: int, codec_dict: bytes) -> None:
    """Parse one file and put batches on ``out``; always ends with a ("done", ...) message.

    Rows are ``(pmid, seq, year, body, title, abstract, mesh, pubtype)``: the docs row, then the
    texts the lexical index needs, so compression runs here, in parallel, and the single writer
    neither compresses nor decompresses. ``links`` has ``(pmid, [(ref_type, other_pmid, source)])``
    for every record read, abstract or not (the ``corrections`` table)."""
    reader: _CountingReader | None = None
    error: str | None = None
    rows: list[tuple[Any, ...]] = []
    deletes: list[int] = []
    links: list[tuple[int, list[tuple[str, int, str]]]] = []
    skipped: Counter[str] = Counter()
    seen = 0
    item_no = 0

    def flush() -> None:
        nonlocal rows, deletes, links, skipped, seen
        nbytes = reader.count if reader else 0
        out.put(("batch", file_id, item_no, rows, deletes, dict(skipped), seen, nbytes, links))
        rows, deletes, links, skipped, seen = [], [], [], Counter(), 0

    try:
        codec = codec_for(codec_dict)
        p = Path(path)
        reader = _CountingReader(open(p, "rb"), p.name)
        buffered = io.BufferedReader(reader, buffer_size=1 << 16)
        items: Iterator[Any]
        if _is_jsonl(p, buffered.peek(512)[:512]):
            stream: IO[bytes] = buffered
            if buffered.peek(2)[:2] == b"\x1f\x8b":
                stream = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
            items = _iter_jsonl(stream)
        else:
            from clinfo.pubmed.xml import iter_pubmed_xml

            items = iter_pubmed_xml(buffered, Article)
        for item in items:
            item_no += 1
            if item_no <= skip:  # applied by an earlier, interrupted run
                continue
            if isinstance(item, str):
                seen += 1
                skipped[item] += 1
            elif isinstance(item, Article):
                seen += 1
                pmid = item.pmid.strip()
                if pmid.isdigit() and 0 < int(pmid) < 2**63:
                    links.append((int(pmid), link_rows(item)))
                row = article_to_row(item, file_id)
                if isinstance(row, str):
                    skipped[row] += 1
                else:
                    rows.append((*codec.row(row), *row[3:7]))
            else:  # DeletedCitations
                deletes.extend(int(p) for p in item.pmids if p.isdigit())
            if len(rows) + len(deletes) >= batch_size or seen >= batch_size * 4:
                flush()
    except MalformedResponse as exc:
        error = str(exc) if str(exc).startswith(Path(path).name) else f"{Path(path).name}: {exc}"
    except (OSError, EOFError, zlib.error) as exc:
        error = f"{Path(path).name}: unreadable: {one_line(exc)}"
    except Exception as exc:  # a bug must not hang the writer waiting for "done"
        error = f"{Path(path).name}: {type(exc).__name__}: {one_line(str(exc), 200)}"
    finally:
        if rows or deletes or links or skipped or seen:
            flush()
        out.put(("done", file_id, error, reader.count if reader else 0))
        if reader is not None:
            reader.close()


# --------------------------------------------------------------------------------------- summary


@dataclass
class BuildSummary:
    files: int = 0
    files_ingested: int = 0
    files_already_indexed: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)
    citations_read: int = 0
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    articles: int = 0  # in the index after the build
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.citations_read / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """One line for humans and logs."""
        parts = [
            f"read {self.citations_read:,} citations from {self.files_ingested} file(s) in {self.seconds:.1f} s"
            f" ({self.rate:,.0f}/s)",
            f"added {self.added:,}, replaced {self.replaced:,}, deleted {self.deleted:,}",
        ]
        if self.skipped:
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in self.skipped.most_common())
            parts.append(f"skipped {sum(self.skipped.values()):,} ({reasons})")
        if self.files_already_indexed:
            parts.append(f"{self.files_already_indexed} file(s) already indexed")
        if self.files_failed:
            parts.append("failed: " + "; ".join(reason for _, reason in self.files_failed))
        parts.append(f"index holds {self.articles:,} articles")
        return "; ".join(parts)


def _create_or_open_for_write(out: Path) -> tuple[sqlite3.Connection, bool]:
    """(connection, whether the corpus is new)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = not out.exists() or out.stat().st_size == 0
    try:
        conn = sqlite3.connect(out, isolation_level=None, timeout=60)
        if fresh:
            conn.execute("PRAGMA page_size=8192")
            conn.execute("BEGIN")
            for ddl in _DDL:
                conn.execute(ddl)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT INTO meta VALUES ('generation', '0')")
            conn.execute("INSERT INTO meta VALUES ('analyzer', ?)", (ANALYZER,))
            # every file's CommentsCorrections links are kept (RecordStore.corrections_state)
            conn.execute("INSERT INTO meta VALUES ('corrections', '1')")
            conn.execute("INSERT INTO codec VALUES (1, 'zstd-dict', ?)", (packaged_dict(),))
            conn.execute("COMMIT")
        else:
            _check_schema(conn, out)
            _add_corrections_table(conn)
    except sqlite3.DatabaseError as exc:
        raise CorpusError(f"{out} exists and is not a clinfo corpus ({one_line(exc)})") from None
    _tune_for_writing(conn)
    return conn, fresh


def _add_corrections_table(conn: sqlite3.Connection) -> None:
    """A corpus built before clinfo kept NLM's links gets the table for the files still to come;
    the files it ingested before keep none (meta has no 'corrections' key, readers say so)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='corrections'").fetchone():
        return
    conn.execute("BEGIN IMMEDIATE")
    for ddl in CORRECTIONS_DDL:
        conn.execute(ddl)
    # a corpus with no file ingested yet misses nothing
    if conn.execute("SELECT count(*) FROM files").fetchone()[0] == 0:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('corrections', '1')")
    conn.execute("COMMIT")


def _tune_for_writing(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    # Safe against a killed process with WAL (see module docstring); speeds batch commits up.
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB page cache while writing
    conn.execute("PRAGMA temp_store=MEMORY")


def _open_lexical(conn: sqlite3.Connection, out: Path, fresh: bool) -> LexicalWriter:
    """The lexical index writer; a missing index is created and every article queued for it."""
    analyzer = conn.execute("SELECT value FROM meta WHERE key='analyzer'").fetchone()
    analyzer = analyzer[0] if analyzer else ANALYZER
    folder = lexical_dir(out)
    create = fresh or not (folder / "meta.json").is_file()
    if create:
        if folder.exists():  # left by a corpus file deleted since, or by a crash before its first commit
            shutil.rmtree(folder)
        if not fresh:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR IGNORE INTO lexical_pending SELECT pmid FROM docs")
            conn.execute("COMMIT")
    try:
        return LexicalWriter(out, analyzer, create=create)
    except CorpusError as exc:
        if "LockBusy" in str(exc) or "lock" in str(exc).lower():
            raise CorpusError(f"another build is writing {out}; wait for it to finish") from None
        raise


# ---------------------------------------------------------------------------------------- writer

# Commit the lexical index after this many changed articles: each commit writes a segment, so
# fewer commits build faster; what a killed build loses is replayed from lexical_pending.
_LEXICAL_COMMIT_EVERY = 200_000


class _Writer:
    def __init__(self, conn: sqlite3.Connection, lex: LexicalWriter, summary: BuildSummary) -> None:
        self.conn = conn
        self.lex = lex
        self.summary = summary
        self.codec = corpus_codec(conn)
        self.tombstones: dict[int, int] = dict(conn.execute("SELECT pmid, seq FROM deleted").fetchall())
        self.changed = False
        self.uncommitted = 0  # lexical changes since its last commit

    def apply(
        self,
        file_id: int,
        upto: int,
        rows: list[tuple[Any, ...]],
        deletes: list[int],
        skipped: dict[str, int],
        seen: int,
        links: list[tuple[int, list[tuple[str, int, str]]]] = (),  # type: ignore[assignment]
    ) -> None:
        conn, s = self.conn, self.summary
        s.citations_read += seen
        s.skipped.update(skipped)
        removed: list[int] = []
        added: list[tuple[Any, ...]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                added = self._rows(rows, removed)
            if links:
                self._links(file_id, links)
            if deletes:
                self._deletes(file_id, deletes, removed)
            if removed or added:
                conn.executemany(
                    "INSERT OR IGNORE INTO lexical_pending VALUES (?)",
                    [(p,) for p in removed] + [(r[0],) for r in added],
                )
            conn.execute("UPDATE files SET done_upto=?, records=records+? WHERE id=?", (upto, seen, file_id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        # After the SQLite commit: a failed transaction must not leave changes queued in the lexical writer.
        if removed:
            self.lex.delete(removed)
        if added:
            self.lex.add((r[0], r[2], r[4], r[5], r[6], r[7]) for r in added)
        self.uncommitted += len(removed) + len(added)
        if self.uncommitted >= _LEXICAL_COMMIT_EVERY:
            self.sync()

    def sync(self) -> None:
        """Commit the lexical index, then forget the PMIDs it now reflects."""
        self.lex.commit()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("DELETE FROM lexical_pending")
        self.conn.execute("COMMIT")
        self.uncommitted = 0

    def replay(self, bar: _Progress | None = None) -> int:
        """Bring the lexical index up to the record store for every pending PMID (after a kill)."""
        total = self.conn.execute("SELECT count(*) FROM lexical_pending").fetchone()[0]
        if not total:
            return 0
        last, done = 0, 0
        while True:
            chunk = [
                r[0]
                for r in self.conn.execute(
                    "SELECT pmid FROM lexical_pending WHERE pmid > ? ORDER BY pmid LIMIT 5000", (last,)
                )
            ]
            if not chunk:
                break
            last = chunk[-1]
            self.lex.delete(chunk)
            q = f"SELECT pmid, year, body FROM docs WHERE pmid IN ({','.join('?' * len(chunk))})"
            unpack = self.codec.unpack
            self.lex.add((pmid, year, *unpack(body)[:4]) for pmid, year, body in self.conn.execute(q, chunk).fetchall())
            done += len(chunk)
            if bar is not None:
                bar.update(0, done, 0)
        self.sync()
        self.changed = True
        return total

    def _existing(self, pmids: list[int]) -> dict[int, int]:
        """PMID -> seq of the stored version, for the PMIDs stored."""
        found: dict[int, int] = {}
        for i in range(0, len(pmids), 900):
            chunk = pmids[i : i + 900]
            q = f"SELECT pmid, seq FROM docs WHERE pmid IN ({','.join('?' * len(chunk))})"
            found.update(self.conn.execute(q, chunk).fetchall())
        return found

    def _rows(self, rows: list[tuple[Any, ...]], removed: list[int]) -> list[tuple[Any, ...]]:
        s = self.summary
        existing = self._existing([r[0] for r in rows])
        fresh: dict[int, tuple[Any, ...]] = {}
        for row in rows:
            pmid, seq = row[0], row[1]
            tomb = self.tombstones.get(pmid)
            if tomb is not None and tomb > seq:
                s.skipped["deleted by a later file"] += 1
                continue
            if pmid in fresh:
                # Update files can list a PMID twice; the later record is the newer revision.
                s.skipped["duplicate PMID"] += 1
                fresh[pmid] = row
                continue
            old_seq = existing.get(pmid)
            if old_seq is not None:
                if old_seq > seq:
                    s.skipped["superseded by a later file"] += 1
                    continue
                removed.append(pmid)
                if old_seq == seq:
                    s.skipped["duplicate PMID"] += 1
                else:
                    s.replaced += 1
            else:
                s.added += 1
            fresh[pmid] = row
        if fresh:
            # INSERT OR REPLACE: one statement whether or not the PMID was stored.
            self.conn.executemany(
                "INSERT OR REPLACE INTO docs (pmid, seq, year, body) VALUES (?,?,?,?)", [r[:4] for r in fresh.values()]
            )
            self.changed = True
        return list(fresh.values())

    def _links(self, seq: int, links: list[tuple[int, list[tuple[str, int, str]]]]) -> None:
        """Each record's links replace those of its earlier version (a later file's win, as in docs).

        A version without links that replaces one with links leaves a marker row (``ref_type`` '')
        so an earlier version arriving afterwards from a parallel worker is still refused; so is one
        whose record a later file already stored in ``docs``. One case stays open: a version without
        links and without an abstract applied *before* an earlier one with links leaves nothing to
        compare with, so the earlier links are kept (a marker row for every such record would cost a
        row per citation for that rare case)."""
        stored: dict[int, int] = {}
        pmids = list({p for p, _ in links})
        for i in range(0, len(pmids), 900):
            chunk = pmids[i : i + 900]
            q = f"SELECT pmid, max(seq) FROM corrections WHERE pmid IN ({','.join('?' * len(chunk))}) GROUP BY pmid"
            stored.update(self.conn.execute(q, chunk).fetchall())
        docs = self._existing([p for p, items in links if items and p not in stored])
        batch: dict[int, list[tuple[int, int, str, int, str]]] = {}
        for pmid, items in links:
            tomb = self.tombstones.get(pmid)
            if tomb is not None and tomb > seq:
                continue
            old = stored.get(pmid)
            if (old is not None and old > seq) or docs.get(pmid, seq) > seq:
                continue
            if old is not None and pmid not in batch:
                self.conn.execute("DELETE FROM corrections WHERE pmid=?", (pmid,))
            if items:
                batch[pmid] = [(pmid, seq, t, other, src) for t, other, src in items]
            elif old is not None:
                batch[pmid] = [(pmid, seq, "", 0, "")]
            else:
                continue
            stored[pmid] = seq
        if batch:
            self.conn.executemany(
                "INSERT INTO corrections VALUES (?,?,?,?,?)", [r for rs in batch.values() for r in rs]
            )

    def _deletes(self, file_id: int, pmids: list[int], removed: list[int]) -> None:
        self.conn.executemany("DELETE FROM corrections WHERE pmid=? AND seq<=?", [(p, file_id) for p in pmids])
        existing = self._existing(pmids)
        for pmid in pmids:
            old_seq = existing.pop(pmid, None)
            if old_seq is not None and old_seq <= file_id:
                self.conn.execute("DELETE FROM docs WHERE pmid=?", (pmid,))
                removed.append(pmid)
                self.summary.deleted += 1
                self.changed = True
            if self.tombstones.get(pmid, -1) < file_id:
                self.tombstones[pmid] = file_id
                self.conn.execute("INSERT OR REPLACE INTO deleted VALUES (?, ?)", (pmid, file_id))


# ----------------------------------------------------------------------------------------- build


class _Progress:
    """A byte-driven progress bar on stderr (rate, ETA, citations/s); silent when disabled."""

    def __init__(self, enabled: bool, total_bytes: int, label: str = "indexing") -> None:
        self.progress: Any = None
        self.start = time.perf_counter()
        self.done_bytes: dict[int, int] = {}
        if enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn(label), BarColumn(), DownloadColumn(), TextColumn("{task.fields[citations]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(stderr=True), refresh_per_second=4, transient=False,
            )  # fmt: skip
            self.task = self.progress.add_task(label, total=total_bytes, citations="0 citations")
            self.progress.start()

    def update(self, file_id: int, nbytes: int, citations: int) -> None:
        if self.progress is None:
            return
        self.done_bytes[file_id] = nbytes
        rate = citations / max(time.perf_counter() - self.start, 1e-6)
        self.progress.update(
            self.task, completed=sum(self.done_bytes.values()), citations=f"{citations:,} citations, {rate:,.0f}/s"
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _mp_context() -> Any:
    # fork starts workers in milliseconds, but forking a process that runs other threads can
    # deadlock in the child; fall back to spawn there.
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("spawn")


@writes_corpus("index build", "out", make_folder=True)
def build_index(
    paths: Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    progress: bool = True,
    *,
    workers: int | None = None,
    batch_size: int = _BATCH,
    optimize: bool = True,
) -> BuildSummary:
    """Ingest PubMed XML (``.xml``/``.xml.gz``) and JSON Lines files into the corpus at ``out``.

    Files already ingested (same name, size and mtime) are skipped; a file an interrupted run left
    half-done resumes after its last committed batch, and lexical index changes the interrupted
    run had not committed are replayed first. Bad records and bad files are skipped and counted in
    the summary, never fatal. ``workers``: parser processes (default: one per CPU, at most one per
    file; 0 parses in this process). From a program that runs other threads the workers are
    spawned rather than forked, which needs the usual ``if __name__ == "__main__"`` guard in the
    calling script. ``optimize``: wait for the lexical index's segment merges before returning.
    """
    started = time.perf_counter()
    files = input_files(paths)
    out_path = Path(out)
    summary = BuildSummary(files=len(files))
    conn, fresh = _create_or_open_for_write(out_path)
    lex: LexicalWriter | None = None
    try:
        lex = _open_lexical(conn, out_path, fresh)
        writer = _Writer(conn, lex, summary)
        writer.replay()
        jobs = _register_files(conn, files, summary)
        total_bytes = sum(size for _, _, _, size in jobs)
        bar = _Progress(progress and bool(jobs), total_bytes)
        try:
            if workers is None:
                workers = min(len(jobs), os.cpu_count() or 1)
            if workers <= 0 or not jobs:
                _run_inline(jobs, writer, summary, bar, batch_size)
            else:
                _run_workers(jobs, writer, summary, bar, batch_size, workers)
        finally:
            bar.close()
        if writer.uncommitted:
            writer.sync()
        if writer.changed:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            conn.execute("COMMIT")
        summary.articles = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('articles', ?)", (str(summary.articles),))
        # A finished corpus is one self-contained file (no -wal/-shm), readable from read-only media.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.DatabaseError as exc:
        raise CorpusError(f"cannot write corpus {out_path}: {one_line(exc)}") from None
    finally:
        conn.close()
        if lex is not None:
            if optimize:
                lex.close()
            else:
                del lex
    summary.seconds = time.perf_counter() - started
    return summary


def _register_files(
    conn: sqlite3.Connection, files: list[Path], summary: BuildSummary
) -> list[tuple[int, str, int, int]]:
    """(file id, path, items already applied, size) for every file still to ingest."""
    jobs = []
    seen: set[tuple[str, int, int]] = set()
    for f in files:
        st = f.stat()
        key = (f.name, st.st_size, st.st_mtime_ns)
        if key in seen:  # the same file named twice on one command line
            continue
        seen.add(key)
        row = conn.execute(
            "SELECT id, done_upto, complete FROM files WHERE name=? AND size=? AND mtime_ns=?", key
        ).fetchone()
        if row is None:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                "INSERT INTO files (name, size, mtime_ns, added) VALUES (?, ?, ?, ?)", (*key, time.time())
            )
            conn.execute("COMMIT")
            jobs.append((int(cur.lastrowid or 0), str(f), 0, st.st_size))
        elif row[2]:
            summary.files_already_indexed += 1
        else:
            jobs.append((row[0], str(f), row[1], st.st_size))
    return jobs


def _finish_file(conn: sqlite3.Connection, file_id: int, error: str | None, summary: BuildSummary) -> None:
    # A file that failed part-way is marked complete too: re-reading it would fail at the same
    # place. Replacing the file (new size or mtime) makes it a new input.
    conn.execute("UPDATE files SET complete=1, error=? WHERE id=?", (error, file_id))
    summary.files_ingested += 1
    if error:
        name = conn.execute("SELECT name FROM files WHERE id=?", (file_id,)).fetchone()[0]
        summary.files_failed.append((name, error))


def _handle(msg: tuple[Any, ...], writer: _Writer, summary: BuildSummary, bar: _Progress) -> int | None:
    """Apply one worker message; returns the file id when that file is finished."""
    if msg[0] == "batch":
        _, file_id, upto, rows, deletes, skipped, seen, nbytes, links = msg
        writer.apply(file_id, upto, rows, deletes, skipped, seen, links)
        bar.update(file_id, nbytes, summary.citations_read)
        return None
    _, file_id, error, nbytes = msg
    _finish_file(writer.conn, file_id, error, summary)
    bar.update(file_id, nbytes, summary.citations_read)
    return file_id


class _ListQueue:
    """The worker's ``out`` when parsing in this process: messages are applied at once."""

    def __init__(self, writer: _Writer, summary: BuildSummary, bar: _Progress) -> None:
        self.args = (writer, summary, bar)

    def put(self, msg: tuple[Any, ...]) -> None:
        _handle(msg, *self.args)


def _run_inline(
    jobs: list[tuple[int, str, int, int]], writer: _Writer, summary: BuildSummary, bar: _Progress, batch_size: int
) -> None:
    q = _ListQueue(writer, summary, bar)
    for file_id, path, skip, _ in jobs:
        _parse_file(path, file_id, skip, q, batch_size, writer.codec.dict_bytes)


def _run_workers(
    jobs: list[tuple[int, str, int, int]],
    writer: _Writer,
    summary: BuildSummary,
    bar: _Progress,
    batch_size: int,
    workers: int,
) -> None:
    ctx = _mp_context()
    # Bounded: a fast parser waits for the writer instead of piling batches up in memory.
    results = ctx.Queue(maxsize=4 * workers)
    pending = list(jobs)
    running: dict[int, Any] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                file_id, path, skip, _ = pending.pop(0)
                proc = ctx.Process(
                    target=_parse_file,
                    args=(path, file_id, skip, results, batch_size, writer.codec.dict_bytes),
                    daemon=True,
                )
                proc.start()
                running[file_id] = proc
            try:
                msg = results.get(timeout=1.0)
            except queue_mod.Empty:
                for file_id, proc in list(running.items()):
                    if not proc.is_alive() and results.empty():
                        # Died without saying "done" (killed, out of memory): record it, move on.
                        # Left incomplete, so the next run retries it from its last batch.
                        name = Path(next(j[1] for j in jobs if j[0] == file_id)).name
                        summary.files_failed.append((name, f"{name}: parser process died (exit code {proc.exitcode})"))
                        del running[file_id]
                continue
            done = _handle(msg, writer, summary, bar)
            if done is not None:
                running.pop(done).join()
    finally:
        for proc in running.values():
            proc.kill()
            proc.join()
        results.close()
