#!/usr/bin/env python
r"""Ranking quality of the local corpus: known-item retrieval, nDCG@10 and Recall@10 (ir-measures).

Three reports:

* default: PubMedQA PQA-L dev (500 questions as typed) on two corpora, R@1, R@10, nDCG@10:
  - full: the packaged demo corpus (3,000 records, the 1,000 PQA-L abstracts among them) plus both
    NLM baseline files as distractors (34,272 distinct articles);
  - demo: the demo corpus alone.
  BM25 runs on both; dense and hybrid (they need the [dense] extra and vectors, built here with
  ``embed_index`` on --dense-corpus; slow on CPU) on one.
* ``--sets``: the ranking benchmark. The sets of ``benchmarks/ranking_sets.py`` (pqa, pqa-hard,
  pqa-conclusion, nlm-conclusion, rs200; each split into a tune and a check half) on one corpus
  (``--corpus``, built from ``ranking_sets.corpus_inputs``: demo + both baseline files + the
  PubMedRS-200 reviews, 34,481 articles), every mode through ``LocalSource`` (what ``clinfo search
  --mode`` runs): bm25, dense, hybrid-rrf and hybrid-score (hybrid with each fusion; plain
  ``hybrid`` is the default fusion). Dense and hybrid need vectors in that corpus (``clinfo index
  embed`` or imported ones).
* ``--sets ... --tune``: the lever study. Deep rankings (bm25 and dense, top ``--depth``) are
  computed once per query through ``LocalSource``, then fusion variants (RRF k, depth, weight;
  score fusion by the product's ``clinfo.corpus.hybrid.score_fuse`` and by other normalisations)
  are scored offline; ``--fields`` also re-runs BM25 under other field weights. Choose on the tune
  halves, read the check halves: the last lines name the best variant of each family by mean tune
  nDCG@10 and print its check halves.

    python benchmarks/retrieval_quality.py [--work DIR] [--dense-corpus demo|full|none]
    python benchmarks/retrieval_quality.py --sets all --corpus /work/bench/ranking.db \
        [--modes bm25,dense,hybrid-rrf,hybrid-score]
    python benchmarks/retrieval_quality.py --sets all --corpus /work/bench/ranking.db --tune [--fields]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

# after the sys.path lines: benchmarks/ is not a package
import ranking_sets  # noqa: E402
from ranking_sets import BASELINE, DEMO, RankingSet  # noqa: E402

Ranking = tuple[list[int], list[float]]  # PMIDs best first, scores


# ------------------------------------------------------------------------------------ measuring


def measure(runs: dict[str, list[int]], qrels: dict[str, dict[str, int]], cutoff: int = 10) -> dict[str, float]:
    """nDCG@10 and R@10 (plus R@1) of ranked PMID lists; queries without a list count as zeros."""
    import ir_measures
    from ir_measures import R, nDCG

    qrel_rows = [ir_measures.Qrel(q, doc, g) for q, docs in qrels.items() for doc, g in docs.items()]
    # Scores from ranks, so the metric library never reorders ties: the order measured is the order returned.
    run_rows = [ir_measures.ScoredDoc(q, str(p), float(cutoff - i)) for q, pmids in runs.items() if q in qrels
                for i, p in enumerate(pmids[:cutoff])]  # fmt: skip
    agg = ir_measures.calc_aggregate([nDCG @ 10, R @ 10, R @ 1], qrel_rows, run_rows)
    found = {str(m): v for m, v in agg.items()}
    # ir-measures averages over every query of the qrels, a query with nothing retrieved scoring 0
    # (scaling by the share of non-empty runs again counted those queries twice).
    return {"ndcg": found.get("nDCG@10", 0.0), "r10": found.get("R@10", 0.0), "r1": found.get("R@1", 0.0)}


def search_all(src: Any, queries: dict[str, str], limit: int) -> tuple[dict[str, Ranking], float]:
    out: dict[str, Ranking] = {}
    start = time.perf_counter()
    for q, text in queries.items():
        res = src.search_sync(text, limit=limit)
        out[q] = ([int(p) for p in res.pmids], list(res.scores or []))
    return out, (time.perf_counter() - start) / max(len(queries), 1)


# ------------------------------------------------------------------------------------ fusion variants


def rrf(rankings: list[list[int]], k: float, weights: list[float]) -> list[int]:
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for r, p in enumerate(ranking):
            scores[p] = scores.get(p, 0.0) + w / (k + r + 1)
    return sorted(scores, key=lambda p: -scores[p])


def convex(runs: list[Ranking], weights: list[float], depth: int) -> list[int]:
    """Weighted sum of scores scaled by each ranker's top score (0 stays 0: BM25 and cosine are >= 0 here)."""
    scores: dict[int, float] = {}
    for (pmids, sc), w in zip(runs, weights):
        top = max(sc[:depth], default=0.0) or 1.0
        for p, s in zip(pmids[:depth], sc[:depth]):
            scores[p] = scores.get(p, 0.0) + w * s / top
    return sorted(scores, key=lambda p: -scores[p])


