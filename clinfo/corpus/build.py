"""Building a corpus: PubMed XML or JSON Lines files (``clinfo.corpus.inputs``) into the record
store (``clinfo.corpus.store``) and the lexical index beside it (``clinfo.corpus.lexical``), through
the single writer (``clinfo.corpus.writer``).

Every input file gets a sequence number in the order given (across runs, later runs are later).
A record replaces the stored one only if it comes from a later file, and a deletion only removes a
record from the same or an earlier file. Applying a record is therefore independent of the order
in which parallel workers deliver their batches, and "the later file wins" still holds.

Speed: parsing is the bottleneck (lxml on long reference lists), so each file is parsed in its own
worker process while this process is the single SQLite writer, committing one transaction per
batch. A killed build resumes: the ``files`` table says how far each file was applied, and the
lexical index changes it had not committed are replayed first (``clinfo.corpus.writer``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import sqlite3
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clinfo.corpus.inputs import CountingReader, input_files, read_items
from clinfo.corpus.lexical import LexicalWriter
from clinfo.corpus.store import article_to_row, codec_for, link_rows
from clinfo.corpus.writelock import writes_corpus
from clinfo.corpus.writer import BuildProgress, BuildSummary, RecordWriter, open_for_write, open_lexical
from clinfo.errors import CorpusError, MalformedResponse, one_line
from clinfo.models import Article

__all__ = ["build_index"]

# ------------------------------------------------------------------------------------ the worker

_BATCH = 2000


def _parse_file(path: str, file_id: int, skip: int, out: Any, batch_size: int, codec_dict: bytes) -> None:
    """Parse one file and put batches on ``out``; always ends with a ("done", ...) message.

    Rows are ``(pmid, seq, year, body, title, abstract, mesh, pubtype)``: the docs row, then the
    texts the lexical index needs, so compression runs here, in parallel, and the single writer
    neither compresses nor decompresses. ``links`` has ``(pmid, [(ref_type, other_pmid, source)])``
    for every record read, abstract or not (the ``corrections`` table)."""
    reader: CountingReader | None = None
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
        reader = CountingReader(open(p, "rb"), p.name)
        for item in read_items(p, reader):
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


# ----------------------------------------------------------------------------------------- build


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
    conn, fresh = open_for_write(out_path)
    lex: LexicalWriter | None = None
    try:
        lex = open_lexical(conn, out_path, fresh)
        writer = RecordWriter(conn, lex, summary)
        writer.replay()
        jobs = _register_files(conn, files, summary)
        total_bytes = sum(size for _, _, _, size in jobs)
        bar = BuildProgress(progress and bool(jobs), total_bytes)
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


def _handle(msg: tuple[Any, ...], writer: RecordWriter, summary: BuildSummary, bar: BuildProgress) -> int | None:
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

    def __init__(self, writer: RecordWriter, summary: BuildSummary, bar: BuildProgress) -> None:
        self.args = (writer, summary, bar)

    def put(self, msg: tuple[Any, ...]) -> None:
        _handle(msg, *self.args)


def _run_inline(
    jobs: list[tuple[int, str, int, int]],
    writer: RecordWriter,
    summary: BuildSummary,
    bar: BuildProgress,
    batch_size: int,
) -> None:
    q = _ListQueue(writer, summary, bar)
    for file_id, path, skip, _ in jobs:
        _parse_file(path, file_id, skip, q, batch_size, writer.codec.dict_bytes)


def _run_workers(
    jobs: list[tuple[int, str, int, int]],
    writer: RecordWriter,
    summary: BuildSummary,
    bar: BuildProgress,
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
