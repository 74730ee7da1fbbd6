#!/usr/bin/env python
"""Known-item retrieval on PubMedQA PQA-L dev: each of the 500 questions, typed as is, should find
the abstract it was written from. Recall@1, Recall@10 and nDCG@10 (ir-measures).

Corpora:
* full: the packaged demo corpus (3,000 records, the 1,000 PQA-L abstracts among them) plus both
  NLM baseline files as distractors (34,272 distinct articles: the demo's 2,000 NLM records come
  from one of those files);
* demo: the demo corpus alone.

BM25 runs on both. Dense and hybrid (RRF of BM25 and dense) need the [dense] extra and vectors
for the corpus; embedding on CPU is slow (all-MiniLM-L6-v2 at 256 tokens: a few to ~20 abstracts/s
on 2 cores), so by default they run on the demo corpus (--dense-corpus full to embed everything).

    python benchmarks/retrieval_quality.py [--work DIR] [--dense-corpus demo|full|none] [--no-prune]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
BASELINE = [SHARED / "pubmed-baseline" / "pubmed20n0014.xml.gz", SHARED / "pubmed-baseline" / "pubmed21n1298.xml.gz"]
DEMO = REPO / "clinfo" / "data" / "demo_corpus.jsonl.gz"


def evaluate(source, questions: dict[str, str]) -> tuple[dict, float]:
    import ir_measures
    from ir_measures import R, nDCG

    qrels = [ir_measures.Qrel(pmid, pmid, 1) for pmid in questions]
    run = []
    start = time.perf_counter()
    for pmid, question in questions.items():
        result = source.search_sync(question, limit=10)
        scores = result.scores or [float(-i) for i in range(len(result.pmids))]
        run.extend(ir_measures.ScoredDoc(pmid, doc, score) for doc, score in zip(result.pmids, scores))
    seconds = time.perf_counter() - start
    measures = [R @ 1, R @ 10, nDCG @ 10]
    return ir_measures.calc_aggregate(measures, qrels, run), seconds / len(questions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "clinfo-retrieval-bench")
    ap.add_argument("--dense-corpus", choices=("demo", "full", "none"), default="demo")
    ap.add_argument("--no-prune", action="store_true", help="keep common words in natural-language queries")
    args = ap.parse_args()

    from clinfo.corpus.build import build_index
    from clinfo.corpus.lexical import FtsIndex
    from clinfo.sources.corpus import LocalSource

    if args.no_prune:
        FtsIndex.common_df = 1.0
    args.work.mkdir(parents=True, exist_ok=True)
    corpora = {"demo": args.work / "demo.db", "full": args.work / "full.db"}
    for name, inputs in (("demo", [DEMO]), ("full", [DEMO, *BASELINE])):
        summary = build_index(inputs, corpora[name], progress=False)  # skips files already ingested
        print(f"{name}: {summary.articles:,} articles", file=sys.stderr)

    dev = json.loads((SHARED / "pubmedqa" / "pqal_dev.json").read_text())
    questions = {pmid: item["QUESTION"] for pmid, item in dev.items()}
    runs = [("bm25", "full"), ("bm25", "demo")]
    if args.dense_corpus != "none":
        try:
            import faiss  # noqa: F401
            import sentence_transformers  # noqa: F401
        except ImportError:
            print("dense/hybrid skipped: the [dense] extra is not installed", file=sys.stderr)
        else:
            from clinfo.corpus.dense import dense_dir, embed_index

            db = corpora[args.dense_corpus]
            t = time.perf_counter()
            s = embed_index(db, progress=True)  # resumes; re-encodes nothing already stored
            print(f"{s.line()} (this run {time.perf_counter() - t:.0f} s, vectors in {dense_dir(db)})", file=sys.stderr)
            runs += [("dense", args.dense_corpus), ("hybrid", args.dense_corpus)]

    print(f"PubMedQA PQA-L dev, {len(questions)} questions as typed; top 10" + (" (no common-word pruning)" if args.no_prune else ""))
    print(f"{'mode':7s} {'corpus':6s} {'articles':>8s}  {'R@1':>6s} {'R@10':>6s} {'nDCG@10':>8s}  {'ms/query':>8s}")
    for mode, corpus in runs:
        src = LocalSource(corpora[corpus], mode=mode)  # type: ignore[arg-type]
        scores, per_query = evaluate(src, questions)
        n = src.articles
        print(
            f"{mode:7s} {corpus:6s} {n:8,d}  {scores[R1]:6.3f} {scores[R10]:6.3f} {scores[NDCG10]:8.3f}  {per_query * 1000:8.1f}"
        )
        src.close()


from ir_measures import R, nDCG  # noqa: E402  (keys of the aggregate dict)

R1, R10, NDCG10 = R @ 1, R @ 10, nDCG @ 10

if __name__ == "__main__":
    main()
