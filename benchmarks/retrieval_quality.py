#!/usr/bin/env python
"""Ranking quality of the local corpus: known-item retrieval, nDCG@10 and Recall@10 (ir-measures).

Three reports:

* default: PubMedQA PQA-L dev (500 questions as typed) on two corpora, R@1, R@10, nDCG@10:
  - full: the packaged demo corpus (3,000 records, the 1,000 PQA-L abstracts among them) plus both
    NLM baseline files as distractors (34,272 distinct articles);
  - demo: the demo corpus alone.
  BM25 runs on both; dense and hybrid (they need the [dense] extra and vectors, built here with
  ``embed_index`` on --dense-corpus; slow on CPU) on one.
* ``--sets``: the ranking benchmark. The sets of ``benchmarks/ranking_sets.py`` (pqa, pqa-hard,
  pqa-conclusion, rs200; each split into a tune and a check half) on one corpus (``--corpus``,
  built from ``ranking_sets.corpus_inputs``: demo + both baseline files + the PubMedRS-200
  reviews, 34,481 articles), every mode through ``LocalSource`` (what ``clinfo search --mode``
  runs). Dense and hybrid need vectors in that corpus (``clinfo index embed`` or imported ones).
* ``--sets ... --tune``: the lever study. Deep rankings (bm25 and dense, top ``--depth``) are
  computed once per query through ``LocalSource``, then fusion variants (RRF k, depth, weight;
  score fusion) are scored offline; ``--fields`` also re-runs BM25 under other field weights.
  Choose on the tune halves, read the check halves.

    python benchmarks/retrieval_quality.py [--work DIR] [--dense-corpus demo|full|none]
    python benchmarks/retrieval_quality.py --sets all --corpus /work/bench/ranking.db [--modes bm25,dense,hybrid]
    python benchmarks/retrieval_quality.py --sets all --corpus /work/bench/ranking.db --tune [--fields]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

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
    # ir-measures averages over queries that have a run; a query with nothing retrieved scores 0.
    scale = len({q for q in runs if q in qrels and runs[q]}) / max(len(qrels), 1)
    return {"ndcg": found.get("nDCG@10", 0.0) * scale, "r10": found.get("R@10", 0.0) * scale, "r1": found.get("R@1", 0.0) * scale}


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

    s = build_index(ranking_sets.corpus_inputs(work), db, progress=False)  # skips files already ingested
    print(f"corpus {db}: {s.articles:,} articles", file=sys.stderr)


def sets_report(args: argparse.Namespace, sets: list[RankingSet]) -> None:
    from clinfo.sources.corpus import LocalSource

    halves = ["tune", "check"]
    modes = [m for m in args.modes.split(",") if m]
    print(f"Ranking benchmark: corpus {args.corpus} ; cells: nDCG@10 R@10 ; top 10")
    for s in sets:
        print(f"  {s.name}: {len(s.queries)} queries ({s.note})")
    print(_header(sets, halves))
    for mode in modes:
        src = LocalSource(args.corpus, mode=mode)  # type: ignore[arg-type]
        cells, ms = [], []
        for s in sets:
            ranked, per_q = search_all(src, s.queries, 10)
            ms.append(per_q)
            runs = {q: r[0] for q, r in ranked.items()}
            cells += [measure(runs, s.part(h).qrels) for h in halves]
        src.close()
        print(_line(f"{mode} ({1000 * sum(ms) / len(ms):.0f} ms/q)", cells), flush=True)


def tune_report(args: argparse.Namespace, sets: list[RankingSet]) -> None:
    from clinfo.corpus import lexical
    from clinfo.sources.corpus import LocalSource

    depth = args.depth
    halves = ["tune", "check"]
    t = time.perf_counter()
    bm = LocalSource(args.corpus, mode="bm25")
    de = LocalSource(args.corpus, mode="dense")
    bm_runs = {s.name: search_all(bm, s.queries, depth)[0] for s in sets}
    de_runs = {s.name: search_all(de, s.queries, depth)[0] for s in sets}
    print(f"deep runs (top {depth}) in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    print(f"Lever study: corpus {args.corpus} ; cells: nDCG@10 R@10 ; deep runs top {depth}")
    print(_header(sets, halves))

    def report(label: str, fuse: Callable[[str, str], list[int]]) -> None:
        cells = []
        for s in sets:
            runs = {q: fuse(s.name, q) for q in s.queries}
            cells += [measure(runs, s.part(h).qrels) for h in halves]
        mean_tune = sum(c["ndcg"] for c in cells[0::2]) / len(sets)
        print(_line(label, cells) + f"   mean tune nDCG {mean_tune:.3f}", flush=True)

    report("bm25", lambda s, q: bm_runs[s][q][0])
    report("dense", lambda s, q: de_runs[s][q][0])
    for d in (50, 100, 200, 300):
        if d > depth:
            continue
        for k in (5, 10, 20, 30, 60, 100):
            report(f"rrf k={k} depth={d}", lambda s, q, k=k, d=d: rrf([bm_runs[s][q][0][:d], de_runs[s][q][0][:d]], k, [1, 1]))
    for w in (0.3, 0.4, 0.5, 0.6, 0.7):
        for k in (10, 30, 60):
            report(f"rrf k={k} depth={depth} w_bm25={w}",
                   lambda s, q, k=k, w=w: rrf([bm_runs[s][q][0], de_runs[s][q][0]], k, [2 * w, 2 * (1 - w)]))  # fmt: skip
    for name, fn in (("convex", convex), ("minmax", minmax)):
        for w in (0.2, 0.3, 0.4, 0.5, 0.6):
            for d in (100, depth):
                report(f"{name} w_bm25={w} depth={d}", lambda s, q, fn=fn, w=w, d=d: fn([bm_runs[s][q], de_runs[s][q]], [w, 1 - w], d))
    if args.fields:
        base = dict(lexical.FIELD_WEIGHTS)
        for title, abstract, mesh in ((1.0, 1.0, 1.0), (2.0, 1.0, 0.5), (2.0, 1.0, 2.0), (3.0, 1.0, 1.0), (1.5, 1.0, 1.0)):
            lexical.FIELD_WEIGHTS.update(title=title, abstract=abstract, mesh=mesh)
            runs = {s.name: search_all(bm, s.queries, depth)[0] for s in sets}
            report(f"bm25 fields t={title} a={abstract} m={mesh}", lambda s, q: runs[s][q][0])
            report(f"  + rrf k=60 d=100", lambda s, q: rrf([runs[s][q][0][:100], de_runs[s][q][0][:100]], 60, [1, 1]))
        lexical.FIELD_WEIGHTS.clear()
        lexical.FIELD_WEIGHTS.update(base)
    bm.close()
    de.close()


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
        print(f"{mode:7s} {corpus:6s} {src.articles:8,d}  {m['r1']:6.3f} {m['r10']:6.3f} {m['ndcg']:8.3f}  {per_query * 1000:8.1f}")
        src.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "clinfo-retrieval-bench")
    ap.add_argument("--dense-corpus", choices=("demo", "full", "none"), default="demo")
    ap.add_argument("--sets", help=f"comma-separated ranking sets or 'all' ({', '.join(ranking_sets.SET_NAMES)})")
    ap.add_argument("--corpus", type=Path, help="corpus for --sets (built from ranking_sets.corpus_inputs when missing)")
    ap.add_argument("--modes", default="bm25,dense,hybrid", help="modes for --sets (comma-separated)")
    ap.add_argument("--tune", action="store_true", help="lever study on deep runs instead of the mode table")
    ap.add_argument("--depth", type=int, default=300, help="deep-run depth for --tune")
    ap.add_argument("--fields", action="store_true", help="with --tune: also re-run BM25 under other field weights")
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
