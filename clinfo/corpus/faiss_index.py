"""The index over a vector set, from build to load: ``index.json`` and the FAISS file it names.

A vector set (``clinfo.corpus.vectors``) is searched (``clinfo.corpus.dense``) through one of two
indexes, described by ``index.json`` in the set's folder:

* ``exact`` up to ``EXACT_LIMIT`` vectors: a matrix-vector product over the memory-mapped rows.
  Nothing to build, always current, exact.
* ``ivfpq`` above it: FAISS ``IVF{nlist},PQ{m}x4fs`` (inner product; 4-bit "fast scan" PQ
  codes, 4 dimensions per sub-quantiser; OPQ rotation optional), trained on a sample.
  Only the PQ codes (48 bytes at 384-d) and ids stay in memory (37M x 384 float16 rows are 28 GB;
  codes and ids 2.1 GB), so the candidates it returns are approximate; the top ``rescore`` of
  them (500-1,000, growing with the set: ``default_rescore``) are scored again exactly from the
  memory-mapped rows (``rescore_exact``). ``nprobe`` is chosen at build time as the smallest that
  reaches ``target_recall`` recall@10 against exact search on held-out rows, up to half the lists.

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

faiss is imported inside functions: exact search over imported vectors needs only numpy.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.corpus.vectors import VectorStore, as_float32
from clinfo.corpus.writelock import writes_corpus
from clinfo.errors import ConfigError, CorpusError, one_line

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "EXACT_LIMIT",
    "TARGET_RECALL",
    "IndexInfo",
    "IndexOptions",
    "build_dense_index",
    "default_m",
    "default_max_nprobe",
    "default_nlist",
    "default_rescore",
    "default_train_size",
    "exact_top",
    "load_faiss",
    "read_info",
    "require_faiss",
    "rescore_exact",
]

# Exact search reads every vector per query. Measured on 2 busy cores (load ~12): 1M x 384 took
# p50 283 ms / p99 382 ms, against 0.5 / 8.6 ms for IVF-PQ + rescoring at recall@10 0.998
# (benchmarks/dense_scale.py); 200k x 384 (300 MB) stays within a hybrid search's budget.
EXACT_LIMIT = 200_000
TARGET_RECALL = 0.97  # at build time, on held-out rows: headroom above the 0.95 promised
# nprobe values the tuner tries, in steps of ~1.5x so that it stops near the smallest that works
_NPROBES = tuple(sorted({int(b * 2**e) for e in range(0, 16) for b in (1, 1.5)} - {0}))
_HNSW_LISTS = 4096  # more lists than this: an HNSW quantiser assigns vectors while adding
_MIN_IVF = 10_000  # below this PQ cannot even be trained (256 centroids per sub-quantiser)
_INCREMENTAL = 0.10  # fold new rows into an existing IVF index while they are at most this share

_MISSING = "dense retrieval needs the [dense] extra: pip install torch==2.13.0 (CPU) then pip install 'clinfo[dense]'"


@dataclass(kw_only=True)
class IndexInfo:
    """What ``index.json`` says about a vector set's index (written as these fields, in this order)."""

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


@dataclass(frozen=True)
class IndexOptions:
    """How ``build_dense_index`` builds; a field left None takes its ``default_*`` for the set's size."""

    exact_limit: int = EXACT_LIMIT  # up to this many vectors: exact search, no index to build
    nlist: int | None = None  # inverted lists (default_nlist)
    m: int | None = None  # PQ sub-quantisers (default_m)
    nbits: int = 4  # bits per PQ code; 4 is FAISS's SIMD fast-scan layout
    opq: bool = False  # an OPQ rotation before PQ
    rescore: int | None = None  # IVF-PQ candidates scored again exactly (default_rescore)
    target_recall: float = TARGET_RECALL  # recall@10 the nprobe tuner stops at
    train_size: int | None = None  # training sample (default_train_size)
    max_nprobe: int | None = None  # the largest nprobe tried (default_max_nprobe)
    rebuild: bool = False  # train afresh even when the index is current or could be extended
    seed: int = 0  # of the training sample and the tuning queries
    threads: int | None = None  # FAISS (OpenMP) threads; default: one per CPU


