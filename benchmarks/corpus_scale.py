#!/usr/bin/env python
"""Corpus scale: build, import vectors and search corpora of 100k, 1M and 3M citations; extrapolate to 37M.

Corpora: the real NLM baseline records replicated under new PMIDs (``benchmarks/replicate.py``,
whole copies, so a size is rounded up to a whole number of copies of the ~33k base records).
For each size it prints:

* lexical build (``build_index`` in a child process): citations/s, CPU seconds, peak RSS of the
  writer and of the largest parser worker, disk (SQLite records + Tantivy index);
* vectors: MedCPT-style chunks (float32 ``.npy`` + JSON PMID list, 500k rows each) imported with
  ``clinfo index import-vectors --no-index`` (vectors/s, peak RSS), then the dense index built by
  ``clinfo index import-vectors CORPUS`` (exact up to 200k vectors, IVF-PQ above: train/add/tune
  seconds, nprobe, peak RSS), disk of the vector set;
* search, warm, in a fresh process per mode (bm25, dense, hybrid) through ``LocalSource``, top 20:
  p50/p99 of 500 planner-style PubMed queries and of 500 natural-language questions (PubMedQA),
  each set run once untimed first; peak RSS (VmHWM) of that search process;
* dense recall@10 of the index against exact search over the same vectors (the same 1,000 queries);
* the extrapolation to 37M citations.

The vectors are SYNTHETIC unless said otherwise, and the printout says which: replicas have no
encoded text of their own. Each base record gets a seed vector: its real all-MiniLM-L6-v2 vector
where ``--seed-vectors`` holds one (chunks of real vectors of the baseline records), else a
synthetic one near the real ones (the normalised mean of 3 random real seeds plus a little
noise), else (no real vectors at all) a point of a random cluster. Copy 0 (the real PMIDs) gets
the seed itself; copy k > 0 gets ``normalise(seed + 0.7 * other + 0.1 * noise)``, ``other`` the
seed of a random base record (median cosine 0.84 to its seed and 0.73 between two copies; a real
record's nearest real neighbour: 0.68): replicas are distinct points among real embeddings.
Isotropic noise instead (``seed + 0.75 * noise``, the first version) gives
vectors of a far higher intrinsic dimension than text embeddings have; on those the 1M IVF-PQ
index reached recall@10 0.944 only at nprobe 2,048 of 4,096 lists. Query vectors are real (the
encoder runs on each question, inside the timed search).

The machine is shared: the load average is printed with every figure. Results are kept in
``WORK/results.json`` and a step whose result is there (and whose corpus still exists) is not
run again (``--redo`` forces it), so sizes can be run one at a time and printed together.

    python benchmarks/corpus_scale.py --sizes 100k,1m,3m --work /work/bench/scale
    python benchmarks/corpus_scale.py --sizes 3m --steps build --work /work/bench/scale   # lexical only
    python benchmarks/corpus_scale.py --report --work /work/bench/scale                  # print what is kept
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# after the sys.path lines: benchmarks/ is not a package
from replicate import OFFSET, replicate  # noqa: E402
from search_latency import boolean_query, percentile, pubmedqa  # noqa: E402

TARGET = 37_000_000  # citations in PubMed, roughly
MODEL = "all-MiniLM-L6-v2"
DIM = 384
CHUNK_ROWS = 500_000
BLEND = 0.7  # weight of another record's seed in a replica
NOISE = 0.1  # isotropic noise, norm ~NOISE
MODES = ("bm25", "dense", "hybrid")
COMMON = ["patients", "treatment", "study", "results", "clinical", "disease", "risk", "children", "women", "therapy"]
DEFAULT_SEEDS = Path("/work/bench/vectors") / MODEL


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def label(size: int) -> str:
    return f"{size // 1_000_000}m" if size % 1_000_000 == 0 else f"{size // 1000}k"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def head() -> str:
    """The checkout's commit (engines change under a long run; each step records the one it ran on)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _hwm_mb(pid: int) -> float:
    """VmHWM (peak RSS) of a running process; 0 once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_measured(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd``; its output, wall seconds, CPU seconds and peak RSS.

    The peak is the child's own VmHWM, polled while it runs (a high-water mark: only growth in its
    last 50 ms can be missed), not wait4's ru_maxrss: Linux carries the parent's peak RSS into the
    child's at exec, so ru_maxrss reported this driver's memory (1.2 GB at 100k, 4.7 GB at 1M, the
    same figure for the vector import and the index build) instead of the command's.
    """
    import threading

    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    assert p.stdout is not None
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(p.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, _hwm_mb(p.pid))
        time.sleep(0.05)
    reader.join()
    out = b"".join(chunks).decode("utf-8", "replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... failed ({p.returncode}):\n{out[-3000:]}")
    return {
        "out": out,
        "wall_s": time.perf_counter() - t0,
        "rss_mb": peak,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def child(step: str, *args: str) -> dict[str, Any]:
    """Run one of this script's child steps in a fresh interpreter; its JSON result."""
    res = run_measured([sys.executable, str(Path(__file__).resolve()), f"_{step}", *args])
    return json.loads(res["out"].strip().splitlines()[-1]) | {"rss_process_mb": res["rss_mb"]}


# ---------------------------------------------------------------------------------------- queries


def query_sets(n: int, seed: int) -> dict[str, list[str]]:
    """500 planner-style PubMed queries (4 in 5 built from a PubMedQA item's MeSH and words, with
    OR groups, truncation, dates, NOT; 1 in 5 two common words) and 500 PubMedQA questions."""
    rng = random.Random(seed)
    items = rng.sample(pubmedqa(), n)
    planner = [
        " AND ".join(f"{w}[tiab]" for w in rng.sample(COMMON, 2)) if rng.random() < 0.2 else boolean_query(it, rng)
        for it in items
    ]
    return {"planner": planner, "natural": [it["QUESTION"] for it in items]}


# ------------------------------------------------------------------------------------ child steps


def _build(out: str, *files: str) -> None:
    from clinfo.corpus.build import build_index

    c0 = os.times()
    s = build_index(list(files), out, progress=False)
    c1 = os.times()
    print(
        json.dumps(
            {
                "citations": s.citations_read,
                "articles": s.articles,
                "seconds": s.seconds,
                "cpu_writer_s": (c1.user - c0.user) + (c1.system - c0.system),
                "cpu_parsers_s": (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system),
                # VmHWM, not ru_maxrss: that one starts from the driver's peak (see run_measured).
                "rss_writer_mb": _status_mb(),
                "rss_parser_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "line": s.line(),
            }
        )
    )


def _status_mb(key: str = "VmHWM") -> float:
    """A memory figure of this process from /proc (VmHWM: peak RSS; RssAnon; RssFile: mapped file pages)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if key == "VmHWM" else 0.0


def _search(corpus: str, mode: str, n: str, seed: str, k: str) -> None:
    from clinfo.sources.corpus import LocalSource

    sets = query_sets(int(n), int(seed))
    t0 = time.perf_counter()
    src = LocalSource(corpus, mode=mode)  # type: ignore[arg-type]
    result: dict[str, Any] = {"open_s": time.perf_counter() - t0, "rss_open_mb": _status_mb(), "load_before": load()}
    for name, queries in sets.items():
        for q in queries:  # warm: page cache, vocabulary, encoder
            src.search_sync(q, limit=int(k))
        times, cpu, zero = [], [], 0
        for q in queries:
            t, c = time.perf_counter(), time.process_time()
            r = src.search_sync(q, limit=int(k))
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)  # all threads; less affected by other work than wall time
            zero += not r.pmids
        result[name] = {
            "p50": percentile(times, 50),
            "p99": percentile(times, 99),
            "max": max(times),
            "mean": sum(times) / len(times),
            "cpu_p50": percentile(cpu, 50),
            "cpu_p99": percentile(cpu, 99),
            "zero": zero,
        }
    result.update(rss_mb=_status_mb(), rss_anon_mb=_status_mb("RssAnon"), rss_file_mb=_status_mb("RssFile"))
    result["load_after"] = load()
    print(json.dumps(result))


def _recall(corpus: str, n: str, seed: str) -> None:
    """Dense recall@10 of the built index against exact search over the same vectors."""
    import numpy as np

    from clinfo.corpus.dense import DenseIndex
    from clinfo.corpus.faiss_index import exact_top
    from clinfo.pubmed.query import is_boolean, terms

    d = DenseIndex.open(corpus)
    vi = d.vindex
    texts = [" ".join(terms(q)) if is_boolean(q) else q for qs in query_sets(int(n), int(seed)).values() for q in qs]
    texts = [t for t in texts if t.strip()]
    q = np.stack([d.encode_query(t) for t in texts]).astype(np.float32)
    store = vi.store
    live = store.live_rows()
    mask = None
    if len(live) < store.rows:
        mask = np.zeros(store.rows, dtype=bool)
        mask[live] = True
    t0 = time.perf_counter()
    exact_rows, _ = exact_top(store.matrix(), q, 10, mask)
    exact_s = time.perf_counter() - t0
    pmids = store.pmids()
    hits = 0
    for i in range(len(q)):
        got, _ = vi.search(q[i], 10)
        hits += len(set(got.tolist()) & set(np.asarray(pmids[exact_rows[i]]).tolist()))
    print(
        json.dumps(
            {
                "kind": vi.info.kind,
                "queries": len(q),
                "recall10": hits / (10 * len(q)),
                "exact_batch_s": exact_s,
                "nprobe": vi.info.nprobe,
            }
        )
    )


# ---------------------------------------------------------------------------------------- vectors


def real_seeds(folder: Path | None, bases: Any) -> dict[int, Any]:
    """Real vectors of base records found in ``folder`` (``*.npy`` + ``*.json`` chunk pairs)."""
    import numpy as np

    out: dict[int, Any] = {}
    if folder is None or not folder.is_dir():
        return out
    wanted = {int(b) for b in bases}
    for js in sorted(folder.glob("*.json")):
        npy = js.with_suffix(".npy")
        if not npy.is_file():
            continue
        ids = json.loads(js.read_text())
        mat = np.load(npy, mmap_mode="r")
        if mat.ndim != 2 or mat.shape[1] != DIM or len(ids) != len(mat):
            continue
        for i, p in enumerate(ids):
            if int(p) in wanted:
                out[int(p)] = np.asarray(mat[i], dtype=np.float32)
    return out


def _normalise(m: Any) -> Any:
    import numpy as np

    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def replica_pmids(files: list[Path]) -> Any:
    """The PMIDs a corpus built from ``replicate``'s files holds, ascending: copy k of base b is b + k * OFFSET."""
    import numpy as np

    with files[0].open("rb") as fh:
        base = np.sort(np.array([json.loads(line)["pmid"] for line in fh if line.strip()], dtype=np.int64))
    return np.concatenate([base + k * OFFSET for k in range(len(files))])


def write_chunks(pmids: Any, folder: Path, seed_dir: Path | None, seed: int = 0) -> dict[str, Any]:
    """MedCPT-style chunks of (synthetic) vectors for ``pmids``, with a manifest.json; reused when complete."""
    import numpy as np

    manifest = folder / "manifest.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        if (
            made["rows"] == len(pmids)
            and made.get("generator")
            and all(Path(f).is_file() for pair in made["files"] for f in pair)
        ):
            return made
    t0 = time.perf_counter()
    bases, base_idx = np.unique(pmids % OFFSET, return_inverse=True)
    real = real_seeds(seed_dir, bases)
    rng = np.random.default_rng(seed)
    seeds = np.empty((len(bases), DIM), dtype=np.float32)
    have = np.array([int(b) in real for b in bases])
    for i in np.flatnonzero(have):
        seeds[i] = real[int(bases[i])]
    missing = np.flatnonzero(~have)
    if len(real):
        pool = seeds[have]
        mix = pool[rng.integers(0, len(pool), size=(len(missing), 3))].mean(axis=1)
        seeds[missing] = mix + NOISE * rng.standard_normal((len(missing), DIM), dtype=np.float32) / np.sqrt(DIM)
    else:
        centres = _normalise(rng.standard_normal((1024, DIM), dtype=np.float32))
        seeds[missing] = centres[rng.integers(0, 1024, len(missing))] + 0.75 * rng.standard_normal(
            (len(missing), DIM), dtype=np.float32
        ) / np.sqrt(DIM)
    seeds = _normalise(seeds)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for c, start in enumerate(range(0, len(pmids), CHUNK_ROWS)):
        part = slice(start, start + CHUNK_ROWS)
        vec = seeds[base_idx[part]]
        copy = pmids[part] // OFFSET
        noisy = copy > 0
        others = seeds[rng.integers(0, len(seeds), int(noisy.sum()))]
        vec[noisy] += BLEND * others + NOISE * rng.standard_normal(
            (int(noisy.sum()), DIM), dtype=np.float32
        ) / np.float32(np.sqrt(DIM))
        vec = _normalise(vec)
        npy, js = folder / f"embeds_chunk_{c}.npy", folder / f"pmids_chunk_{c}.json"
        np.save(npy, vec.astype(np.float32))
        js.write_text(json.dumps([int(p) for p in pmids[part]]))
        files.append((str(npy), str(js)))
    made = {
        "rows": len(pmids),
        "bases": len(bases),
        "real_seeds": int(have.sum()),
        "generator": f"seed + {BLEND} x other seed + {NOISE} x noise",
        "files": files,
        "write_s": time.perf_counter() - t0,
    }
    manifest.write_text(json.dumps(made))
    return made


