"""Dense retrieval at scale, on SYNTHETIC vectors: import throughput, index build time, recall@10
against exact search, query latency and resident memory, extrapolated to PubMed's 37M.

    python benchmarks/dense_scale.py --n 1000000 --n 3000000 [--dim 384] [--work DIR] [--queries 300]

Per size N it writes N synthetic vectors as MedCPT-style chunks (1M-row float32 ``.npy`` + PMID
JSON), imports them with ``clinfo.corpus.vectors.import_vectors`` into a skeleton corpus (a
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
        z = self.centres[rng.integers(0, self.clusters, n)] + self.spread * rng.standard_normal((n, self.latent), dtype=np.float32)
        x = z @ self.proj
        x += 0.15 * rng.standard_normal((n, self.dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x


def write_chunks(folder: Path, n: int, gen: Synthetic, first_pmid: int = 1_000_000) -> list[tuple[Path, Path]]:
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
    for ddl in store._DDL:  # the real schema, so open_corpus and RecordStore accept it
        conn.execute(ddl)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", str(store.SCHEMA_VERSION)), ("generation", "1")])
    conn.executemany(
        "INSERT INTO docs VALUES (?, 0, 2020, '', 'x', '', '', '', '{}')", ((int(p),) for p in pmids)
    )
    conn.commit()
    conn.close()
    os.replace(tmp, path)


def _probe(folder: str, queries: str, k: int, exact: bool) -> dict[str, Any]:
    """Runs in a fresh process: open the index, search every query twice (cold, warm), report."""
    from clinfo.corpus.dense import IndexInfo, VectorIndex
    from clinfo.corpus.vectors import VectorStore

    q = np.load(queries)
    t0 = time.perf_counter()
    if exact:
        store = VectorStore.open(folder)
        index = VectorIndex(store, IndexInfo("exact", store.rows, 0))
    else:
        index = VectorIndex.open(folder)
    open_s = time.perf_counter() - t0
    results, cold, warm = [], [], []
    for i in range(len(q)):
        t = time.perf_counter()
        ids, _ = index.search(q[i], k)
        cold.append(time.perf_counter() - t)
        results.append(ids.tolist())
    for i in range(len(q)):
        t = time.perf_counter()
        index.search(q[i], k)
        warm.append(time.perf_counter() - t)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mem = {key: int(status[key].split()[0]) * 1024 for key in ("VmHWM", "VmRSS", "RssAnon", "RssFile") if key in status}
    return {"open_s": open_s, "cold_ms": _pct(cold), "warm_ms": _pct(warm), "mem": mem, "results": results}


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1000
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def probe(folder: Path, queries: Path, k: int = 10, exact: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--probe", str(folder), "--probe-queries", str(queries), "--k", str(k)] + (["--exact"] if exact else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
) -> dict[str, Any]:
    from clinfo.corpus.dense import EXACT_LIMIT, build_dense_index, exact_top
    from clinfo.corpus.vectors import VectorStore, import_vectors

    gen = Synthetic(dim, clusters=clusters, spread=spread)
    base = work / f"n{n}_d{dim}_c{clusters}_s{spread}"
    t = time.perf_counter()
    chunks = write_chunks(base / "chunks", n, gen)
    log(f"[{n:,} x {dim}] synthetic chunks ready ({time.perf_counter() - t:.0f} s)")
    pmids = np.arange(1_000_000, 1_000_000 + n, dtype=np.int64)
    db = base / "corpus.db"
    skeleton_corpus(db, pmids)
    folder = Path(f"{db}.dense") / "synthetic"
    shutil.rmtree(folder, ignore_errors=True)
    imp = import_vectors(db, chunks, model="synthetic", folder=folder)
    log(f"[{n:,} x {dim}] {imp.line()}")
    if import_only:
        return {"n": n, "dim": dim, "synthetic": True, "import_rows_per_s": round(imp.rate), "import_s": round(imp.seconds, 1)}
    info = build_dense_index(folder, exact_limit=exact_limit or EXACT_LIMIT, nlist=nlist, train_size=train_size, progress=False)
    log(f"[{n:,} x {dim}] {info.line()}")

    q = gen.draw(queries, seed=7)  # held out: new draws, not rows of the set
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
        "synthetic": {"clusters": clusters, "spread": spread, "latent": gen.latent},
        "load_average": os.getloadavg()[0],
        "import_rows_per_s": round(imp.rate),
        "import_s": round(imp.seconds, 1),
        "index": {k: v for k, v in info.__dict__.items() if k not in ("file", "built")},
        "recall_at_10_vs_exact": round(recall, 4),
        "search": res,
        "exact_batch_s_per_query": round(exact_batch_s / queries, 4),
        "disk_bytes": {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()},
        "exact_limit": EXACT_LIMIT,
    }
    if exact_probe and info.kind != "exact":
        ex = probe(folder, qpath, exact=True)
        ex.pop("results")
        out["exact_search"] = ex
    log(
        f"[{n:,} x {dim}] recall@10 vs exact {recall:.3f}; warm p50 {res['warm_ms']['p50']:.1f} ms, p99 {res['warm_ms']['p99']:.1f} ms"
        f" (cold p99 {res['cold_ms']['p99']:.1f} ms); searcher peak RSS {res['mem']['VmHWM'] / 2**20:,.0f} MiB"
        f" (anon {res['mem'].get('RssAnon', 0) / 2**20:,.0f} MiB, mapped file {res['mem'].get('RssFile', 0) / 2**20:,.0f} MiB)"
    )
    return out


def extrapolate(r: dict[str, Any], target: int = PUBMED) -> dict[str, Any]:
    """Memory and build time at ``target`` vectors from one measured IVF-PQ size (linear where the
    work is per vector; training grows with nlist ~ sqrt(N) at a fixed sample per list)."""
    idx = r["index"]
    n, dim = r["n"], r["dim"]
    if idx["kind"] != "ivfpq":
        return {}
    from clinfo.corpus.dense import default_nlist

    nlist = default_nlist(target)
    codes = target * (idx["m"] + 8)  # PQ code + int64 id per vector in the inverted lists
    centroids = nlist * dim * 4
    rows = target * 8  # the row -> PMID map, memory-mapped (touched per result only)
    scale = target / n
    return {
        "target": target,
        "nlist": nlist,
        "resident_index_bytes": codes + centroids,
        "pmid_map_bytes": rows,
        "vectors_on_disk_bytes": target * dim * 4,
        "measured_anon_rss_bytes": r["search"]["mem"].get("RssAnon"),
        "anon_rss_scaled_bytes": int(r["search"]["mem"].get("RssAnon", 0) * scale),
        # adding is per vector x nlist for a flat quantizer; above 8192 lists the quantizer is HNSW (log nlist)
        "add_seconds_linear": round(idx["add_seconds"] * scale, 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append", help="vectors (repeatable; default 1,000,000)")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--work", type=Path, default=Path("/tmp/clinfo-dense-scale"))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--exact-probe", action="store_true", help="also time exact search over the same set")
    ap.add_argument("--exact-limit", type=int, help="build IVF-PQ above this many vectors (default: clinfo's EXACT_LIMIT)")
    ap.add_argument("--nlist", type=int, help="IVF lists (default: clinfo's, ~4 sqrt(N))")
    ap.add_argument("--train-size", type=int, help="training sample (default: clinfo's, 30 per list)")
    ap.add_argument("--clusters", type=int, default=4096, help="clusters of the synthetic generator")
    ap.add_argument("--spread", type=float, default=0.6, help="within-cluster spread of the generator (higher: harder)")
    ap.add_argument("--import-only", action="store_true", help="stop after measuring the import")
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--probe-queries", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=10, help=argparse.SUPPRESS)
    ap.add_argument("--exact", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(_probe(args.probe, args.probe_queries, args.k, args.exact)))
        return
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}; vectors are SYNTHETIC", file=sys.stderr)
    results = []
    for n in args.n or [1_000_000]:
        r = measure(n, args.dim, args.work, args.queries, args.exact_probe, args.exact_limit, args.import_only, args.nlist, args.train_size, args.clusters, args.spread, log=lambda s: print(s, file=sys.stderr, flush=True))
        if "index" in r:
            r["extrapolated"] = extrapolate(r)
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