def zscore(runs: list[Ranking], weights: list[float], depth: int) -> list[int]:
    """Weighted sum of z-scored scores over each ranker's top ``depth``; a document a ranker missed
    gets that ranker's lowest z (what its last candidate got), a ranker of one document 0."""
    import statistics

    scores: dict[int, float] = {}
    for (pmids, sc), w in zip(runs, weights):
        sc = sc[:depth]
        if not sc:
            continue
        mu, sd = statistics.fmean(sc), statistics.pstdev(sc)
        z = [(s - mu) / sd if sd > 0 else 0.0 for s in sc]
        for p, x in zip(pmids[:depth], z):
            scores[p] = scores.get(p, 0.0) + w * (x - min(z))
    return sorted(scores, key=lambda p: -scores[p])


def product_score(runs: list[Ranking], weights: list[float], depth: int) -> list[int]:
    """The product's score fusion (``clinfo.corpus.hybrid.score_fuse``): min-max over the fused
    depth, 0 as the floor of a ranking shorter than the depth."""
    from clinfo.corpus.hybrid import score_fuse

    return score_fuse([(p[:depth], s[:depth]) for p, s in runs], weights, 10**6, depth)[0]


def minmax(runs: list[Ranking], weights: list[float], depth: int) -> list[int]:
    """Weighted sum of min-max scaled scores over each ranker's top ``depth``."""
    scores: dict[int, float] = {}
    for (pmids, sc), w in zip(runs, weights):
        sc = sc[:depth]
        if not sc:
            continue
        lo, hi = min(sc), max(sc)
        for p, s in zip(pmids[:depth], sc):
            scores[p] = scores.get(p, 0.0) + w * ((s - lo) / (hi - lo) if hi > lo else 1.0)
    return sorted(scores, key=lambda p: -scores[p])


# ------------------------------------------------------------------------------------ reports


_SHORT = {"pqa-conclusion": "pqa-concl", "nlm-conclusion": "nlm-concl"}


def _line(label: str, cells: list[dict[str, float]]) -> str:
    return f"{label:34s}" + "".join(f"  {c['ndcg']:.3f} {c['r10']:.3f}" for c in cells)


def _header(sets: list[RankingSet], halves: list[str]) -> str:
    cols = [f"{_SHORT.get(s.name, s.name)}/{h}" for s in sets for h in halves]
    top = f"{'':34s}" + "".join(f"  {c[:11]:>11s}" for c in cols)
    sub = f"{'':34s}" + "".join(f"  {'nDCG':>5s} {'R@10':>5s}" for _ in cols)
    return top + "\n" + sub


def ensure_corpus(db: Path, work: Path) -> None:
    from clinfo.corpus.build import build_index

    inputs = ranking_sets.corpus_inputs(work)
    s = build_index(inputs, db, progress=False)  # skips files already ingested
    print(f"corpus {db}: {s.articles:,} articles", file=sys.stderr)
    from clinfo.corpus.store import open_corpus

    conn = open_corpus(db)
    try:
        last = conn.execute("SELECT name FROM files ORDER BY id DESC LIMIT 1").fetchone()[0]
    finally:
        conn.close()
    if last != inputs[-1].name:
        # Another input was re-ingested after the overrides and replaced gold records with their originals.
        raise SystemExit(f"error: {db} ingested {last} after {inputs[-1].name}; delete {db} and {db}.* and run again")


