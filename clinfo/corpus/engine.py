"""One open corpus per process, shared by every source, session and question.

Opening a corpus costs what a question should not pay again: SQLite connections and their page
caches, Tantivy's readers, and for dense search the FAISS index, which is read into memory whole
(FAISS cannot memory-map 4-bit fast-scan lists: 62 MB at 1M vectors, ~2 GB for all of PubMed).
Before this module every question opened its own, so N concurrent questions held N copies.
:func:`open_engine` keeps one :class:`CorpusEngine` per corpus file per process; every
``LocalSource`` (the app and the pipeline make one per question) borrows it, and closing a source
leaves the engine open. The float16 vector rows stay memory-mapped (page cache, shared with every
process that maps them); the question encoder is loaded once per process by
``clinfo.corpus.encoders``.

An engine is reopened when the corpus changes on disk: each borrow compares a signature of the
files a search reads (the record store, the lexical index's ``meta.json``, each vector
set's manifest, ``index.json`` and row files: inode, size, times) with the one it was opened at,
a few ``stat`` calls. Sources that hold the old engine keep using it; it is freed with its last
user. Opening failures are not kept: the next borrow tries again.

Threads: a SQLite connection must not be used by two threads at once, so records come from a
pool: a call takes a connection, uses it and gives it back; one that failed is closed, not
given back, and the pool is emptied whenever no call is running (an idle reader would keep a
build from finishing). The Tantivy index takes a searcher per query, FAISS search and the memory-mapped
rows are read-only, and ONNX Runtime sessions may run concurrently: all of those are shared.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.corpus.hybrid import ModeChoice, choose_mode
from clinfo.corpus.lexical import LexicalIndex, lexical_dir
from clinfo.corpus.store import RecordStore
from clinfo.errors import ClinfoError

if TYPE_CHECKING:
    from clinfo.corpus.dense import DenseIndex

__all__ = ["CorpusEngine", "open_engine", "signature", "forget_engines"]

Signature = tuple[Any, ...]
# Engines kept open at once; an older one is dropped from the table (and freed once no source
# holds it). A process serves one or two corpora; tests open many small ones.
MAX_ENGINES = 8
_VECTOR_FILES = ("manifest.sqlite", "index.json", "vectors.f16", "vectors.f32", "pmids.i64")


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def signature(db_path: Path) -> Signature:
    """What changes whenever a file that searches read changes (replaced, written, appended to)."""
    # Not the SQLite -wal files: readers create and remove them; a writer's last close folds them in.
    parts: list[Any] = [_stat(db_path), _stat(lexical_dir(db_path) / "meta.json")]
    root = Path(f"{db_path}.dense")
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        folders = []
    for folder in folders:
        parts.append((folder.name, *(_stat(folder / name) for name in _VECTOR_FILES)))
    return tuple(parts)


class CorpusEngine:
    """The open parts of one corpus: a pool of record-store connections, the lexical index, and
    the dense indexes (with the search-mode choice) each search mode asked for."""

    def __init__(self, path: Path, sig: Signature | None = None) -> None:
        self.path = path
        self.signature = sig if sig is not None else signature(path)
        self._pool: list[RecordStore] = []
        self._pool_lock = threading.Lock()
        self._active = 0  # calls holding a connection now
        self._closed = False
        # (mode, model, query_model, fusion) -> the choice, or the error to raise again
        self._choices: dict[tuple[str, str | None, str | None, str], ModeChoice | ClinfoError] = {}
        self._dense: dict[tuple[str | None, str | None], DenseIndex] = {}
        self._choice_lock = threading.Lock()
        with self.records() as store:  # a missing, foreign or older corpus fails here, once
            pending = store.pending()
            analyzer = store.meta("analyzer") or ""
            links = store.corrections_state
        self.warnings: list[str] = []
        if pending:
            self.warnings.append(
                f"the lexical index lacks {pending:,} recent changes (an interrupted build); "
                f"re-run 'clinfo index build' with the same files to finish it"
            )
        if links != "complete":
            self.warnings.append(
                "this corpus was built before clinfo kept NLM's retraction and correction links"
                + (" for all its files" if links == "partial" else "")
                + ": retracted records are recognised by their own publication type only, not by retraction"
                " notices, errata or expressions of concern; rebuild it ('clinfo index build' into a new file)"
            )
        self.lexical = LexicalIndex(path, analyzer)

    @contextmanager
    def records(self) -> Iterator[RecordStore]:
        """A record-store connection for this thread's call; given back to the pool afterwards."""
        with self._pool_lock:
            store = self._pool.pop() if self._pool else None
            self._active += 1
        try:
            if store is None:
                store = RecordStore.open(self.path)
            yield store
        except BaseException:
            if store is not None:
                store.close()  # it may be broken (a closed or corrupt connection): not handed out again
            self._give_back(None)
            raise
        self._give_back(store)

    def _give_back(self, store: RecordStore | None) -> None:
        # Idle connections are closed once no call is running: an open reader, even idle, keeps a
        # build from switching the corpus out of WAL mode at its end ("database is locked").
        with self._pool_lock:
            self._active -= 1
            if store is not None:
                self._pool.append(store)
            idle = self._pool if self._active == 0 or self._closed else []
            if idle:
                self._pool = []
        for held in idle:
            held.close()

    def choose(self, mode: str, model: str | None, query_model: str | None, fusion: str) -> ModeChoice:
        """``clinfo.corpus.hybrid.choose_mode`` for this corpus, made once per engine: the dense
        index and the encoder load once, whichever sources ask, and a failure is raised again."""
        key = (mode, model, query_model, fusion)
        with self._choice_lock:  # questions arriving together load the dense index once
            got = self._choices.get(key)
            if got is None:
                try:
                    got = choose_mode(
                        mode, self.path, model=model, query_model=query_model, fusion=fusion,
                        open_dense=lambda: self._dense_index(model, query_model),
                    )  # fmt: skip
                except ClinfoError as exc:
                    got = exc
                self._choices[key] = got
        if isinstance(got, ClinfoError):
            raise type(got)(str(got))  # a new exception: re-raising one object grows its traceback
        return got

    def _dense_index(self, model: str | None, query_model: str | None) -> DenseIndex:
        from clinfo.corpus.dense import DenseIndex

        key = (model, query_model)
        if key not in self._dense:
            self._dense[key] = DenseIndex.open(self.path, model, query_model=query_model)
        return self._dense[key]

    @property
    def size(self) -> int:
        with self.records() as store:
            return store.size

    def close(self) -> None:
        """Close the pooled connections (an engine a source owns alone; shared ones are never closed)."""
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, []
        for store in pool:
            store.close()


_ENGINES: OrderedDict[Path, CorpusEngine] = OrderedDict()
_OPENING: dict[Path, threading.Lock] = {}
_LOCK = threading.Lock()


def open_engine(path: str | os.PathLike[str]) -> CorpusEngine:
    """The process's engine for the corpus at ``path``: the open one if the files are unchanged
    since it was opened, else a new one (``CorpusError`` when the corpus cannot be opened)."""
    key = Path(os.path.realpath(path))
    with _LOCK:
        lock = _OPENING.setdefault(key, threading.Lock())
    with lock:  # two sources of one corpus arriving together open it once
        sig = signature(key)
        with _LOCK:
            engine = _ENGINES.get(key)
            if engine is not None and engine.signature == sig:
                _ENGINES.move_to_end(key)
                return engine
        engine = CorpusEngine(key, sig)
        with _LOCK:
            _ENGINES[key] = engine
            _ENGINES.move_to_end(key)
            while len(_ENGINES) > MAX_ENGINES:
                _ENGINES.popitem(last=False)
        return engine


def forget_engines() -> None:
    """Drop every shared engine (the next borrow opens afresh); sources holding one keep it."""
    with _LOCK:
        _ENGINES.clear()
