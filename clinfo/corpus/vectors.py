"""Dense vectors on disk beside a corpus: the vector set, read (``VectorStore``) and appended to
(``VectorWriter``); precomputed vectors come in through ``clinfo.corpus.vector_import``.

A vector set lives in ``corpus.db.dense/<model>/``:

* ``vectors.f16``: float16 rows, L2-normalised (scores are cosine similarities), appended.
  Sets written before float16 (no ``dtype`` in their manifest) hold float32 rows in
  ``vectors.f32`` and keep being read, and appended to, as float32;
* ``pmids.i64``: int64 PMIDs, row i of this file names row i of the vector file;
* ``manifest.sqlite``: the model (and query model), the dimension, the row dtype, the committed
  row count, and one row per chunk appended (an imported ``.npy``/JSON pair or a batch ``embed``
  encoded).

Why float16: 37M x 384 float32 rows are 57 GB (114 GB at 768-d), the largest part of a PubMed
corpus on disk; half of that costs nothing measurable in ranking (unit vectors' components
keep ~3 significant digits; cosines move by ~1e-4, benchmarks/dense_scale.py --fp16-check).
Rows are read as float16 and widened to float32 block by block where they are scored.

Appends are all-or-nothing per chunk: rows are written past the committed count and fsynced,
then the count rises in one SQLite transaction together with the chunk's row. A killed import
leaves bytes past the count, which readers never map and the next writer cuts off. Readers map
exactly the committed rows, so an import running beside a search is invisible to it until done.
A PMID may own several rows (re-embedded, imported twice under different chunks): the last wins.
Only numpy is needed here: vector sets are read and written without the ``[dense]`` extra.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.corpus.store import meta_items, meta_value
from clinfo.errors import CorpusError, one_line

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_DTYPE", "DTYPES", "VectorStore", "VectorWriter", "as_float32", "slug"]

FORMAT = 1
DTYPES = {"float16": "vectors.f16", "float32": "vectors.f32"}  # row dtype -> vector file
DEFAULT_DTYPE = "float16"  # of new sets; a set without ``dtype`` in its manifest is float32 (the first layout)
# Rows this close to unit length are stored as given: float16 cannot express a finer correction
# (a component keeps ~3 significant digits), and exported rows imported again keep their bytes.
_UNIT_TOLERANCE = 1e-3


def slug(model: str) -> str:
    """A folder name for a model name or path."""
    import re

    name = Path(model).name if Path(model).exists() else model
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


# ------------------------------------------------------------------------------------------ reading


class VectorStore:
    """The committed rows of one vector set, memory-mapped read-only."""

    def __init__(self, folder: Path, meta: dict[str, str]) -> None:
        self.folder = folder
        self.model = meta.get("model", "")
        self.query_model = meta.get("query_model") or None
        self.dim = int(meta.get("dim", 0))
        self.rows = int(meta.get("rows", 0))
        self.dtype = meta.get("dtype", "float32")
        self.generation = meta.get("generation")
        self._matrix: Any = None
        self._pmids: Any = None

    @staticmethod
    def exists(folder: Path) -> bool:
        return (folder / "manifest.sqlite").is_file()

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> VectorStore:
        folder = Path(folder)
        if not cls.exists(folder):
            raise CorpusError(f"no vector set at {folder}")
        try:
            conn = sqlite3.connect(f"{(folder / 'manifest.sqlite').resolve().as_uri()}?mode=ro", uri=True)
            try:
                meta = meta_items(conn)
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise CorpusError(f"vector set {folder} cannot be read: {one_line(exc)}") from None
        if str(meta.get("format")) != str(FORMAT):
            raise CorpusError(
                f"vector set {folder} has format {meta.get('format')!r}, this clinfo reads {FORMAT}; import it again"
            )
        if meta.get("dtype", "float32") not in DTYPES:
            raise CorpusError(
                f"vector set {folder} holds {meta['dtype']} rows; this clinfo reads {' or '.join(DTYPES)}"
            )
        return cls(folder, meta)

    @property
    def vector_file(self) -> Path:
        return self.folder / DTYPES[self.dtype]

    def matrix(self, random_access: bool = False) -> np.ndarray:
        """(rows, dim) in the stored dtype (float16, or float32 for old sets), memory-mapped: pages
        are read from disk as searches touch them. Score with ``as_float32`` (float16 has no BLAS).

        ``random_access`` advises the kernel that rows are read here and there (rescoring a few
        hundred candidates): no read-ahead, so a row read faults in its own page, not the 128 KiB
        around it, which kept a 3M-vector searcher's mapped RSS in the GB.
        """
        import numpy as np

        if self._matrix is None:
            if self.rows == 0:
                self._matrix = np.zeros((0, self.dim), dtype=self.dtype)
            else:
                self._matrix = self._map(self.vector_file, self.dtype, (self.rows, self.dim))
                if random_access:
                    advise_random(self._matrix)
        return self._matrix

    def pmids(self) -> np.ndarray:
        import numpy as np

        if self._pmids is None:
            if self.rows == 0:
                self._pmids = np.zeros(0, dtype=np.int64)
            else:
                self._pmids = self._map(self.folder / "pmids.i64", "int64", (self.rows,))
        return self._pmids

    def _map(self, path: Path, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        """``path`` memory-mapped as ``shape``; a missing file or one shorter than the committed rows
        (deleted, truncated, replaced) is a ``CorpusError`` in one line, not numpy's error."""
        import numpy as np

        try:
            return np.memmap(path, dtype=dtype, mode="r", shape=shape)
        except (OSError, ValueError) as exc:
            why = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be mapped ({one_line(exc)})"
            raise CorpusError(
                f"vector set {self.folder}: {path.name} {why}; its manifest counts {self.rows:,} rows;"
                " import the vectors again ('clinfo index import-vectors' or 'clinfo index embed')"
            ) from None

    def live_rows(self) -> np.ndarray:
        """Row numbers that hold the current vector of their PMID (the last row of each), ascending."""
        import numpy as np

        ids = np.asarray(self.pmids())
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        # unique() on the reversed array gives the first position from the end: the last row.
        _, first_from_end = np.unique(ids[::-1], return_index=True)
        return np.sort(len(ids) - 1 - first_from_end).astype(np.int64)

    def chunks(self) -> int:
        conn = sqlite3.connect(f"{(self.folder / 'manifest.sqlite').resolve().as_uri()}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        finally:
            conn.close()


def advise_random(matrix: Any) -> None:
    """Tell the kernel a memory-mapped matrix is read at random (no read-ahead); advice only."""
    import mmap

    m = getattr(matrix, "_mmap", None)  # numpy keeps the mmap.mmap object of a memmap here
    if m is not None and hasattr(mmap, "MADV_RANDOM"):
        try:
            m.madvise(mmap.MADV_RANDOM)
        except OSError:
            pass  # advice only


def as_float32(rows: Any) -> np.ndarray:
    """Rows of a vector set as a float32 array (a copy for float16, a view for float32 in memory)."""
    import numpy as np

    return np.asarray(rows, dtype=np.float32)


# ------------------------------------------------------------------------------------------ writing


class VectorWriter:
    """Appends chunks to a vector set; one writer per set at a time (an exclusive file lock)."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        model: str,
        dim: int,
        query_model: str | None = None,
        dtype: str | None = None,
    ) -> None:
        """``dtype`` (default ``DEFAULT_DTYPE``) applies to a new set; an existing one keeps its own."""
        dtype = dtype or DEFAULT_DTYPE
        if dtype not in DTYPES:
            raise CorpusError(f"vector dtype {dtype!r}: expected {' or '.join(DTYPES)}")
        self.folder = Path(folder)
        self.model = model
        self.dim = dim
        self.query_model = query_model
        self.dtype = dtype
        self._lock_fd: int | None = None
        self._conn: sqlite3.Connection | None = None

    def __enter__(self) -> VectorWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CorpusError(
                f"another clinfo process is writing the vector set {self.folder}; try again when it is done"
            ) from None
        self._lock_fd = fd
        try:
            self._open_manifest()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _open_manifest(self) -> None:
        conn = sqlite3.connect(self.folder / "manifest.sqlite", isolation_level=None, timeout=30)
        self._conn = conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS chunks (
                id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
                first_row INTEGER NOT NULL, rows INTEGER NOT NULL,
                not_in_corpus INTEGER NOT NULL, invalid INTEGER NOT NULL, added TEXT NOT NULL)"""
        )
        meta = meta_items(conn)
        if meta:
            if meta.get("model") != self.model:
                raise CorpusError(f"{self.folder} holds vectors of {meta.get('model')}, not {self.model}")
            if int(meta["dim"]) != self.dim:
                raise CorpusError(
                    f"vectors have {self.dim} dimensions, but {self.folder} holds {meta['dim']}-dimensional vectors"
                    f" of {self.model}"
                )
            if self.query_model and meta.get("query_model") not in (None, "", self.query_model):
                raise CorpusError(
                    f"{self.folder} was imported with query model {meta['query_model']}, not {self.query_model}"
                )
            self.dtype = meta.get("dtype", "float32")  # a set from before float16 stays float32
            if self.dtype not in DTYPES:
                raise CorpusError(
                    f"vector set {self.folder} holds {self.dtype} rows; this clinfo writes {' or '.join(DTYPES)}"
                )
        else:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("format", str(FORMAT)),
                    ("model", self.model),
                    ("dim", str(self.dim)),
                    ("dtype", self.dtype),
                    ("rows", "0"),
                ],
            )
            conn.execute("COMMIT")
        if self.query_model and not meta.get("query_model"):
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('query_model', ?)", (self.query_model,))

    @property
    def rows(self) -> int:
        assert self._conn is not None
        return int(meta_value(self._conn, "rows") or 0)

    def has_chunk(self, fingerprint: str) -> bool:
        assert self._conn is not None
        return self._conn.execute("SELECT 1 FROM chunks WHERE fingerprint=?", (fingerprint,)).fetchone() is not None

    def pmids(self) -> np.ndarray:
        """PMIDs of the committed rows (a copy: the files grow while writing)."""
        import numpy as np

        n = self.rows
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return np.fromfile(self.folder / "pmids.i64", dtype=np.int64, count=n)

    def append(
        self,
        blocks: Iterator[tuple[np.ndarray, np.ndarray]],
        *,
        fingerprint: str,
        source: str,
        not_in_corpus: int = 0,
        generation: str | None = None,
    ) -> tuple[int, int]:
        """Write ``(pmids, vectors)`` blocks as one chunk; (rows written, invalid rows dropped).

        Vectors are L2-normalised here (to within ``_UNIT_TOLERANCE``); rows with NaN, infinity or zero length are
        dropped and counted, since one such row would poison every search that touches it.
        """
        import numpy as np

        assert self._conn is not None
        start = self.rows
        written = invalid = 0
        out_type = np.dtype(self.dtype)
        vec_path, ids_path = self.folder / DTYPES[self.dtype], self.folder / "pmids.i64"
        with open(vec_path, "a+b") as vf, open(ids_path, "a+b") as pf:
            # Bytes past the committed count are a killed writer's leftovers.
            vf.truncate(start * self.dim * out_type.itemsize)
            pf.truncate(start * 8)
            vf.seek(0, os.SEEK_END)
            pf.seek(0, os.SEEK_END)
            for ids, vecs in blocks:
                vecs = np.asarray(vecs, dtype=np.float32)
                if vecs.ndim != 2 or vecs.shape[1] != self.dim:
                    raise CorpusError(f"{source}: vectors have shape {vecs.shape}, expected (n, {self.dim})")
                norms = np.linalg.norm(vecs, axis=1)
                good = np.isfinite(norms) & (norms > 0)
                if not good.all():
                    invalid += int((~good).sum())
                    vecs, norms, ids = vecs[good], norms[good], ids[good]
                vecs = vecs / np.where(np.abs(norms - 1) > _UNIT_TOLERANCE, norms, 1)[:, None]  # x / 1.0 is exact
                vf.write(np.ascontiguousarray(vecs, dtype=out_type).data)
                pf.write(np.ascontiguousarray(ids, dtype=np.int64).data)
                written += len(ids)
            vf.flush()
            pf.flush()
            os.fsync(vf.fileno())
            os.fsync(pf.fileno())
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO chunks (fingerprint, source, first_row, rows, not_in_corpus, invalid, added) VALUES"
                " (?,?,?,?,?,?,?)",
                (fingerprint, source, start, written, not_in_corpus, invalid, now),
            )
            conn.execute("UPDATE meta SET value=? WHERE key='rows'", (str(start + written),))
            if generation is not None:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return written, invalid

    def set_generation(self, generation: str) -> None:
        assert self._conn is not None
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation),))