def stored_dtype(dense: Path) -> str:
    """The dtype the imported set stores its rows in (float32 chunks become float16 rows since schema v3)."""
    from clinfo.corpus.vectors import VectorStore

    manifest = next(dense.rglob("manifest.sqlite"), None)
    return str(VectorStore.open(manifest.parent).matrix().dtype) if manifest else "unknown"


# ---------------------------------------------------------------------------------------- driver


class Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, size: str, step: str) -> Any:
        return self.data.get(size, {}).get(step)

    def put(self, size: str, step: str, value: Any) -> None:
        self.drop(size, (), value={step: value})

    def drop(self, size: str, steps: tuple[str, ...], value: dict[str, Any] | None = None) -> None:
        """Remove ``steps`` of ``size`` (results that a rebuilt step made stale), add ``value``."""
        # Re-read first: another run (another size) may have written since this one started.
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        entry = self.data.setdefault(size, {})
        for step in steps:
            entry.pop(step, None)
        for step, v in (value or {}).items():
            entry[step] = {**v, "commit": head()} if isinstance(v, dict) else v
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def run_size(size: int, args: argparse.Namespace, res: Results) -> None:
    name = label(size)
    work: Path = args.work
    corpus = work / f"corpus_{name}.db"
    steps = set(args.steps.split(","))
    if "build" in steps and ("build" in args.redo or res.get(name, "build") is None or not corpus.is_file()):
        for p in (corpus, Path(f"{corpus}.tantivy"), Path(f"{corpus}.dense")):
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        files = replicate(size, work / "jsonl")
        print(f"[{name}] building from {len(files)} copies ... (load {load()})", file=sys.stderr, flush=True)
        before = load()
        r = child("build", str(corpus), *map(str, files))
        r.update(
            load_before=before,
            load_after=load(),
            records_bytes=corpus.stat().st_size,
            lexical_bytes=dir_bytes(Path(f"{corpus}.tantivy")),
        )
        res.drop(name, ("vectors", "index", "recall", *MODES), value={"build": r})
    chunks = work / f"chunks_{name}"
    if "chunks" in steps or ("vectors" in steps and ("vectors" in args.redo or res.get(name, "vectors") is None)):
        # Not timed as import: this stands in for downloading MedCPT's chunks. Needs only the JSON Lines.
        print(f"[{name}] writing vector chunks ... (load {load()})", file=sys.stderr, flush=True)
        made = write_chunks(replica_pmids(replicate(size, work / "jsonl")), chunks, args.seed_vectors)
    if not corpus.is_file():
        print(f"[{name}] no corpus at {corpus}: run the build step first", file=sys.stderr)
        return
    if "vectors" in steps and ("vectors" in args.redo or res.get(name, "vectors") is None):
        shutil.rmtree(Path(f"{corpus}.dense"), ignore_errors=True)
        made = dict(made)
        cmd = [sys.executable, "-m", "clinfo", "index", "import-vectors", str(corpus), "--no-index", "-q"]
        for npy, js in made.pop("files"):
            cmd += ["--vectors", npy, "--pmids", js]
        print(f"[{name}] importing {made['rows']:,} vectors ... (load {load()})", file=sys.stderr, flush=True)
        before = load()
        r = run_measured(cmd)
        made.update(
            import_wall_s=r["wall_s"],
            import_cpu_s=r["cpu_s"],
            import_rss_mb=r["rss_mb"],
            import_line=r["out"].strip().splitlines()[-1],
            load_before=before,
            load_after=load(),
        )
        made["stored_dtype"] = stored_dtype(Path(f"{corpus}.dense"))
        res.drop(name, ("index",), value={"vectors": made})
        if not args.keep_chunks:
            shutil.rmtree(chunks)
    if "vectors" in steps and ("vectors" in args.redo or res.get(name, "index") is None) and res.get(name, "vectors"):
        print(f"[{name}] building the dense index ... (load {load()})", file=sys.stderr, flush=True)
        before = load()
        r = run_measured([sys.executable, "-m", "clinfo", "index", "import-vectors", str(corpus), "-q"])
        info = json.loads(next(Path(f"{corpus}.dense").rglob("index.json")).read_text())
        res.put(
            name,
            "index",
            {
                "wall_s": r["wall_s"],
                "cpu_s": r["cpu_s"],
                "rss_mb": r["rss_mb"],
                "line": r["out"].strip().splitlines()[-1],
                "info": info,
                "dense_bytes": dir_bytes(Path(f"{corpus}.dense")),
                "load_before": before,
                "load_after": load(),
            },
        )
        res.drop(name, ("recall", "dense", "hybrid"))
    if "search" in steps:
        for mode in MODES:
            if mode != "bm25" and res.get(name, "index") is None:
                continue
            if "search" in args.redo or res.get(name, mode) is None:
                print(f"[{name}] searching, {mode} ... (load {load()})", file=sys.stderr, flush=True)
                res.put(name, mode, child("search", str(corpus), mode, str(args.n), str(args.seed), str(args.k)))
        if res.get(name, "index") is not None and ("search" in args.redo or res.get(name, "recall") is None):
            print(f"[{name}] dense recall@10 against exact ... (load {load()})", file=sys.stderr, flush=True)
            res.put(name, "recall", child("recall", str(corpus), str(args.n), str(args.seed)))


