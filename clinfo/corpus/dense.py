"""Dense retrieval over a local corpus: searching a vector set, and ``embed``.

Vectors live in a vector set beside the corpus (``clinfo.corpus.vectors``: float16 rows, float32
in sets written before float16, memory-mapped from disk, one PMID per row). ``VectorIndex``
searches one set through the index its ``index.json`` describes (``clinfo.corpus.faiss_index``):
exact up to ``EXACT_LIMIT`` vectors, else FAISS IVF-PQ candidates rescored exactly from the rows.
``DenseIndex`` adds the question encoder and date windows; ``embed_index`` encodes the corpus's
articles that have no vector yet and (re)builds the index.

faiss and the encoders are imported inside functions: ``import clinfo`` and the BM25 path never
pay for them, and exact search over imported vectors needs only numpy.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from clinfo.corpus.encoders import DEFAULT_MODEL, canonical_name, document_text, embed_tokens
from clinfo.corpus.faiss_index import (
    EXACT_LIMIT,
    IndexInfo,
    IndexOptions,
    build_dense_index,
    load_faiss,
    read_info,
    rescore_exact,
)
from clinfo.corpus.store import doc_texts, meta_value, open_corpus
from clinfo.corpus.vectors import VectorStore, VectorWriter, as_float32, slug
from clinfo.corpus.writelock import writes_corpus
from clinfo.errors import ClinfoError, ConfigError, CorpusError, one_line

if TYPE_CHECKING:
    import os

    import numpy as np

    from clinfo.dates import DateRange

__all__ = [
    "DenseIndex",
    "EmbedSummary",
    "VectorIndex",
    "WindowLookup",
    "dense_dir",
    "embed_index",
    "find_vector_set",
    "has_vectors",
]

_EMBED_CHUNK = 1024  # articles per committed chunk of ``embed``


class WindowLookup(Protocol):
    """What dense search asks the record store (``RecordStore``): which PMIDs it holds in a date window."""

    def pmids_in_window(self, pmids: Sequence[int], dates: DateRange | None) -> list[bool]: ...


# ------------------------------------------------------------------------------------- vector sets


def dense_dir(db_path: str | os.PathLike[str], model: str | None = None) -> Path:
    """Where the vectors of ``model`` (default all-MiniLM-L6-v2) for this corpus live."""
    return Path(f"{db_path}.dense") / slug(canonical_name(model))


def find_vector_set(db_path: str | os.PathLike[str], model: str | None = None) -> Path | None:
    """The folder of the vector set to search: the named model's, else the only one, else the default's."""
    if model:
        folder = dense_dir(db_path, model)
        return folder if VectorStore.exists(folder) else None
    root = Path(f"{db_path}.dense")
    found = sorted(p.parent for p in root.glob("*/manifest.sqlite")) if root.is_dir() else []
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    default = root / DEFAULT_MODEL
    if default in found:
        return default
    names = ", ".join(p.name for p in found)
    raise ConfigError(
        f"{db_path} has several vector sets ({names}); choose one with the dense_model setting (CLINFO_DENSE_MODEL)"
    )


def has_vectors(db_path: str | os.PathLike[str], model: str | None = None) -> bool:
    """Whether a vector set exists for the corpus (for ``search_mode=auto``)."""
    try:
        folder = find_vector_set(db_path, model)
    except ConfigError:
        return True  # several sets: dense is possible once one is chosen; opening says which
    return folder is not None and VectorStore.open(folder).rows > 0


# ----------------------------------------------------------------------------------------- encoders


def _get_encoder(model: str | None, max_tokens: int | None = None) -> Any:
    from clinfo.corpus.encoders import get_encoder

    return get_encoder(model, max_tokens=max_tokens)


# ------------------------------------------------------------------------------------------ search


class VectorIndex:
    """Top-k PMIDs for a query vector over one vector set; thread-safe for searching."""

    def __init__(self, store: VectorStore, info: IndexInfo, index: Any = None) -> None:
        import numpy as np

        self.store = store
        self.info = info
        self.index = index
        # IVF-PQ rescoring reads a few hundred rows here and there: no read-ahead around them.
        self._matrix = store.matrix(random_access=info.kind != "exact")
        self._pmids = store.pmids()
        self._live_mask: Any = None
        if info.kind == "exact" and self._matrix.dtype != np.float32:
            # Exact search reads every row per query; widening float16 costs more than the product
            # (numpy has no float16 BLAS, and widens at ~250M values/s: 0.3 s for 200k x 384), so
            # the set (<= EXACT_LIMIT rows: <= 300 MB) is widened once, at open.
            self._matrix = as_float32(self._matrix)
        if info.kind == "exact":
            live = store.live_rows()
            if len(live) < store.rows:
                self._live_mask = np.zeros(store.rows, dtype=bool)
                self._live_mask[live] = True
            self.count = len(live)
        else:
            self.count = info.vectors

    @classmethod
    def open(cls, folder: str | os.PathLike[str], *, exact_limit: int = EXACT_LIMIT) -> VectorIndex:
        folder = Path(folder)
        store = VectorStore.open(folder)
        info = read_info(folder)
        if info is None or info.kind == "exact":
            if info is None and store.rows > exact_limit:
                raise CorpusError(
                    f"the vector set {folder} has {store.rows:,} vectors and no index; build it with 'clinfo index"
                    " import-vectors'"
                )
            return cls(store, info or IndexInfo(kind="exact", rows=store.rows, vectors=0))
        info, index = load_faiss(folder, info, store.model)
        return cls(store, info, index)

    @property
    def stale_rows(self) -> int:
        """Rows imported after the index was built, which IVF-PQ search does not see."""
        return 0 if self.info.kind == "exact" else max(0, self.store.rows - self.info.rows)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(PMIDs, cosine scores) of the ``k`` nearest rows, best first."""
        import numpy as np

        q = np.ascontiguousarray(q, dtype=np.float32).reshape(-1)
        k = min(k, self.count)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if self.index is None:
            scores = np.asarray(self._matrix @ q)
            if self._live_mask is not None:
                scores[~self._live_mask] = -np.inf
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            top = top[np.argsort(-scores[top], kind="stable")]
            rows, best = top, scores[top]
        else:
            depth = max(self.info.rescore, k)
            # Deeper requests (date filters) probe proportionally more lists.
            nprobe = min(self.info.nlist, self.info.nprobe * max(1, -(-depth // max(1, self.info.rescore))))
            _, cand = self.index.search(q[None, :], depth, params=self._params(nprobe))
            rows, best = rescore_exact(self._matrix, q, cand[0], k)
        return np.asarray(self._pmids[rows], dtype=np.int64), best.astype(np.float32)

    def _params(self, nprobe: int) -> Any:
        import faiss

        ivf = faiss.SearchParametersIVF(nprobe=nprobe)
        if isinstance(self.index, faiss.IndexPreTransform):
            return faiss.SearchParametersPreTransform(index_params=ivf)
        return ivf


class DenseIndex:
    """Text queries over a corpus's vector set: query encoder + ``VectorIndex`` + date filters."""

    def __init__(
        self, db_path: Path, folder: Path, vindex: VectorIndex, generation: str | None, query_model: str | None
    ) -> None:
        self.db_path = db_path
        self.folder = folder
        self.vindex = vindex
        self.model = vindex.store.model
        self.query_model = query_model
        self.generation = generation

    @classmethod
    def open(
        cls, db_path: str | os.PathLike[str], model: str | None = None, *, query_model: str | None = None
    ) -> DenseIndex:
        """Load the vector index and the query encoder; ``CorpusError`` when there are no vectors,
        ``ConfigError`` when the encoder cannot be loaded or does not match the vectors."""
        conn = open_corpus(db_path)
        try:
            generation = meta_value(conn, "generation")
        finally:
            conn.close()
        folder = find_vector_set(db_path, model)
        if folder is None:
            raise CorpusError(
                f"no dense vectors for {model or 'any model'} beside {db_path}; run 'clinfo index embed {db_path}'"
                + (f" --model {model}" if model else "")
                + " or 'clinfo index import-vectors'"
            )
        try:
            vindex = VectorIndex.open(folder)
        except ClinfoError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:  # a damaged file numpy or FAISS trips over
            raise CorpusError(f"vector set {folder} cannot be read: {one_line(exc, 200)}") from None
        qmodel = query_model or vindex.store.query_model
        self = cls(Path(db_path), folder, vindex, generation, qmodel)
        # Only the question side is needed to search; loading it now fails at open, not mid-run.
        self._encoder = _get_encoder(qmodel or self.model)
        dim = self._encoder.dim
        if dim != vindex.store.dim:
            raise ConfigError(
                f"query encoder {qmodel or self.model} gives {dim}-dimensional vectors; the vectors of {self.model}"
                f" have {vindex.store.dim}"
            )
        return self

    @property
    def count(self) -> int:
        return self.vindex.count

    def warnings(self) -> list[str]:
        out = []
        if self.vindex.store.generation is not None and str(self.vindex.store.generation) != str(self.generation):
            out.append(
                "the corpus changed since its dense vectors were last updated; articles added since are found by"
                " BM25 only"
                f" (run 'clinfo index embed {self.db_path}' or import their vectors)"
            )
        if self.vindex.stale_rows:
            out.append(
                f"{self.vindex.stale_rows:,} vectors were imported after the dense index was built and are not"
                " searched;"
                f" rebuild it with 'clinfo index import-vectors {self.db_path} --model {self.model}'"
            )
        return out

    def encode_query(self, text: str) -> np.ndarray:
        return self._encoder.encode_queries([text])[0]

    def search(
        self, query: str, k: int, store: WindowLookup, dates: DateRange | None = None
    ) -> tuple[list[int], list[float]]:
        """(PMIDs, cosine scores), best first; boolean syntax is reduced to its words for the encoder.

        Articles the corpus no longer holds, and those outside ``dates``, are dropped; when that
        leaves fewer than ``k``, the search widens (x4, up to the whole set) until it has enough.
        """
        from clinfo.pubmed.query import is_boolean, terms

        text = " ".join(terms(query)) if is_boolean(query) else query
        if not text.strip() or k <= 0:
            return [], []
        q = self.encode_query(text)
        depth = min(self.count, k if dates is None else 10 * k)
        kept: list[tuple[int, float]] = []
        while True:
            ids, scores = self.vindex.search(q, depth)
            keep = store.pmids_in_window([int(p) for p in ids], dates)
            kept = [(int(p), float(s)) for p, s, ok in zip(ids, scores, keep) if ok]
            if len(kept) >= k or depth >= self.count or depth >= 100_000:
                break
            depth = min(self.count, depth * 4)
        kept = kept[:k]
        return [p for p, _ in kept], [s for _, s in kept]


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
    index_line: str = ""

    def line(self) -> str:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.model}: embedded {self.embedded:,} articles in {self.seconds:.1f} s ({rate:,.0f}/s), reused"
            f" {self.reused:,},"
            f" not in the corpus any more {self.removed:,}; {self.index_line or self.index_kind}"
        )


@writes_corpus("index embed", "db_path")
def embed_index(
    db_path: str | os.PathLike[str],
    model: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
    exact_limit: int = EXACT_LIMIT,
    max_tokens: int | None = None,
) -> EmbedSummary:
    """Encode every article that has no vector yet (resumable: committed per chunk), then index.
    ``max_tokens`` cuts documents shorter than the model's own limit (faster, slightly less recall);
    None takes ``encoders.embed_tokens(model)`` (128 for all-MiniLM-L6-v2, its training length)."""
    import numpy as np

    started = time.perf_counter()
    corpus = open_corpus(db_path)
    try:
        generation = meta_value(corpus, "generation")
        doc_ids = np.fromiter((r[0] for r in corpus.execute("SELECT pmid FROM docs ORDER BY pmid")), dtype=np.int64)
        if len(doc_ids) == 0:
            raise CorpusError("the corpus has no articles to embed")
        encoder = _get_encoder(model, max_tokens or embed_tokens(model))
        folder = dense_dir(db_path, model)
        with VectorWriter(folder, model=encoder.name, dim=encoder.dim) as writer:
            have = np.unique(writer.pmids())
            todo = doc_ids[~np.isin(doc_ids, have)]
            removed = int((~np.isin(have, doc_ids)).sum())
            bar = task = None
            if progress and len(todo):
                from rich.console import Console
                from rich.progress import Progress

                bar = Progress(*Progress.get_default_columns(), console=Console(stderr=True))
                task = bar.add_task("embedding", total=len(todo))
                bar.start()
            try:
                for i in range(0, len(todo), _EMBED_CHUNK):
                    chunk = [int(p) for p in todo[i : i + _EMBED_CHUNK]]
                    rows = doc_texts(corpus, chunk)
                    emb = encoder.encode_documents([document_text(t, a) for _, t, a in rows], batch_size)
                    ids = np.array([r[0] for r in rows], dtype=np.int64)
                    writer.append(
                        iter([(ids, emb)]), fingerprint=f"embed:{uuid.uuid4().hex}", source=f"embed {len(ids)} articles"
                    )
                    if bar is not None:
                        bar.update(task, advance=len(chunk))
            finally:
                if bar is not None:
                    bar.stop()
            if generation is not None:
                writer.set_generation(generation)
            total = len(np.unique(writer.pmids()))
        info = build_dense_index(folder, IndexOptions(exact_limit=exact_limit), progress=progress)
    finally:
        corpus.close()
    return EmbedSummary(
        encoder.name,
        len(todo),
        len(have) - removed,
        removed,
        total,
        time.perf_counter() - started,
        info.kind,
        info.line(),
    )
