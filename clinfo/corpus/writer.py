"""Writing a corpus: the single writer that ``clinfo index build`` and ``clinfo index upgrade`` share.

One process writes (``RecordWriter``), committing one SQLite transaction per batch.
``synchronous=OFF`` with WAL (``tune_for_writing``) is safe against a killed process (the WAL is
replayed or discarded on the next open); only an OS crash could lose the last commits, and the
``files`` table would then re-ingest them.

The record store and the lexical index never disagree after a finished build: each SQLite batch
records the PMIDs it changed in ``lexical_pending``; the lexical index commits every
``_LEXICAL_COMMIT_EVERY`` changes and at the end, and only then is ``lexical_pending`` emptied. A
killed build leaves the lexical index at its last commit (consistent in itself) and the PMIDs to
redo; the next build (or ``clinfo index upgrade``) replays them from the stored records
(``RecordWriter.replay``) before ingesting anything else.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinfo.corpus.lexical import ANALYZER, LexicalWriter, lexical_dir
from clinfo.corpus.store import (
    CORRECTIONS_DDL,
    SCHEMA_VERSION,
    check_schema,
    corpus_codec,
    create_tables,
    has_corrections_table,
    meta_value,
)
from clinfo.errors import CorpusError, one_line

__all__ = [
    "BuildProgress",
    "BuildSummary",
    "RecordWriter",
    "open_for_write",
    "open_lexical",
    "tune_for_writing",
]


@dataclass
class BuildSummary:
    """What a build read and changed; ``line()`` says it in one line."""

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


class BuildProgress:
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


# ----------------------------------------------------------------------------------- opening


def open_for_write(out: Path) -> tuple[sqlite3.Connection, bool]:
    """A connection to write the corpus at ``out``, created if missing, tuned for writing; and
    whether the corpus is new. ``CorpusError`` when ``out`` is not a current clinfo corpus."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = not out.exists() or out.stat().st_size == 0
    try:
        conn = sqlite3.connect(out, isolation_level=None, timeout=60)
        if fresh:
            conn.execute("PRAGMA page_size=8192")
            conn.execute("BEGIN")
            create_tables(conn)
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT INTO meta VALUES ('generation', '0')")
            conn.execute("INSERT INTO meta VALUES ('analyzer', ?)", (ANALYZER,))
            # every file's CommentsCorrections links are kept (RecordStore.corrections_state)
            conn.execute("INSERT INTO meta VALUES ('corrections', '1')")
            conn.execute("COMMIT")
        else:
            check_schema(conn, out)
            _add_corrections_table(conn)
    except sqlite3.DatabaseError as exc:
        raise CorpusError(f"{out} exists and is not a clinfo corpus ({one_line(exc)})") from None
    tune_for_writing(conn)
    return conn, fresh


def _add_corrections_table(conn: sqlite3.Connection) -> None:
    """A corpus built before clinfo kept NLM's links gets the table for the files still to come;
    the files it ingested before keep none (meta has no 'corrections' key, readers say so)."""
    if has_corrections_table(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    for ddl in CORRECTIONS_DDL:
        conn.execute(ddl)
    # a corpus with no file ingested yet misses nothing
    if conn.execute("SELECT count(*) FROM files").fetchone()[0] == 0:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('corrections', '1')")
    conn.execute("COMMIT")


def tune_for_writing(conn: sqlite3.Connection) -> None:
    """Pragmas for one writer committing many large transactions."""
    conn.execute("PRAGMA journal_mode=WAL")
    # Safe against a killed process with WAL (see module docstring); speeds batch commits up.
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB page cache while writing
    conn.execute("PRAGMA temp_store=MEMORY")


def open_lexical(conn: sqlite3.Connection, out: Path, fresh: bool) -> LexicalWriter:
    """The lexical index writer; a missing index is created and every article queued for it."""
    analyzer = meta_value(conn, "analyzer")
    if analyzer is None:
        analyzer = ANALYZER
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


class RecordWriter:
    """The single writer of a corpus: applies parsed batches to the record store, one transaction
    each, and keeps the lexical index in step (``lexical_pending``, see the module docstring)."""

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

    def replay(self, bar: BuildProgress | None = None) -> int:
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
