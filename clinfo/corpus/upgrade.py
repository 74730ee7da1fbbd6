"""``clinfo index upgrade``: bring a corpus of an older schema to ``SCHEMA_VERSION`` in place.

* v1 -> v2 (the FTS5 table gives way to the Tantivy lexical index): one SQLite transaction drops
  the FTS5 table and queues every PMID in ``lexical_pending``; the lexical index is then built
  from the records (the usual replay, resumable).
* v2 -> v3 (texts compressed into one ``body`` per record): the records are copied, compressed,
  into a new file beside the corpus (``corpus.db.upgrading``), committed every ``_CHUNK`` rows,
  and the new file replaces the old one by one ``rename`` when complete. A kill leaves the v2
  corpus untouched (still readable by the clinfo that built it) and the partial copy, which the
  next run continues from its last committed row. The copy is tied to the source by size, mtime
  and generation, so a source changed in between starts it afresh. The lexical index and
  vectors are keyed by PMID and unchanged records, so they stay as they are.

Disk: the copy needs ~0.4x the v2 file while both exist.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from clinfo.corpus.lexical import ANALYZER, lexical_dir
from clinfo.corpus.store import PLAIN_COLS, SCHEMA_VERSION, codec_for, create_tables, meta_items, meta_value
from clinfo.corpus.writelock import writes_corpus
from clinfo.corpus.writer import BuildProgress, BuildSummary, RecordWriter, open_lexical, tune_for_writing
from clinfo.errors import CorpusError, one_line

__all__ = ["upgrade_corpus"]

_CHUNK = 20_000  # rows per committed transaction of the v2 -> v3 copy


def _version(p: Path) -> str:
    if not p.is_file():
        raise CorpusError(f"no corpus at {p}")
    try:
        conn = sqlite3.connect(p, isolation_level=None, timeout=60)
        try:
            version = meta_value(conn, "schema_version")
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CorpusError(f"{p} is not a readable clinfo corpus ({one_line(exc)})") from None
    if version is None:
        raise CorpusError(f"{p} is not a clinfo corpus (no schema version)")
    if version not in ("1", "2", str(SCHEMA_VERSION)):
        raise CorpusError(f"{p} has corpus schema v{version}; this clinfo upgrades v1 and v2 to v{SCHEMA_VERSION}")
    return version


@writes_corpus("index upgrade", "path")
def upgrade_corpus(path: str | os.PathLike[str], progress: bool = True) -> int:
    """Upgrade the corpus at ``path`` to the current schema; returns the articles its lexical index
    holds. Safe to re-run after a kill; a current corpus only gets pending lexical changes replayed."""
    p = Path(path)
    version = _version(p)
    try:
        if version == "1":
            _v1_to_v2(p)
            version = "2"
        if version == "2":
            _v2_to_v3(p, progress)
        return _replay_lexical(p, progress)
    except sqlite3.DatabaseError as exc:
        raise CorpusError(f"cannot upgrade corpus {p}: {one_line(exc)}") from None


def _v1_to_v2(p: Path) -> None:
    conn = sqlite3.connect(p, isolation_level=None, timeout=60)
    try:
        # One transaction: a kill leaves the v1 corpus as it was.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TABLE IF EXISTS fts")
        conn.execute("DROP INDEX IF EXISTS docs_year")
        conn.execute("CREATE TABLE IF NOT EXISTS deleted (pmid INTEGER PRIMARY KEY, seq INTEGER NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS lexical_pending (pmid INTEGER PRIMARY KEY)")
        conn.execute("INSERT OR IGNORE INTO lexical_pending SELECT pmid FROM docs")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('analyzer', ?)", (ANALYZER,))
        conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
        conn.execute("COMMIT")
    finally:
        conn.close()
    shutil.rmtree(lexical_dir(p), ignore_errors=True)  # rebuilt from every record by the replay


def _identity(p: Path, src: sqlite3.Connection) -> str:
    st = p.stat()
    generation = meta_value(src, "generation")
    return f"{st.st_size}:{st.st_mtime_ns}:{generation if generation is not None else ''}"


def _open_copy(tmp: Path, identity: str) -> sqlite3.Connection | None:
    """The partial copy of an earlier run, if it was made from this very source."""
    if not tmp.is_file():
        return None
    try:
        conn = sqlite3.connect(tmp, isolation_level=None, timeout=60)
        if meta_value(conn, "upgrading_from") == identity:
            return conn
        conn.close()
    except sqlite3.DatabaseError:
        pass
    return None


def _v2_to_v3(p: Path, progress: bool) -> None:
    tmp = p.with_name(p.name + ".upgrading")
    # A build killed in WAL mode leaves a -wal file beside the corpus; folded in now, it cannot
    # outlive the rename and be replayed onto the new file.
    conn = sqlite3.connect(p, isolation_level=None, timeout=60)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    src = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        identity = _identity(p, src)
        total = src.execute("SELECT count(*) FROM docs").fetchone()[0]
        dst = _open_copy(tmp, identity)
        if dst is None:
            for f in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
                f.unlink(missing_ok=True)
            dst = sqlite3.connect(tmp, isolation_level=None, timeout=60)
            dst.execute("PRAGMA page_size=8192")
            tune_for_writing(dst)
            # Everything but the records, in the first transaction: a copy holding any row also
            # holds the ledger, deletions and pending lexical changes of its source.
            dst.execute("BEGIN")
            create_tables(dst)
            meta = [(k, v) for k, v in meta_items(src).items() if k != "schema_version"]
            dst.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [*meta, ("schema_version", str(SCHEMA_VERSION)), ("upgrading_from", identity)],
            )
            cols = "id, name, size, mtime_ns, done_upto, complete, error, records, added"
            dst.executemany(
                f"INSERT INTO files ({cols}) VALUES (?,?,?,?,?,?,?,?,?)", src.execute(f"SELECT {cols} FROM files")
            )
            dst.executemany("INSERT INTO deleted VALUES (?, ?)", src.execute("SELECT pmid, seq FROM deleted"))
            dst.executemany("INSERT INTO lexical_pending VALUES (?)", src.execute("SELECT pmid FROM lexical_pending"))
            dst.execute("COMMIT")
        else:
            tune_for_writing(dst)
        codec = codec_for(bytes(dst.execute("SELECT dict FROM codec WHERE id=1").fetchone()[0]))
        last = dst.execute("SELECT coalesce(max(pmid), 0) FROM docs").fetchone()[0]
        done = dst.execute("SELECT count(*) FROM docs").fetchone()[0]
        bar = BuildProgress(progress and total > done, total, label="compressing records")
        try:
            while True:
                rows = src.execute(
                    f"SELECT {PLAIN_COLS} FROM docs WHERE pmid > ? ORDER BY pmid LIMIT ?", (last, _CHUNK)
                ).fetchall()
                if not rows:
                    break
                dst.execute("BEGIN")
                dst.executemany(
                    "INSERT INTO docs (pmid, seq, year, body) VALUES (?,?,?,?)", [codec.row(r) for r in rows]
                )
                dst.execute("COMMIT")
                last, done = rows[-1][0], done + len(rows)
                bar.update(0, done, done)
        finally:
            bar.close()
        dst.execute("DELETE FROM meta WHERE key='upgrading_from'")
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.close()
    finally:
        src.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())  # the new file is whole on disk before it takes the corpus's name
    os.replace(tmp, p)
    dir_fd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _replay_lexical(p: Path, progress: bool) -> int:
    """Build the lexical index where missing, replay pending changes; returns the articles it holds."""
    conn = sqlite3.connect(p, isolation_level=None, timeout=60)
    try:
        tune_for_writing(conn)
        lex = open_lexical(conn, p, fresh=False)
        writer = RecordWriter(conn, lex, BuildSummary())
        total = conn.execute("SELECT count(*) FROM lexical_pending").fetchone()[0]
        bar = BuildProgress(progress and total > 0, total, label="indexing")
        try:
            writer.replay(bar)
        finally:
            bar.close()
        lex.close()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
        return int(conn.execute("SELECT count(*) FROM docs").fetchone()[0])
    finally:
        conn.close()
