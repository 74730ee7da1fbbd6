"""Dense retrieval at scale, on SYNTHETIC vectors: import throughput, index build time, recall@10
against exact search, query latency and resident memory, extrapolated to PubMed's 37M.

    python benchmarks/dense_scale.py --n 1000000 --n 3000000 [--dim 384] [--work DIR] [--queries 300]

Per size N it writes N synthetic vectors as MedCPT-style chunks (1M-row float32 ``.npy`` + PMID
JSON), imports them with ``clinfo.corpus.vector_import.import_vectors`` into a skeleton corpus (a
record store whose docs hold only PMIDs: the import checks every PMID against it), builds the
dense index (exact up to ``EXACT_LIMIT``, else IVF-PQ with rescoring), and searches held-out
queries in a fresh process, so its peak RSS is that of a searcher, not of the builder.

The vectors are clusters on a low-dimensional subspace plus noise (like text embeddings, their
neighbourhoods are structured); queries are new draws from the same clusters. Recall on real
MedCPT vectors with real questions can differ: the build step tunes nprobe on held-out rows of
whatever set it indexes, and ``clinfo index import-vectors`` prints what it reached.

Timings exclude the query encoder (``benchmarks/encode_throughput.py`` measures it) and BM25
(``benchmarks/search_latency.py``). ``benchmarks/corpus_scale.py`` can import ``measure``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PUBMED = 37_000_000
CHUNK = 1_000_000


@dataclass
class Synthetic:
    """A generator of embedding-like unit vectors: cluster centres on a latent subspace."""

    dim: int
    latent: int = 48
    clusters: int = 4096
    spread: float = 0.6  # within-cluster standard deviation on the latent axes (centres: 1)
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.centres = rng.standard_normal((self.clusters, self.latent)).astype(np.float32)
        self.proj = (rng.standard_normal((self.latent, self.dim)) / math.sqrt(self.latent)).astype(np.float32)

    def draw(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        z = self.centres[rng.integers(0, self.clusters, n)] + self.spread * rng.standard_normal(
            (n, self.latent), dtype=np.float32
        )
        x = z @ self.proj
        x += 0.15 * rng.standard_normal((n, self.dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


class Blend:
    """Real all-MiniLM-L6-v2 vectors blended, as ``benchmarks/corpus_scale.py`` makes its replicas:
    row = normalise(seed + 0.7 x another seed + 0.1 x noise). The seeds are the 3,000 real vectors
    of the demo corpus (``clinfo/data/demo_vectors.npy``) and, up to ``seeds``, the normalised mean
    of 3 real ones plus a little noise (the 3M corpus_scale set had ~22k real seeds; this mimics
    it). Such rows keep the anisotropy of real text embeddings (a few dominant directions), which
    a Gaussian mixture lacks; the IVF-PQ index that reached recall 0.998 on ``Synthetic`` stalled
    at 0.89 on them. Queries are real PubMedQA questions encoded by the packaged ONNX MiniLM where
    it is installed (else held-out blends, said in the output)."""

    def __init__(
        self, dim: int = 384, seeds: int = 22_000, blend: float = 0.7, noise: float = 0.1, seed: int = 0
    ) -> None:
        real = np.load(REPO / "clinfo" / "data" / "demo_vectors.npy").astype(np.float32)
        if real.shape[1] != dim:
            raise SystemExit(f"error: the real seed vectors have {real.shape[1]} dimensions, not {dim}")
        rng = np.random.default_rng(seed)
        extra = max(0, seeds - len(real))
        mix = real[rng.integers(0, len(real), size=(extra, 3))].mean(axis=1)
        mix += noise * rng.standard_normal((extra, dim), dtype=np.float32) / np.float32(math.sqrt(dim))
        self.seeds = _unit(np.concatenate([real, mix]))
        self.dim, self.blend, self.noise, self.real = dim, blend, noise, len(real)

    def draw(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        s = len(self.seeds)
        out = np.empty((n, self.dim), dtype=np.float32)
        for i in range(0, n, 262_144):  # bounded memory at any n
            m = min(262_144, n - i)
            x = self.seeds[rng.integers(0, s, m)] + self.blend * self.seeds[rng.integers(0, s, m)]
            x += self.noise * rng.standard_normal((m, self.dim), dtype=np.float32) / np.float32(math.sqrt(self.dim))
            out[i : i + m] = _unit(x)
        return out

    def queries(self, n: int) -> tuple[np.ndarray, str]:
        try:
            from search_latency import pubmedqa

            from clinfo.corpus.encoders import get_encoder

            texts = [item["QUESTION"] for item in pubmedqa()][:n]
            enc = get_encoder("all-MiniLM-L6-v2", backend="onnx")
            return np.asarray(
                enc.encode_queries(texts), dtype=np.float32
            ), f"{len(texts)} PubMedQA questions (ONNX MiniLM)"
        except Exception as exc:  # noqa: BLE001 - benchmark fallback, said in the output
            return self.draw(n, seed=7), f"{n} held-out blends (no question encoder: {str(exc)[:80]})"


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def write_chunks(folder: Path, n: int, gen: Any, first_pmid: int = 1_000_000) -> list[tuple[Path, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, start in enumerate(range(0, n, CHUNK)):
        rows = min(CHUNK, n - start)
        v, p = folder / f"embeds_chunk_{i}.npy", folder / f"pmids_chunk_{i}.json"
        if not (v.is_file() and p.is_file()):
            np.save(v, gen.draw(rows, seed=1000 + i))
            p.write_text(json.dumps([str(first_pmid + start + j) for j in range(rows)]))
        out.append((v, p))
    return out


def skeleton_corpus(path: Path, pmids: np.ndarray) -> None:
    """A record store holding only PMIDs (benchmark use: import checks membership against it)."""
    from clinfo.corpus import store

    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    store.create_tables(conn)  # the real schema, so open_corpus and RecordStore accept it
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)", [("schema_version", str(store.SCHEMA_VERSION)), ("generation", "1")]
    )
    codec = store.codec_for(store.packaged_dict())
    body = codec.pack(["", "x", "", "", "", "{}"])
    conn.executemany("INSERT INTO docs VALUES (?, 0, 2020, ?)", ((int(p), body) for p in pmids))
    conn.commit()
    conn.close()
    os.replace(tmp, path)


def _probe(folder: str, queries: str, k: int, exact: bool, advise: bool = True, cold: bool = False) -> dict[str, Any]:
    """Runs in a fresh process: open the index, search every query twice (cold, warm), report.
    ``cold`` first drops the vector file's pages from the page cache (posix_fadvise DONTNEED:
    this file only, the rest of the machine keeps its cache)."""
    from clinfo.corpus import vectors
    from clinfo.corpus.dense import VectorIndex
    from clinfo.corpus.faiss_index import IndexInfo
    from clinfo.corpus.vectors import VectorStore

    if not advise:  # measure what MADV_RANDOM on the vector map saves
        vectors.advise_random = lambda matrix: None
    q = np.load(queries)
    if cold:
        for f in Path(folder).glob("vectors.f*"):
            fd = os.open(f, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
    t0 = time.perf_counter()
    if exact:
        store = VectorStore.open(folder)
        index = VectorIndex(store, IndexInfo(kind="exact", rows=store.rows, vectors=0))
    else:
        index = VectorIndex.open(folder)
    open_s = time.perf_counter() - t0
    results, cold, warm = [], [], []
    first, warm = [], []
    for i in range(len(q)):
        t = time.perf_counter()
        ids, _ = index.search(q[i], k)
        first.append(time.perf_counter() - t)
        results.append(ids.tolist())
    for i in range(len(q)):
        t = time.perf_counter()
        index.search(q[i], k)
        warm.append(time.perf_counter() - t)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mem = {key: int(status[key].split()[0]) * 1024 for key in ("VmHWM", "VmRSS", "RssAnon", "RssFile") if key in status}
    return {
        "open_s": open_s,
        "cold_ms": _pct(first),
        "warm_ms": _pct(warm),
        "mem": mem,
        "results": results,
        "page_cache_dropped": cold,
    }


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1000
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def probe(
    folder: Path, queries: Path, k: int = 10, exact: bool = False, advise: bool = True, cold: bool = False
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--probe", str(folder), "--probe-queries", str(queries), "--k", str(k)]
    cmd += (["--exact"] if exact else []) + ([] if advise else ["--no-advise"]) + (["--cold"] if cold else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sweep(
    folder: Path, q: np.ndarray, truth: np.ndarray, nprobes: list[int], depths: list[int]
) -> list[dict[str, Any]]:
    """recall@10 (after exact rescoring) and warm single-query latency for each (nprobe, rescoring
    depth) on one built index; ``ivf_recall`` is the share of the true top 10 lying in the probed
    lists at all (the ceiling any PQ code size and depth can reach at that nprobe)."""
    import faiss

    from clinfo.corpus.dense import VectorIndex
    from clinfo.corpus.faiss_index import rescore_exact

    vi = VectorIndex.open(folder)
    index = vi.index
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    pre = index if isinstance(index, faiss.IndexPreTransform) else None
    qt = pre.apply_py(q) if pre is not None else q  # rotated queries, as the quantizer sees them
    truth_sets = [set(t.tolist()) for t in truth]
    inv = _list_of_rows(ivf, truth)
    out = []
    for nprobe in nprobes:
        if nprobe > ivf.nlist:
            continue
        _, probed = ivf.quantizer.search(np.ascontiguousarray(qt, dtype=np.float32), nprobe)
        ivf_recall = float(np.mean([np.isin(inv[i], probed[i]).mean() for i in range(len(q))]))
        for depth in depths:
            hits, times = 0, []
            for i in range(len(q)):
                t = time.perf_counter()
                _, cand = index.search(q[i : i + 1], depth, params=vi._params(nprobe))
                rows, _ = rescore_exact(vi._matrix, q[i], cand[0], 10)
                times.append(time.perf_counter() - t)
                hits += len(truth_sets[i] & set(rows.tolist()))
            out.append(
                {
                    "nprobe": nprobe,
                    "depth": depth,
                    "recall10": round(hits / (10 * len(q)), 4),
                    "ivf_recall10": round(ivf_recall, 4),
                    "ms": _pct(times),
                }
            )
            print(
                f"  nprobe {nprobe:5d} depth {depth:5d}: recall@10 {out[-1]['recall10']:.3f} (in probed lists"
                f" {ivf_recall:.3f}); p50 {out[-1]['ms']['p50']:.1f} ms, p99 {out[-1]['ms']['p99']:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    return out


def _list_of_rows(ivf: Any, truth: np.ndarray) -> np.ndarray:
    """The inverted list holding each row of ``truth`` (ids are row numbers)."""
    import faiss

    owner = {}
    wanted = set(truth.ravel().tolist())
    invlists = ivf.invlists
    for lst in range(ivf.nlist):
        size = invlists.list_size(lst)
        if not size:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size)
        for r in set(ids.tolist()) & wanted:
            owner[r] = lst
    return np.vectorize(lambda r: owner.get(int(r), -1))(truth)


def measure(
    n: int,
    dim: int,
    work: Path,
    queries: int = 300,
    exact_probe: bool = False,
    exact_limit: int | None = None,
    import_only: bool = False,
    nlist: int | None = None,
    train_size: int | None = None,
    clusters: int = 4096,
    spread: float = 0.6,
    log: Any = print,
    generator: str = "blend",
    dtype: str = "float16",
    build: dict[str, Any] | None = None,
    sweep_grid: tuple[list[int], list[int]] | None = None,
    advise_both: bool = False,
) -> dict[str, Any]:
    from clinfo.corpus.faiss_index import EXACT_LIMIT, IndexOptions, build_dense_index, exact_top
    from clinfo.corpus.vector_import import import_vectors
    from clinfo.corpus.vectors import VectorStore

    gen: Any = Blend(dim) if generator == "blend" else Synthetic(dim, clusters=clusters, spread=spread)
    base = work / (f"n{n}_d{dim}_blend" if generator == "blend" else f"n{n}_d{dim}_c{clusters}_s{spread}")
    t = time.perf_counter()
    chunks = write_chunks(base / "chunks", n, gen)
    log(f"[{n:,} x {dim}] {generator} chunks ready ({time.perf_counter() - t:.0f} s)")
    pmids = np.arange(1_000_000, 1_000_000 + n, dtype=np.int64)
    db = base / "corpus.db"
    skeleton_corpus(db, pmids)
    folder = Path(f"{db}.dense") / f"synthetic-{dtype}"
    store = VectorStore.open(folder) if (folder / "manifest.sqlite").is_file() else None
    if store is None or store.rows != n or store.dtype != dtype or import_only:
        shutil.rmtree(folder, ignore_errors=True)
        from clinfo.corpus import vectors

        default = vectors.DEFAULT_DTYPE
        vectors.DEFAULT_DTYPE = dtype  # the writer's default for a new set
        try:
            imp = import_vectors(db, chunks, model="synthetic", folder=folder)
        finally:
            vectors.DEFAULT_DTYPE = default
        log(f"[{n:,} x {dim}] {imp.line()}")
        imported = {"import_rows_per_s": round(imp.rate), "import_s": round(imp.seconds, 1)}
    else:
        imported = {"import": "reused"}
    if import_only:
        return {"n": n, "dim": dim, "generator": generator, "dtype": dtype, **imported}
    opts = dict(build or {})
    info = build_dense_index(
        folder,
        IndexOptions(exact_limit=exact_limit or EXACT_LIMIT, nlist=nlist, train_size=train_size, rebuild=True, **opts),
        progress=False,
    )
    log(f"[{n:,} x {dim}] {info.line()}")

    if generator == "blend":
        q, qdesc = gen.queries(queries)
    else:
        q, qdesc = gen.draw(queries, seed=7), f"{queries} held-out draws"
    log(f"[{n:,} x {dim}] queries: {qdesc}")
    qpath = base / "queries.npy"
    np.save(qpath, q)
    store = VectorStore.open(folder)
    t = time.perf_counter()
    truth, _ = exact_top(store.matrix(), q, 10)
    exact_batch_s = time.perf_counter() - t
    truth_pmids = [set((pmids[r]).tolist()) for r in truth]
    res = probe(folder, qpath)
    recall = float(np.mean([len(set(r) & t) / 10 for r, t in zip(res.pop("results"), truth_pmids)]))
    out: dict[str, Any] = {
        "n": n,
        "dim": dim,
        "generator": generator,
        "synthetic": {"clusters": clusters, "spread": spread, "latent": gen.latent}
        if generator != "blend"
        else {"seeds": len(gen.seeds), "real_seeds": gen.real, "blend": gen.blend, "noise": gen.noise},
        "queries": qdesc,
        "dtype": dtype,
        "build_options": opts,
        "load_average": os.getloadavg()[0],
        **imported,
        "index": {k: v for k, v in info.__dict__.items() if k not in ("file", "built")},
        "recall_at_10_vs_exact": round(recall, 4),
        "search": res,
        "exact_batch_s_per_query": round(exact_batch_s / queries, 4),
        "disk_bytes": {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()},
        "exact_limit": EXACT_LIMIT,
    }
    if info.kind != "exact":
        out["resident_index_bytes"] = info.vectors * (info.m * info.nbits // 8 + 8) + info.nlist * dim * 4
    if advise_both and info.kind != "exact":
        # warm (pages cached by the build) and cold (the vector file dropped from the page cache)
        for label, cold in (("warm", False), ("cold", True)):
            for advise in (True, False):
                got = probe(folder, qpath, advise=advise, cold=cold)
                got.pop("results")
                out.setdefault("madvise", {})[f"{label}_{'random' if advise else 'default'}"] = got
    if exact_probe and info.kind != "exact":
        ex = probe(folder, qpath, exact=True)
        ex.pop("results")
        out["exact_search"] = ex
    if sweep_grid and info.kind != "exact":
        out["sweep"] = sweep(folder, q, truth, *sweep_grid)
    log(
        f"[{n:,} x {dim}] recall@10 vs exact {recall:.3f}; warm p50 {res['warm_ms']['p50']:.1f} ms, p99"
        f" {res['warm_ms']['p99']:.1f} ms"
        f" (cold p99 {res['cold_ms']['p99']:.1f} ms); searcher peak RSS {res['mem']['VmHWM'] / 2**20:,.0f} MiB"
        f" (anon {res['mem'].get('RssAnon', 0) / 2**20:,.0f} MiB, mapped file"
        f" {res['mem'].get('RssFile', 0) / 2**20:,.0f} MiB)"
    )
    for key, got in out.get("madvise", {}).items():
        m = got["mem"]
        log(
            f"[{n:,} x {dim}] {key}: peak RSS {m['VmHWM'] / 2**20:,.0f} MiB (mapped file"
            f" {m.get('RssFile', 0) / 2**20:,.0f} MiB);"
            f" first pass p50 {got['cold_ms']['p50']:.1f} ms, p99 {got['cold_ms']['p99']:.1f} ms"
        )
    return out


def extrapolate(r: dict[str, Any], target: int = PUBMED) -> dict[str, Any]:
    """Memory, disk and build time at ``target`` vectors from one measured IVF-PQ size (linear where
    the work is per vector; training grows with nlist x sample), with clinfo's defaults at that size."""
    idx = r["index"]
    n, dim = r["n"], r["dim"]
    if idx["kind"] != "ivfpq":
        return {}
    from clinfo.corpus.faiss_index import default_m, default_nlist, default_rescore, default_train_size

    nlist, m = default_nlist(target), default_m(dim)
    codes = target * (m // 2 + 8)  # 4-bit PQ code + int64 id per vector in the inverted lists
    centroids = nlist * dim * 4
    scale = target / n
    work = default_train_size(nlist) * nlist / (default_train_size(idx["nlist"]) * idx["nlist"])
    return {
        "target": target,
        "nlist": nlist,
        "m": m,
        "rescore": default_rescore(target),
        "resident_index_bytes": codes + centroids,
        "pmid_map_bytes": target * 8,  # the row -> PMID map, memory-mapped (touched per result only)
        "vectors_on_disk_bytes": target * dim * 2,  # float16 rows
        "vectors_on_disk_bytes_float32": target * dim * 4,
        "measured_anon_rss_bytes": r["search"]["mem"].get("RssAnon"),
        "anon_rss_scaled_bytes": int(r["search"]["mem"].get("RssAnon", 0) * scale),
        "train_seconds_scaled": round(idx["train_seconds"] * work, 0),  # k-means work: sample x nlist
        # adding is per vector x log(nlist) with the HNSW quantizer used above 4,096 lists
        "add_seconds_linear": round(idx["add_seconds"] * scale, 0),
    }


def fp16_check(n: int, dim: int, work: Path, queries: int, k: int = 10) -> dict[str, Any]:
    """How storing rows as float16 changes exact search: the top ``k`` over float16 rows against
    the top ``k`` over the same rows in float32, for real PubMedQA questions (blend set)."""
    from clinfo.corpus.faiss_index import exact_top

    gen = Blend(dim)
    base = work / f"n{n}_d{dim}_blend"
    chunks = write_chunks(base / "chunks", n, gen)
    q, qdesc = gen.queries(queries)
    rows32 = np.concatenate([np.load(v, mmap_mode="r") for v, _ in chunks]).astype(np.float32)
    rows32 /= np.linalg.norm(rows32, axis=1, keepdims=True)
    rows16 = rows32.astype(np.float16)
    t32, s32 = exact_top(rows32, q, k)
    t16, s16 = exact_top(rows16, q, k)
    overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(t32, t16)]
    same_order = float(np.mean([np.array_equal(a, b) for a, b in zip(t32, t16)]))
    score_err = float(np.abs(s16 - (rows32[t16] @ q[:, :, None])[..., 0]).max())
    out = {
        "n": n,
        "queries": qdesc,
        f"recall_at_{k}_fp16_vs_fp32": round(float(np.mean(overlap)), 4),
        "same_order_share": round(same_order, 4),
        "max_abs_cosine_error": score_err,
    }
    print(
        f"[{n:,} x {dim}] float16 rows vs float32: recall@{k} {out[f'recall_at_{k}_fp16_vs_fp32']:.4f}, identical"
        f" top-{k} order for"
        f" {same_order:.1%} of {qdesc}, cosines within {score_err:.1e}",
        file=sys.stderr,
    )
    return out