def report(res: Results) -> None:
    sizes = sorted(res.data, key=lambda s: res.data[s].get("build", {}).get("articles", 0))
    gb = 1e9
    print(f"corpus scale (cpus={os.cpu_count()}; machine shared: load averages in brackets)")
    for name in sizes:
        d = res.data[name]
        b = d.get("build")
        if not b:
            continue
        cit = b["articles"]
        print(f"\n== {name}: {cit:,} citations (real baseline records replicated under new PMIDs)")
        cpu = b["cpu_writer_s"] + b["cpu_parsers_s"]
        print(
            f"lexical build   {b['citations'] / b['seconds']:,.0f} citations/s ({b['seconds']:.0f} s wall,"
            f" {b['citations'] / cpu:,.0f} per cpu-s)"
            f"; peak RSS writer {b['rss_writer_mb']:,.0f} MB, parser worker {b['rss_parser_mb']:,.0f} MB"
            f"; disk {(b['records_bytes'] + b['lexical_bytes']) / gb:.2f} GB"
            f" (records {b['records_bytes'] / gb:.2f}, lexical {b['lexical_bytes'] / gb:.2f})"
            f"  [load {b['load_before']}->{b['load_after']}]"
        )
        v = d.get("vectors")
        if v:
            print(
                f"vectors         SYNTHETIC {v['rows']:,} x {DIM}, float32 chunks stored as"
                f" {v.get('stored_dtype', '(dtype not recorded)')} rows ({MODEL} space;"
                f" {v['real_seeds']:,} of {v['bases']:,} base records seeded by their real vector,"
                f" the rest near them; copies: {v.get('generator', 'seed + 0.75 x noise')})"
            )
            cpu = f", {v['rows'] / v['import_cpu_s']:,.0f} per cpu-s" if v.get("import_cpu_s") else ""
            print(
                f"  import        {v['rows'] / v['import_wall_s']:,.0f} vectors/s over the CLI process wall"
                f" ({v['import_wall_s']:.1f} s{cpu}); peak RSS {v['import_rss_mb']:,.0f} MB"
                f"  [load {v['load_before']}->{v['load_after']}]"
            )
            print(f"                {v['import_line']}")
        ix = d.get("index")
        if ix:
            i = ix["info"]
            extra = (
                f" IVF{i.get('nlist')},PQ{i.get('m')}{'x4fs' if i.get('nbits') == 4 else ''},"
                f" nprobe {i.get('nprobe')}, rescore {i.get('rescore')},"
                f" train {i.get('train_seconds')} s,"
                f" add {i.get('add_seconds')} s, build-time recall@10 {i.get('recall_at_10')};"
                if i.get("kind") == "ivfpq"
                else ""
            )
            print(
                f"  dense index   {i.get('kind')}: {ix['wall_s']:.0f} s wall, peak RSS {ix['rss_mb']:,.0f} MB;{extra}"
                f" disk {ix['dense_bytes'] / gb:.2f} GB  [load {ix['load_before']}->{ix['load_after']}]"
            )
        for mode in MODES:
            s = d.get(mode)
            if not s:
                continue
            print(
                f"search {mode:7s} planner p50 {s['planner']['p50']:6.1f} p99 {s['planner']['p99']:6.1f} ms"
                f" (cpu {s['planner'].get('cpu_p50', 0):.1f}/{s['planner'].get('cpu_p99', 0):.1f};"
                f" zero-hit {s['planner']['zero']})"
                f" | natural p50 {s['natural']['p50']:6.1f} p99 {s['natural']['p99']:6.1f} ms"
                f" (cpu {s['natural'].get('cpu_p50', 0):.1f}/{s['natural'].get('cpu_p99', 0):.1f})"
                f" | peak RSS {s['rss_mb']:,.0f} MB (end: anon {s.get('rss_anon_mb', 0):,.0f},"
                f" mapped files {s.get('rss_file_mb', 0):,.0f}; open {s['open_s']:.1f} s)"
                f"  [load {s['load_before']}->{s['load_after']}]"
            )
        r = d.get("recall")
        if r:
            print(
                f"dense recall@10 vs exact: {r['recall10']:.4f} over {r['queries']} queries"
                f" ({r['kind']}{', nprobe ' + str(r['nprobe']) if r['kind'] == 'ivfpq' else ''})"
            )
    extrapolate(res, sizes)


