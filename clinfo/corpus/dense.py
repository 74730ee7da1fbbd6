"""Dense retrieval over a local corpus: the search index over a vector set, and ``embed``.

Vectors live in a vector set beside the corpus (``clinfo.corpus.vectors``: float32 rows
memory-mapped from disk, one PMID per row). Over them sits one of two indexes, described by
``index.json`` in the set's folder:

* ``exact`` up to ``EXACT_LIMIT`` vectors: a matrix-vector product over the memory-mapped rows.
  Nothing to build, always current, exact.
* ``ivfpq`` above it: FAISS ``IVF{nlist},PQ{m}x4fs`` (inner product; 4-bit "fast scan" PQ
  codes, 4 dimensions per sub-quantiser; OPQ rotation optional), trained on a sample.
  Only the PQ codes (48 bytes at 384-d) and ids stay in memory (37M x 384 float16 rows are 28 GB;
  codes and ids 2.1 GB), so the candidates it returns are approximate; the top ``rescore`` of
  them (500-1,000, growing with the set) are scored again exactly from the memory-mapped rows.
  ``nprobe`` is chosen at build time as the smallest that reaches ``target_recall`` recall@10
  against exact search on held-out rows, up to half the lists.

  Why these choices (benchmarks/dense_scale.py, real MiniLM vectors blended, PubMedQA questions):
  with exact rescoring of a few hundred candidates, recall is set by whether the true top 10
  lie in the probed lists at all, not by the PQ code: recall after rescoring equalled that
  ceiling at every nprobe for 8-bit PQ64 with 200 candidates. Recall is bought with nprobe, so
  the code is the one fastest to scan: 4-bit fast-scan codes scan 4-7x faster than 8-bit PQ64 at
  equal recall once 1,000 candidates are rescored, train 8x faster and take 48 bytes, not 64.

The FAISS file is named by its build, and ``index.json`` (written last, atomically) names it,
so a reader never sees a half-written index. Importing more vectors does not change a built
IVF index; searches warn until it is rebuilt (small additions are folded into the existing index
without retraining).

faiss and the encoders are imported inside functions: ``import clinfo`` and the BM25 path never
pay for them, and exact search over imported vectors needs only numpy.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from clinfo.corpus.encoders import DEFAULT_MODEL, canonical_name, document_text, embed_tokens
from clinfo.corpus.vectors import VectorStore, VectorWriter, as_float32, slug
from clinfo.corpus.writelock import writes_corpus
from clinfo.errors import ClinfoError, ConfigError, CorpusError, one_line

if TYPE_CHECKING:
    import numpy as np

    from clinfo.dates import DateRange

__all__ = [
    "DEFAULT_MODEL",
    "EXACT_LIMIT",
    "DenseIndex",
    "EmbedSummary",
    "IndexInfo",
    "VectorIndex",
    "build_dense_index",
    "dense_dir",
    "embed_index",
    "find_vector_set",
    "has_vectors",
]

# Exact search reads every vector per query. Measured on 2 busy cores (load ~12): 1M x 384 took
# p50 283 ms / p99 382 ms, against 0.5 / 8.6 ms for IVF-PQ + rescoring at recall@10 0.998
# (benchmarks/dense_scale.py); 200k x 384 (300 MB) stays within a hybrid search's budget.
EXACT_LIMIT = 200_000
RESCORE = 200  # IVF-PQ candidates scored again exactly, at least (default_rescore scales it with N)
TARGET_RECALL = 0.97  # at build time, on held-out rows: headroom above the 0.95 promised
# nprobe values the tuner tries, in steps of ~1.5x so that it stops near the smallest that works
_NPROBES = tuple(sorted({int(b * 2**e) for e in range(0, 16) for b in (1, 1.5)} - {0}))
_EMBED_CHUNK = 1024  # articles per committed chunk of ``embed``
_HNSW_LISTS = 4096  # more lists than this: an HNSW quantiser assigns vectors while adding
_MIN_IVF = 10_000  # below this PQ cannot even be trained (256 centroids per sub-quantiser)
_INCREMENTAL = 0.10  # fold new rows into an existing IVF index while they are at most this share

_MISSING = "dense retrieval needs the [dense] extra: pip install torch==2.13.0 (CPU) then pip install 'clinfo[dense]'"


class YearLookup(Protocol):
    def years(self, pmids: Sequence[int]) -> dict[int, int | None]: ...


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


# ------------------------------------------------------------------------------------- index build


@dataclass
class IndexInfo:
    kind: str  # "exact" | "ivfpq"
    rows: int  # committed rows of the vector set the index covers
    vectors: int  # distinct PMIDs searchable
    file: str | None = None
    nlist: int = 0
    m: int = 0
    opq: bool = False
    nprobe: int = 0
    rescore: int = 0
    nbits: int = 8
    recall_at_10: float | None = None  # measured at build time on held-out rows, after rescoring
    train_seconds: float = 0.0
    add_seconds: float = 0.0
    built: str = ""

    def line(self) -> str:
        if self.kind == "exact":
            return f"exact search over {self.vectors:,} vectors"
        recall = f", recall@10 {self.recall_at_10:.3f} vs exact" if self.recall_at_10 is not None else ""
        bits = "x4fs" if self.nbits == 4 else f"x{self.nbits}" if self.nbits != 8 else ""
        line = (
            f"IVF-PQ index over {self.vectors:,} vectors"
            f" ({f'OPQ{self.m},' if self.opq else ''}IVF{self.nlist},PQ{self.m}{bits};"
            f" nprobe {self.nprobe}, rescoring {self.rescore}{recall}); trained in {self.train_seconds:.0f} s, added"
            f" in {self.add_seconds:.0f} s"
        )
        if self.recall_at_10 is not None and self.recall_at_10 < TARGET_RECALL:
            # the tuner ran out of nprobe values: say so rather than ship a quietly worse index
            line += (
                f"; WARNING: recall@10 stayed below the {TARGET_RECALL:.2f} target at the largest nprobe"
                " (rebuild with a larger training sample or more lists)"
            )
        return line


def _read_info(folder: Path) -> IndexInfo | None:
    path = folder / "index.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return IndexInfo(**{k: v for k, v in data.items() if k in IndexInfo.__dataclass_fields__})
    except (ValueError, TypeError) as exc:
        raise CorpusError(f"{path} cannot be read ({exc}); rebuild it with 'clinfo index import-vectors'") from None


def _write_info(folder: Path, info: IndexInfo) -> None:
    tmp = folder / "index.json.tmp"
    with open(tmp, "w") as fh:
        json.dump(asdict(info), fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / "index.json")


def default_nlist(n: int) -> int:
    """About 4 sqrt(n) inverted lists, a power of two: ~1-2k vectors per list at PubMed scale."""
    return int(min(65536, max(64, 2 ** round(math.log2(4 * math.sqrt(max(n, 1)))))))


def default_rescore(n: int) -> int:
    """Candidates rescored exactly from the stored rows: 500 up to 500k vectors, then n/1,000 up to
    1,000. 4-bit codes rank coarsely, so the true top 10 can sit a few hundred places down their
    order; 1,000 float16 rows are 0.75 MB to read and ~1.5 ms to widen and score (measured at
    200k, nprobe 256: recall 0.959 with 200 candidates, 0.973 with 1,000)."""
    return int(max(500, min(1000, n // 1000)))


def default_train_size(nlist: int) -> int:
    """Training sample: 30 points per list, at least 65,536, at most 1M. Unchanged: the k-means
    work (sample x lists) dominates the build, and what limits recall is how many of the true
    neighbours' lists a query probes, which nprobe buys more cheaply."""
    return max(65_536, min(1_000_000, 30 * nlist))