def sets_report(args: argparse.Namespace, sets: list[RankingSet]) -> None:
    from clinfo.sources.corpus import LocalSource

    halves = ["tune", "check"]
    modes = [m for m in args.modes.split(",") if m]
    print(f"Ranking benchmark: corpus {args.corpus} ; cells: nDCG@10 R@10 ; top 10")
    for s in sets:
        print(f"  {s.name}: {len(s.queries)} queries ({s.note})")
    print(_header(sets, halves))
    for mode in modes:
        # hybrid-rrf / hybrid-score: hybrid with that fusion; plain hybrid: the default fusion
        base, _, fusion = mode.partition("-")
        src = LocalSource(args.corpus, mode=base, **({"fusion": fusion} if fusion else {}))  # type: ignore[arg-type]
        cells, ms = [], []
        for s in sets:
            ranked, per_q = search_all(src, s.queries, 10)
            ms.append(per_q)
            runs = {q: r[0] for q, r in ranked.items()}
            cells += [measure(runs, s.part(h).qrels) for h in halves]
        src.close()
        print(_line(f"{mode} ({1000 * sum(ms) / len(ms):.0f} ms/q)", cells), flush=True)


def load_chunks(folder: Path) -> tuple[Any, Any]:
    """PMIDs and vectors of every ``.npy`` + ``.json`` chunk in ``folder`` (a later chunk wins for a PMID)."""
    import json

    import numpy as np

    pmids, mats = [], []
    for f in sorted(folder.glob("*.json")):
        if f.with_suffix(".npy").is_file():
            pmids += json.loads(f.read_text())
            mats.append(np.load(f.with_suffix(".npy")))
    ids = np.asarray(pmids, dtype=np.int64)
    mat = np.vstack(mats).astype(np.float32)
    _, last = np.unique(ids[::-1], return_index=True)
    keep = np.sort(len(ids) - 1 - last)
    return ids[keep], mat[keep]


class ChunkDense:
    """Exact dense search over vector chunks (what the product's exact index computes), for studies
    that run while a corpus's vectors are still being encoded: rankings cover the chunks' PMIDs only."""

    def __init__(self, folder: Path, model: str | None = None) -> None:
        from clinfo.corpus.encoders import get_encoder

        self.ids, self.mat = load_chunks(folder)
        self.encoder = get_encoder(model)

    def encode(self, texts: list[str]) -> Any:
        return self.encoder.encode_queries(texts)

    def search_vectors(self, qv: Any, depth: int) -> Ranking:
        import numpy as np

        sc = self.mat @ qv
        top = np.argpartition(-sc, min(depth, len(sc) - 1))[:depth]
        top = top[np.argsort(-sc[top], kind="stable")]
        return [int(p) for p in self.ids[top]], [float(x) for x in sc[top]]


def deep_runs(args: argparse.Namespace, sets: list[RankingSet]) -> tuple[dict, dict, Any]:
    """bm25 and dense rankings (top ``--depth``) per set and query, and the chunk index if used."""
    from clinfo.sources.corpus import LocalSource

    depth = args.depth
    bm = LocalSource(args.corpus, mode="bm25")
    chunks = None
    if args.vectors:
        chunks = ChunkDense(args.vectors)
        subset = set(chunks.ids.tolist())
        print(
            f"vectors: {len(subset):,} articles from {args.vectors}; both rankers restricted to them", file=sys.stderr
        )
        bm_runs = {}
        for s in sets:
            deep, _ = search_all(bm, s.queries, depth * 8)
            bm_runs[s.name] = {
                q: tuple(zip(*[(p, x) for p, x in zip(*r) if p in subset][:depth])) or ((), ()) for q, r in deep.items()
            }
        de_runs = {}
        for s in sets:
            qv = chunks.encode(list(s.queries.values()))
            de_runs[s.name] = {q: chunks.search_vectors(v, depth) for q, v in zip(s.queries, qv)}
        return {k: {q: (list(a), list(b)) for q, (a, b) in v.items()} for k, v in bm_runs.items()}, de_runs, chunks
    de = LocalSource(args.corpus, mode="dense")
    bm_runs = {s.name: search_all(bm, s.queries, depth)[0] for s in sets}
    de_runs = {s.name: search_all(de, s.queries, depth)[0] for s in sets}
    return bm_runs, de_runs, chunks