def _train_sample(nlist: int) -> int:
    from clinfo.corpus.faiss_index import default_train_size

    return default_train_size(nlist)  # build_dense_index's default


def extrapolate(res: Results, sizes: list[str]) -> None:
    """37M from the largest measured corpus: per-citation costs linearly, IVF-PQ training by its
    k-means work (sample x nlist), search memory from the anonymous RSS plus the PQ codes."""
    from clinfo.corpus.faiss_index import default_m, default_nlist
    from clinfo.corpus.vectors import DEFAULT_DTYPE

    built = [(res.data[s]["build"]["articles"], res.data[s]) for s in sizes if res.data[s].get("build")]
    if not built:
        return
    n, d = built[-1]
    f = TARGET / n
    b = d["build"]
    lex_gb = (b["records_bytes"] + b["lexical_bytes"]) * f / 1e9
    cpu = b["cpu_writer_s"] + b["cpu_parsers_s"]
    print(
        f"\n== extrapolated to {TARGET / 1e6:.0f}M citations from the {n:,} corpus"
        " (every citation stored: an upper bound, the corpus keeps only those with an abstract)"
    )
    print(
        f"lexical build   {TARGET / (b['citations'] / b['seconds']) / 3600:.1f} h at the measured wall rate,"
        f" {TARGET / (b['citations'] / cpu) / 3600:.1f} CPU-hours"
        f" (JSON Lines input; XML parsing costs more, see benchmarks/index_build.py); disk {lex_gb:.0f} GB"
        f" (records {b['records_bytes'] * f / 1e9:.0f}, lexical {b['lexical_bytes'] * f / 1e9:.0f})"
    )
    nlist = default_nlist(TARGET)
    row_bytes = 2 if DEFAULT_DTYPE == "float16" else 4  # vector sets are written as float16 rows
    for dim, model in ((384, MODEL), (768, "MedCPT (768-d)")):
        m = default_m(dim)  # 4-bit fast-scan codes: m / 2 bytes per vector, plus an 8-byte id
        vec_gb = TARGET * (dim * row_bytes + 8) / 1e9
        codes_gb = TARGET * (m // 2 + 8) / 1e9
        print(
            f"vectors {model:15s} {vec_gb:.0f} GB {DEFAULT_DTYPE} rows + PMIDs on disk,"
            f" IVF{nlist},PQ{m}x4fs index {codes_gb + nlist * dim * 4 / 1e9:.1f} GB"
            f" (in RAM when searching); all on disk with the lexical corpus: {lex_gb + vec_gb + codes_gb:.0f} GB"
        )
    v = d.get("vectors")
    if v:
        rate = v["rows"] / v["import_wall_s"]
        print(f"vector import   {TARGET / rate / 60:.0f} min at the measured {rate:,.0f} vectors/s")
    ix = d.get("index")
    if ix and ix["info"].get("kind") == "ivfpq":
        i = ix["info"]
        k = (_train_sample(nlist) * nlist) / (_train_sample(i["nlist"]) * i["nlist"])
        print(
            f"dense index     train ~{i['train_seconds'] * k / 3600:.1f} h ({k:.0f}x the k-means work of"
            f" IVF{i['nlist']}: {_train_sample(nlist):,} samples x {nlist} lists),"
            f" add ~{i['add_seconds'] * f / 3600:.1f} h (linear), at this machine's measured speed"
        )
    for mode in ("hybrid", "bm25"):
        # Only sizes searched with the same kind of dense index as the largest: an exact set is held
        # widened to float32 in anonymous memory, an IVF-PQ searcher holds codes, so a line through
        # 100k (exact) and 1M (IVF-PQ) fell with size (-4.1 GB at 37M).
        kind = (d.get("index") or {}).get("info", {}).get("kind")
        pts = [
            (nn, dd[mode])
            for nn, dd in built
            if dd.get(mode)
            and "rss_anon_mb" in dd[mode]
            and (mode == "bm25" or (dd.get("index") or {}).get("info", {}).get("kind") == kind)
        ]
        if not pts:
            continue
        (n1, s1), (n2, s2) = pts[-2] if len(pts) > 1 else pts[-1], pts[-1]
        slope = (s2["rss_anon_mb"] - s1["rss_anon_mb"]) / (n2 - n1) if n2 > n1 else 0.0
        if n1 == n2 and mode == "hybrid" and kind == "ivfpq":
            slope = (default_m(DIM) // 2 + 8) / 2**20  # one IVF-PQ point: what grows is the codes and ids
        est = s2["rss_anon_mb"] + slope * (TARGET - n2)
        print(
            f"search RSS      {mode}: ~{est / 1024:.1f} GB anonymous ({s2['rss_anon_mb']:,.0f} MB at {n2:,},"
            f" {slope * 1e6:+,.0f} MB per 1M citations from {n1:,});"
            f" peak RSS there {s2['rss_mb']:,.0f} MB counting mapped index/vector pages,"
            " which are reclaimable page cache"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        {"_build": _build, "_search": _search, "_recall": _recall}[sys.argv[1]](*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100k,1m,3m", help="comma-separated citation counts (100k, 1m, 3m)")
    ap.add_argument(
        "--work", type=Path, default=Path("/tmp/clinfo-scale"), help="corpora, JSON Lines and results.json go here"
    )
    ap.add_argument(
        "--steps",
        default="build,vectors,search",
        help="any of build, chunks (write vector chunks only), vectors, search",
    )
    ap.add_argument(
        "--seed-vectors",
        type=Path,
        default=DEFAULT_SEEDS if DEFAULT_SEEDS.is_dir() else None,
        help="real vectors of base records",
    )
    ap.add_argument("--n", type=int, default=500, help="queries per set")
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--redo", default="", help="steps to run again even if results.json has them (build, vectors, search)"
    )
    ap.add_argument("--keep-chunks", action="store_true", help="keep the .npy/.json chunk files after importing")
    ap.add_argument("--report", action="store_true", help="only print the kept results")
    ap.add_argument("--results", type=Path, help="results file (default WORK/results.json)")
    args = ap.parse_args()
    args.redo = set(filter(None, args.redo.split(",")))
    args.work.mkdir(parents=True, exist_ok=True)
    res = Results(args.results or args.work / "results.json")
    if not args.report:
        for size in sorted(parse_size(s) for s in args.sizes.split(",")):
            run_size(size, args, res)
    report(res)


if __name__ == "__main__":
    main()