def _ints(text: str | None) -> list[int]:
    return [int(x) for x in text.split(",")] if text else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="vectors (repeatable; default 1,000,000)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--work", type=Path, default=Path("/tmp/clinfo-dense-scale"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument(
        "--generator",
        choices=("blend", "mixture"),
        default="blend",
        help="blend: real MiniLM vectors blended (default); mixture: clusters on a latent subspace",
    )
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="row dtype of the imported set")
    ap.add_argument("--exact-probe", action="store_true", help="also time exact search over the same set")
    ap.add_argument(
        "--exact-limit", type=int, help="build IVF-PQ above this many vectors (default: clinfo's EXACT_LIMIT)"
    )
    ap.add_argument("--nlist", type=int, help="IVF lists (default: clinfo's)")
    ap.add_argument("--train-size", type=int, help="training sample (default: clinfo's)")
    ap.add_argument("--m", type=int, help="PQ sub-quantisers (default: clinfo's)")
    ap.add_argument("--nbits", type=int, help="bits per PQ code (default: clinfo's)")
    ap.add_argument("--opq", action="store_true", default=None, help="OPQ rotation before PQ")
    ap.add_argument("--rescore", type=int, help="candidates rescored exactly (default: clinfo's for the size)")
    ap.add_argument("--max-nprobe", type=int, help="largest nprobe the tuner tries (default: clinfo's)")
    ap.add_argument(
        "--old",
        action="store_true",
        help="the parameters before recall scaling: IVF ~4 sqrt(N), PQ64, 30 samples per list, rescoring 200,"
        " nprobe <= 2048",
    )
    ap.add_argument("--sweep-nprobe", help="comma-separated nprobe values to sweep on the built index")
    ap.add_argument("--sweep-depth", default="200,500,1000", help="comma-separated rescoring depths for --sweep-nprobe")
    ap.add_argument(
        "--madvise-both", action="store_true", help="also probe without MADV_RANDOM on the vector map, warm and cold"
    )
    ap.add_argument("--fp16-check", action="store_true", help="only compare exact search over float16 and float32 rows")
    ap.add_argument("--clusters", type=int, default=4096, help="clusters of the mixture generator")
    ap.add_argument(
        "--spread", type=float, default=0.6, help="within-cluster spread of the mixture generator (higher: harder)"
    )
    ap.add_argument("--import-only", action="store_true", help="stop after measuring the import")
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--probe-queries", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=10, help=argparse.SUPPRESS)
    ap.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-advise", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(
            json.dumps(
                _probe(args.probe, args.probe_queries, args.k, args.exact, advise=not args.no_advise, cold=args.cold)
            )
        )
        return
    print(
        f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; vectors are SYNTHETIC ({args.generator})",
        file=sys.stderr,
    )
    if args.fp16_check:
        print(json.dumps([fp16_check(n, args.dim, args.work, args.queries) for n in args.n or [1_000_000]]))
        return
    results = []
    for n in args.n or [1_000_000]:
        build: dict[str, Any] = {}
        nlist, train = args.nlist, args.train_size
        if args.old:
            nlist = nlist or int(min(65536, max(64, 2 ** round(math.log2(4 * math.sqrt(n))))))
            train = train or max(65_536, min(1_000_000, 30 * nlist))
            build.update(m=64, nbits=8, rescore=200, max_nprobe=2048)
        for key in ("m", "nbits", "opq", "rescore", "max_nprobe"):
            if getattr(args, key) is not None:
                build[key] = getattr(args, key)
        grid = (_ints(args.sweep_nprobe), _ints(args.sweep_depth)) if args.sweep_nprobe else None
        r = measure(
            n,
            args.dim,
            args.work,
            args.queries,
            args.exact_probe,
            args.exact_limit,
            args.import_only,
            nlist,
            train,
            args.clusters,
            args.spread,
            log=lambda s: print(s, file=sys.stderr, flush=True),
            generator=args.generator,
            dtype=args.dtype,
            build=build,
            sweep_grid=grid,
            advise_both=args.madvise_both,
        )
        if "index" in r:
            r["extrapolated"] = extrapolate(r)
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