def default_max_nprobe(nlist: int) -> int:
    """The largest nprobe the tuner tries: half the lists (fast-scan codes make even that a few
    tens of ms at 1M; the old cap of 2,048 left a 3M set at recall 0.83)."""
    return max(1, nlist // 2)


def default_m(dim: int, nbits: int = 4) -> int:
    """PQ sub-quantisers: 4 dimensions each for 4-bit codes (48 bytes at 384-d), at most 128 (64
    bytes: 37M x 768-d MedCPT stays at 2.7 GB of codes and ids); 64 bytes for 8-bit codes."""
    if nbits == 4:
        for m in (128, 96, 64, 48, 32, 16, 8, 4, 2):
            if dim % m == 0 and dim // m >= 4:
                return m
        return 2 if dim % 2 == 0 else 1
    for m in (64, 48, 32, 16, 8):
        if dim % m == 0 and dim // m >= 4:
            return m
    return max(d for d in range(1, dim // 4 + 1) if dim % d == 0) if dim >= 4 else 1


@writes_corpus("index import-vectors", "folder", vector_set=True)
def build_dense_index(
    folder: str | os.PathLike[str],
    *,
    exact_limit: int = EXACT_LIMIT,
    nlist: int | None = None,
    m: int | None = None,
    nbits: int = 4,
    opq: bool = False,
    rescore: int | None = None,
    target_recall: float = TARGET_RECALL,
    train_size: int | None = None,
    max_nprobe: int | None = None,
    rebuild: bool = False,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = False,
) -> IndexInfo:
    """Make the vector set searchable: exact up to ``exact_limit`` vectors, else a trained IVF-PQ index."""
    import numpy as np

    folder = Path(folder)
    store = VectorStore.open(folder)
    live = store.live_rows()
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if len(live) == 0:
        raise CorpusError(f"the vector set {folder} holds no vectors")
    old = _read_info(folder)
    if len(live) <= max(exact_limit, _MIN_IVF):
        info = IndexInfo("exact", store.rows, len(live), built=now)
        _write_info(folder, info)
        _remove_stale_files(folder, keep=None)
        return info
    _require_faiss()
    import faiss

    faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
    if old and old.kind == "ivfpq" and old.file and not rebuild and old.rows < store.rows:
        if store.rows - old.rows <= _INCREMENTAL * old.rows and (folder / old.file).is_file():
            return _extend(folder, store, old, live, now)
    if (
        old
        and old.kind == "ivfpq"
        and old.rows == store.rows
        and not rebuild
        and old.file
        and (folder / old.file).is_file()
    ):
        return old
    rng = np.random.default_rng(seed)
    n, dim = len(live), store.dim
    nlist = nlist or default_nlist(n)
    m = m or default_m(dim, nbits)
    rescore = rescore or default_rescore(n)
    # Above _HNSW_LISTS lists an HNSW graph over the centroids assigns each vector in log time; a
    # flat quantiser costs N x nlist x dim (37M x 32,768 lists: ~1e15 flops). At 4,096 lists the
    # two were alike on 2 busy cores: 1M added in 248 s flat, 3M in 990 s with HNSW. Searches
    # then rank the centroids exactly (see _flat_quantizer).
    quantizer = f"IVF{nlist}_HNSW32" if nlist > _HNSW_LISTS else f"IVF{nlist}"
    codes = f"PQ{m}x4fs" if nbits == 4 else f"PQ{m}x{nbits}"  # 4-bit: the SIMD fast-scan layout
    spec = f"{f'OPQ{m},' if opq else ''}{quantizer},{codes}"
    index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.min_points_per_centroid = 5  # small sets: train anyway, without a warning per call
    ivf.pq.cp.min_points_per_centroid = 5
    matrix = store.matrix()
    t0 = time.perf_counter()
    sample_n = min(n, train_size or default_train_size(nlist))
    sample = np.sort(rng.choice(live, size=sample_n, replace=False)) if sample_n < n else live
    index.train(np.ascontiguousarray(matrix[sample], dtype=np.float32))
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
        # near-exact assignment (the default 16 misplaced 1.1% of rows at 3M)
        faiss.downcast_index(ivf.quantizer).hnsw.efSearch = 64
    _add_rows(index, matrix, live, progress, "adding vectors")
    _flat_quantizer(ivf)
    add_seconds = time.perf_counter() - t0
    nprobe, recall = _tune_nprobe(
        index, ivf, matrix, live, rescore, target_recall, rng, max_nprobe or default_max_nprobe(nlist)
    )
    ivf.nprobe = nprobe
    name = f"index-{uuid.uuid4().hex[:12]}.faiss"
    _write_faiss(index, folder / name)
    info = IndexInfo(
        "ivfpq",
        store.rows,
        n,
        name,
        nlist,
        m,
        opq,
        nprobe,
        rescore,
        nbits,
        round(recall, 4),
        round(train_seconds, 1),
        round(add_seconds, 1),
        now,
    )
    _write_info(folder, info)
    _remove_stale_files(folder, keep=name)
    return info


def _flat_quantizer(ivf: Any) -> None:
    """Replace an HNSW quantiser by exact search over the same centroids, once vectors are added.

    An HNSW search for the nprobe best of 8,192 centroids returns about efSearch of them whatever
    nprobe asks: at 3M the old tuner climbed to nprobe 2,048 (recall 0.83) and this one to 4,096
    (0.855) while the lists actually probed, and recall, stayed put. Ranking all centroids costs
    nlist x dim per question (32,768 x 384: a few ms), and recall then grows with nprobe again.
    """
    import faiss

    quantizer = faiss.downcast_index(ivf.quantizer)
    if not isinstance(quantizer, faiss.IndexHNSW):
        return
    flat = faiss.IndexFlatIP(ivf.d)
    flat.add(quantizer.reconstruct_n(0, ivf.nlist))
    ivf.quantizer = flat
    ivf.own_fields = True  # the IVF index frees it, and writes it with the index
    flat.this.disown()


def _require_faiss() -> None:
    # OpenMP threads that spin while waiting starve everything else on a busy machine (measured:
    # k-means 15x slower on 2 shared cores); sleeping costs little when the machine is idle.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import faiss  # noqa: F401
    except ImportError:
        raise ConfigError(f"an index over more than {EXACT_LIMIT:,} vectors needs faiss: {_MISSING}") from None


def _add_rows(index: Any, matrix: np.ndarray, rows: np.ndarray, progress: bool, label: str) -> None:
    import numpy as np

    step = 131_072
    bar = task = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(*Progress.get_default_columns(), console=Console(stderr=True))
        task = bar.add_task(label, total=len(rows))
        bar.start()
    try:
        for i in range(0, len(rows), step):
            part = rows[i : i + step]
            contiguous = part[-1] - part[0] == len(part) - 1
            block = matrix[part[0] : part[-1] + 1] if contiguous else matrix[part]
            index.add_with_ids(np.ascontiguousarray(block, dtype=np.float32), part.astype(np.int64))
            if bar is not None:
                bar.update(task, advance=len(part))
    finally:
        if bar is not None:
            bar.stop()


def _extend(folder: Path, store: VectorStore, old: IndexInfo, live: np.ndarray, now: str) -> IndexInfo:
    """Fold rows appended since the build into the trained index: drop superseded rows, add new ones."""
    import faiss
    import numpy as np

    index = faiss.read_index(str(folder / old.file))  # type: ignore[operator]
    new = live[live >= old.rows]
    pmids = store.pmids()
    new_ids = np.asarray(pmids[new]) if len(new) else np.zeros(0, dtype=np.int64)
    old_rows = np.arange(old.rows, dtype=np.int64)
    superseded = old_rows[np.isin(np.asarray(pmids[: old.rows]), new_ids)]
    t0 = time.perf_counter()
    if len(superseded):
        index.remove_ids(faiss.IDSelectorBatch(superseded))
    _add_rows(index, store.matrix(), new, False, "")
    name = f"index-{uuid.uuid4().hex[:12]}.faiss"
    _write_faiss(index, folder / name)
    info = IndexInfo(**{**asdict(old), "rows": store.rows, "vectors": len(live), "file": name, "built": now})
    info.add_seconds = round(old.add_seconds + time.perf_counter() - t0, 1)
    _write_info(folder, info)
    _remove_stale_files(folder, keep=name)
    return info


def _write_faiss(index: Any, path: Path) -> None:
    import faiss

    tmp = path.with_suffix(".tmp")
    faiss.write_index(index, str(tmp))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _remove_stale_files(folder: Path, keep: str | None) -> None:
    for p in folder.glob("index-*.faiss"):
        if p.name != keep:
            p.unlink(missing_ok=True)  # a reader that already loaded it keeps its copy in memory


def exact_top(
    matrix: np.ndarray, queries: np.ndarray, k: int, live_mask: np.ndarray | None = None, block: int = 262_144
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows (and scores) per query by inner product, reading the matrix in blocks."""
    import numpy as np

    q = np.ascontiguousarray(queries, dtype=np.float32)
    nq = len(q)
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    for start in range(0, len(matrix), block):
        part = as_float32(matrix[start : start + block])
        s = q @ part.T
        if live_mask is not None:
            s[:, ~live_mask[start : start + len(part)]] = -np.inf
        kk = min(k, s.shape[1])
        idx = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(s, idx, 1)], axis=1)
        best_i = np.concatenate([best_i, idx + start], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1), np.take_along_axis(best_s, order, 1)


def _rescore(matrix: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    rows = np.unique(rows[rows >= 0])  # sorted: the memory map reads pages in order
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.float32)
    scores = as_float32(matrix[rows]) @ q
    top = np.argsort(-scores, kind="stable")[:k]
    return rows[top], scores[top]


def _tune_nprobe(
    index: Any,
    ivf: Any,
    matrix: np.ndarray,
    live: np.ndarray,
    rescore: int,
    target: float,
    rng: Any,
    max_nprobe: int = 2048,
    queries: int = 200,
) -> tuple[int, float]:
    """Smallest nprobe whose recall@10 after rescoring reaches ``target`` on held-out rows (leave-one-out)."""
    import numpy as np

    qrows = np.sort(rng.choice(live, size=min(queries, len(live)), replace=False))
    q = np.ascontiguousarray(matrix[qrows], dtype=np.float32)
    mask = None
    if len(live) < len(matrix):
        mask = np.zeros(len(matrix), dtype=bool)
        mask[live] = True
    truth, _ = exact_top(matrix, q, 11, mask)
    truth_sets = [set(t[t != r][:10].tolist()) for t, r in zip(truth, qrows)]
    recall = 0.0
    nprobe = 1
    for nprobe in (p for p in _NPROBES if p <= min(ivf.nlist, max_nprobe)):
        ivf.nprobe = nprobe
        _, cand = index.search(q, rescore + 1)
        hits = 0
        for i, r in enumerate(qrows):
            got, _ = _rescore(matrix, q[i], cand[i][cand[i] != r], 10)
            hits += len(truth_sets[i] & set(got.tolist()))
        recall = hits / max(1, sum(len(t) for t in truth_sets))
        if recall >= target:
            break
    return nprobe, recall


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
        info = _read_info(folder)
        if info is None or info.kind == "exact":
            if info is None and store.rows > exact_limit:
                raise CorpusError(
                    f"the vector set {folder} has {store.rows:,} vectors and no index; build it with 'clinfo index"
                    " import-vectors'"
                )
            return cls(store, info or IndexInfo("exact", store.rows, 0))
        _require_faiss()
        import faiss

        try:
            index = faiss.read_index(str(folder / str(info.file)))
        except RuntimeError:  # replaced by a concurrent rebuild between reading the two files
            info = _read_info(folder) or info
            try:
                index = faiss.read_index(str(folder / str(info.file)))
            except RuntimeError as exc:  # missing or corrupt: FAISS says so in a multi-line message
                raise CorpusError(
                    f"the dense index {folder / str(info.file)} cannot be read ({one_line(exc, 120)}); rebuild it"
                    f" with 'clinfo index import-vectors {folder.parent.with_suffix('')} --model {store.model}'"
                ) from None
        try:
            faiss.downcast_index(faiss.extract_index_ivf(index)).nprobe = info.nprobe
        except RuntimeError as exc:
            raise CorpusError(f"the dense index in {folder} is not an IVF index ({one_line(exc, 120)})") from None
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
            rows, best = _rescore(self._matrix, q, cand[0], k)
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
        from clinfo.corpus.store import open_corpus

        conn = open_corpus(db_path)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
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
        self = cls(Path(db_path), folder, vindex, row[0] if row else None, qmodel)
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
        self, query: str, k: int, store: YearLookup, dates: DateRange | None = None
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
            years = store.years([int(p) for p in ids])
            kept = [
                (int(p), float(s))
                for p, s in zip(ids, scores)
                if int(p) in years and (dates is None or dates.contains(years[int(p)]))
            ]
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

    from clinfo.corpus.store import doc_texts, open_corpus

    started = time.perf_counter()
    corpus = open_corpus(db_path)
    try:
        generation = corpus.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        generation = generation[0] if generation else None
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
        info = build_dense_index(folder, exact_limit=exact_limit, progress=progress)
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