def read_info(folder: Path) -> IndexInfo | None:
    """The vector set's ``index.json``; None before the first index build."""
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
    folder: str | os.PathLike[str], options: IndexOptions | None = None, *, progress: bool = False
) -> IndexInfo:
    """Make the vector set searchable: exact up to ``options.exact_limit`` vectors, else a trained
    IVF-PQ index (folded into without retraining when few rows were added since; kept when current)."""
    import numpy as np

    opts = options or IndexOptions()
    nbits, opq = opts.nbits, opts.opq
    folder = Path(folder)
    store = VectorStore.open(folder)
    live = store.live_rows()
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if len(live) == 0:
        raise CorpusError(f"the vector set {folder} holds no vectors")
    old = read_info(folder)
    if len(live) <= max(opts.exact_limit, _MIN_IVF):
        info = IndexInfo(kind="exact", rows=store.rows, vectors=len(live), built=now)
        _write_info(folder, info)
        _remove_stale_files(folder, keep=None)
        return info
    require_faiss()
    import faiss

    faiss.omp_set_num_threads(opts.threads or os.cpu_count() or 1)
    if old and old.kind == "ivfpq" and old.file and not opts.rebuild and old.rows < store.rows:
        if store.rows - old.rows <= _INCREMENTAL * old.rows and (folder / old.file).is_file():
            return _extend(folder, store, old, live, now)
    if (
        old
        and old.kind == "ivfpq"
        and old.rows == store.rows
        and not opts.rebuild
        and old.file
        and (folder / old.file).is_file()
    ):
        return old
    rng = np.random.default_rng(opts.seed)
    n, dim = len(live), store.dim
    nlist = opts.nlist or default_nlist(n)
    m = opts.m or default_m(dim, nbits)
    rescore = opts.rescore or default_rescore(n)
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
    sample_n = min(n, opts.train_size or default_train_size(nlist))
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
        index, ivf, matrix, live, rescore, opts.target_recall, rng, opts.max_nprobe or default_max_nprobe(nlist)
    )
    ivf.nprobe = nprobe
    name = f"index-{uuid.uuid4().hex[:12]}.faiss"
    _write_faiss(index, folder / name)
    info = IndexInfo(
        kind="ivfpq",
        rows=store.rows,
        vectors=n,
        file=name,
        nlist=nlist,
        m=m,
        opq=opq,
        nprobe=nprobe,
        rescore=rescore,
        nbits=nbits,
        recall_at_10=round(recall, 4),
        train_seconds=round(train_seconds, 1),
        add_seconds=round(add_seconds, 1),
        built=now,
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


def require_faiss() -> None:
    """``ConfigError`` naming the extra to install when faiss is missing."""
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


def rescore_exact(matrix: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, scores) of the ``k`` best of the candidate ``rows`` (-1s ignored) scored exactly against ``q``."""
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
            got, _ = rescore_exact(matrix, q[i], cand[i][cand[i] != r], 10)
            hits += len(truth_sets[i] & set(got.tolist()))
        recall = hits / max(1, sum(len(t) for t in truth_sets))
        if recall >= target:
            break
    return nprobe, recall


def load_faiss(folder: Path, info: IndexInfo, model: str) -> tuple[IndexInfo, Any]:
    """The IVF-PQ index that ``info`` names, read into memory with its tuned nprobe; and ``info``,
    read again when a concurrent rebuild replaced the file in between."""
    require_faiss()
    import faiss

    try:
        index = faiss.read_index(str(folder / str(info.file)))
    except RuntimeError:  # replaced by a concurrent rebuild between reading the two files
        info = read_info(folder) or info
        try:
            index = faiss.read_index(str(folder / str(info.file)))
        except RuntimeError as exc:  # missing or corrupt: FAISS says so in a multi-line message
            raise CorpusError(
                f"the dense index {folder / str(info.file)} cannot be read ({one_line(exc, 120)}); rebuild it"
                f" with 'clinfo index import-vectors {folder.parent.with_suffix('')} --model {model}'"
            ) from None
    try:
        faiss.downcast_index(faiss.extract_index_ivf(index)).nprobe = info.nprobe
    except RuntimeError as exc:
        raise CorpusError(f"the dense index in {folder} is not an IVF index ({one_line(exc, 120)})") from None
    return info, index