def tune_report(args: argparse.Namespace, sets: list[RankingSet]) -> None:
    from clinfo.corpus import lexical
    from clinfo.sources.corpus import LocalSource

    depth = args.depth
    halves = ["tune", "check"]
    t = time.perf_counter()
    bm_runs, de_runs, chunks = deep_runs(args, sets)
    print(f"deep runs (top {depth}) in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    restricted = ""
    if chunks is not None:
        restricted = f" ; restricted to the {len(chunks.ids):,} articles with vectors in {args.vectors}"
    print(f"Lever study: corpus {args.corpus} ; cells: nDCG@10 R@10 ; deep runs top {depth}{restricted}")
    print(_header(sets, halves) + "   mean tune nDCG")

    results: list[tuple[str, float, list[dict[str, float]]]] = []

    def report(label: str, fuse: Callable[[str, str], list[int]]) -> None:
        cells = []
        for s in sets:
            runs = {q: fuse(s.name, q) for q in s.queries}
            cells += [measure(runs, s.part(h).qrels) for h in halves]
        mean_tune = sum(c["ndcg"] for c in cells[0::2]) / len(sets)
        results.append((label, mean_tune, cells))
        print(_line(label, cells) + f"   {mean_tune:.3f}", flush=True)

    report("bm25", lambda s, q: bm_runs[s][q][0])
    report("dense", lambda s, q: de_runs[s][q][0])
    for d in (50, 100, 200, 300):
        if d > depth:
            continue
        for k in (5, 10, 20, 30, 60, 100):
            report(
                f"rrf k={k} depth={d}",
                lambda s, q, k=k, d=d: rrf([bm_runs[s][q][0][:d], de_runs[s][q][0][:d]], k, [1, 1]),
            )
    for w in (0.3, 0.4, 0.6, 0.7):
        for k in (10, 30, 60):
            report(
                f"rrf k={k} depth={min(depth, 100)} w_bm25={w}",
                lambda s, q, k=k, w=w: rrf([bm_runs[s][q][0][:100], de_runs[s][q][0][:100]], k, [2 * w, 2 * (1 - w)]),
            )
    for name, fn in (("score", product_score), ("convex", convex), ("minmax", minmax), ("zscore", zscore)):
        for w in (0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6):
            for d in sorted({50, 100, depth}):
                if d <= depth:
                    report(
                        f"{name} w_bm25={w} depth={d}",
                        lambda s, q, fn=fn, w=w, d=d: fn([bm_runs[s][q], de_runs[s][q]], [w, 1 - w], d),
                    )
    # The choice, made on the tune halves only; the check halves say whether it generalises.
    print("best of each family by mean tune nDCG@10 (check halves: mean check nDCG@10):")
    for family in ("rrf", "score", "convex", "minmax", "zscore"):
        fam = [r for r in results if r[0].split()[0] == family]
        if fam:
            label, tune, cells = max(fam, key=lambda r: r[1])
            check = sum(c["ndcg"] for c in cells[1::2]) / len(sets)
            print(_line(label, cells) + f"   {tune:.3f} (check {check:.3f})", flush=True)
    if args.prf:
        rm3_report(args, sets, bm_runs, de_runs, set(chunks.ids.tolist()) if chunks is not None else None, report)
        if chunks is not None:
            prf_report(chunks, sets, bm_runs, de_runs, report)
    if args.fields:
        bm = LocalSource(args.corpus, mode="bm25")
        base = dict(lexical.FIELD_WEIGHTS)
        for title, abstract, mesh in ((2.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.5, 1.0, 0.5), (0.5, 1.0, 1.0)):
            lexical.FIELD_WEIGHTS.update(title=title, abstract=abstract, mesh=mesh)
            runs = {s.name: search_all(bm, s.queries, depth)[0] for s in sets}
            if chunks is not None:
                subset = set(chunks.ids.tolist())
                runs = {n: {q: ([p for p in r[0] if p in subset], []) for q, r in v.items()} for n, v in runs.items()}
            report(f"bm25 fields t={title} a={abstract} m={mesh}", lambda s, q, runs=runs: runs[s][q][0])
            report(
                "  + rrf k=60 d=100",
                lambda s, q, runs=runs: rrf([runs[s][q][0][:100], de_runs[s][q][0][:100]], 60, [1, 1]),
            )
        lexical.FIELD_WEIGHTS.clear()
        lexical.FIELD_WEIGHTS.update(base)


def rm3(
    src: Any, text: str, first: list[int], firsts: list[float], m: int, n: int, lam: float, depth: int
) -> list[int]:
    """Lexical pseudo-relevance feedback (RM3-style): the ``n`` terms weighing most in the top ``m``
    articles (term share per article x the article's share of the top scores) are ORed, weighted,
    beside the original query; ``lam`` is the expansion's share."""
    from collections import Counter

    from clinfo.corpus.lexical import FIELD_WEIGHTS
    from clinfo.corpus.lexical_query import TEXT_FIELDS, translate

    lex = src._lexical  # a study of the engine's own index: the private handle is the point
    tv = lex._tv
    tr = translate(text)
    if tr.plan is None or not first:
        return first
    docs = src._store().fetch(first[:m])
    total = sum(firsts[:m]) or 1.0
    weights: Counter[str] = Counter()
    searcher = lex.index.searcher()
    n_docs = searcher.num_docs
    for a, sc in zip(docs, firsts[:m]):
        toks = [t for t in lex.analyzer.analyze(f"{a.title} {a.abstract}") if len(t) > 2 and not t.isdigit()]
        for t, c in Counter(toks).items():
            weights[t] += (c / len(toks)) * (sc / total)
    original = set(lex._tokens(getattr(tr.plan, "words", ())))
    picked = []
    for t, w in weights.most_common(200):
        if t in original or searcher.doc_freq("abstract", t) > 0.1 * n_docs:
            continue
        picked.append((t, w))
        if len(picked) == n:
            break
    if not picked:
        return first
    top_w = picked[0][1]
    Q, Occur = tv.Query, tv.Occur
    exp = [(Occur.Should, Q.boost_query(Q.term_query(lex.schema, f, t), lam * FIELD_WEIGHTS.get(f, 1.0) * w / top_w))
           for t, w in picked for f in TEXT_FIELDS]  # fmt: skip
    q = Q.boolean_query([(Occur.Should, Q.boost_query(lex.compile(tr.plan), 1 - lam))] + exp)
    res = searcher.search(q, depth, count=False)
    return [int(p) for p in searcher.fast_field_values("pmid", [a for _, a in res.hits])]


def rm3_report(args: argparse.Namespace, sets: list[RankingSet], bm_runs: dict, de_runs: dict, subset: set[int] | None,
               report: Callable) -> None:  # fmt: skip
    from clinfo.sources.corpus import LocalSource

    src = LocalSource(args.corpus, mode="bm25")
    for m, n, lam in ((5, 10, 0.3), (10, 20, 0.3), (5, 10, 0.5)):
        new = {}
        for s in sets:
            for q, text in s.queries.items():
                pm, sc = bm_runs[s.name][q]
                ranked = rm3(src, text, pm, sc, m, n, lam, args.depth * (8 if subset else 1))
                new[(s.name, q)] = [p for p in ranked if subset is None or p in subset][: args.depth]
        report(f"bm25-rm3 m={m} n={n} lam={lam}", lambda s, q, new=new: new[(s, q)])
        report("  + rrf k=60 d=100", lambda s, q, new=new: rrf([new[(s, q)][:100], de_runs[s][q][0][:100]], 60, [1, 1]))
    src.close()


def prf_report(chunks: ChunkDense, sets: list[RankingSet], bm_runs: dict, de_runs: dict, report: Callable) -> None:
    """Dense pseudo-relevance feedback (Rocchio on vectors): the query vector moves toward the mean
    of the top ``m`` articles of the first fused ranking, then dense is searched again and fused."""
    import numpy as np

    row = {int(p): i for i, p in enumerate(chunks.ids)}
    qvecs = {s.name: dict(zip(s.queries, chunks.encode(list(s.queries.values())))) for s in sets}
    for m in (3, 5, 10):
        for beta in (0.5, 1.0):
            new = {}
            for s in sets:
                for q in s.queries:
                    first = rrf([bm_runs[s.name][q][0][:100], de_runs[s.name][q][0][:100]], 60, [1, 1])[:m]
                    fb = chunks.mat[[row[p] for p in first if p in row]]
                    v = qvecs[s.name][q] + beta * fb.mean(axis=0) if len(fb) else qvecs[s.name][q]
                    new[(s.name, q)] = chunks.search_vectors(v / np.linalg.norm(v), 100)[0]
            report(f"dense-prf m={m} b={beta}", lambda s, q, new=new: new[(s, q)])
            report("  + rrf k=60 d=100", lambda s, q, new=new: rrf([bm_runs[s][q][0][:100], new[(s, q)]], 60, [1, 1]))


# ------------------------------------------------------------------------------------ PubMedQA (default)


def pubmedqa_report(args: argparse.Namespace) -> None:
    from clinfo.corpus.build import build_index
    from clinfo.sources.corpus import LocalSource

    args.work.mkdir(parents=True, exist_ok=True)
    corpora = {"demo": args.work / "demo.db", "full": args.work / "full.db"}
    for name, inputs in (("demo", [DEMO]), ("full", [DEMO, *BASELINE])):
        summary = build_index(inputs, corpora[name], progress=False)  # skips files already ingested
        print(f"{name}: {summary.articles:,} articles", file=sys.stderr)

    pqa = ranking_sets.pubmedqa_sets()[0]
    runs = [("bm25", "full"), ("bm25", "demo")]
    if args.dense_corpus != "none":
        try:
            import faiss  # noqa: F401
            import sentence_transformers  # noqa: F401
        except ImportError:
            print("dense/hybrid skipped: the [dense] extra is not installed", file=sys.stderr)
        else:
            from clinfo.corpus.dense import embed_index

            db = corpora[args.dense_corpus]
            t = time.perf_counter()
            s = embed_index(db, progress=True)  # resumes; re-encodes nothing already stored
            print(f"{s.line()} (this run {time.perf_counter() - t:.0f} s)", file=sys.stderr)
            runs += [("dense", args.dense_corpus), ("hybrid", args.dense_corpus)]

    print(f"PubMedQA PQA-L dev, {len(pqa.queries)} questions as typed; top 10")
    print(f"{'mode':7s} {'corpus':6s} {'articles':>8s}  {'R@1':>6s} {'R@10':>6s} {'nDCG@10':>8s}  {'ms/query':>8s}")
    for mode, corpus in runs:
        src = LocalSource(corpora[corpus], mode=mode)  # type: ignore[arg-type]
        ranked, per_query = search_all(src, pqa.queries, 10)
        m = measure({q: r[0] for q, r in ranked.items()}, pqa.qrels)
        print(
            f"{mode:7s} {corpus:6s} {src.articles:8,d}  {m['r1']:6.3f} {m['r10']:6.3f} {m['ndcg']:8.3f}"
            f"  {per_query * 1000:8.1f}"
        )
        src.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "clinfo-retrieval-bench")
    ap.add_argument("--dense-corpus", choices=("demo", "full", "none"), default="demo")
    ap.add_argument("--sets", help=f"comma-separated ranking sets or 'all' ({', '.join(ranking_sets.SET_NAMES)})")
    ap.add_argument(
        "--corpus", type=Path, help="corpus for --sets (built from ranking_sets.corpus_inputs when missing)"
    )
    ap.add_argument(
        "--modes",
        default="bm25,dense,hybrid-rrf,hybrid-score",
        help="modes for --sets (comma-separated; hybrid-rrf / hybrid-score: hybrid with that fusion)",
    )
    ap.add_argument("--tune", action="store_true", help="lever study on deep runs instead of the mode table")
    ap.add_argument("--depth", type=int, default=300, help="deep-run depth for --tune")
    ap.add_argument("--fields", action="store_true", help="with --tune: also re-run BM25 under other field weights")
    ap.add_argument(
        "--vectors",
        type=Path,
        help="with --tune: dense from .npy/.json chunks in this folder (both rankers restricted to their PMIDs)",
    )
    ap.add_argument(
        "--prf",
        action="store_true",
        help="with --tune: pseudo-relevance feedback variants (lexical RM3; dense Rocchio with --vectors)",
    )
    args = ap.parse_args()

    if not args.sets:
        pubmedqa_report(args)
        return
    names = list(ranking_sets.SET_NAMES) if args.sets == "all" else args.sets.split(",")
    sets = ranking_sets.load_sets(names)
    args.corpus = args.corpus or args.work / "ranking.db"
    args.work.mkdir(parents=True, exist_ok=True)
    ensure_corpus(args.corpus, args.corpus.parent)
    (tune_report if args.tune else sets_report)(args, sets)


if __name__ == "__main__":
    main()
