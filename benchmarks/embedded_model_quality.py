"""What the embedded model (SmolLM2-135M via llama.cpp) gets right, and how long the offline
quickstart takes. Prints figures; needs the [local] extra.

- planning: share of PubMedQA questions for which the model writes at least one valid PubMed
  query (parsed, not a copied placeholder) that has hits in the demo corpus;
- screening: the gold abstract of a PubMedQA question judged relevant (sensitivity) and a
  random other abstract judged irrelevant (specificity), with mean 0-10 scores;
- end to end: wall time of `ClinfoAI(llm="local", source="demo").forward(q)` (the README's
  quickstart path, small preset) and whether the gold PMID is among the references.

    python benchmarks/embedded_model_quality.py [--questions 20] [--end-to-end 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clinfo import ClinfoAI  # noqa: E402
from clinfo.llm import create_llm  # noqa: E402
from clinfo.pipeline.plan import fallback_query, plan_queries  # noqa: E402
from clinfo.pipeline.run import QuestionRun  # noqa: E402
from clinfo.pipeline.screen import screen_article  # noqa: E402
from clinfo.settings import load_settings  # noqa: E402
from clinfo.sources import create_source  # noqa: E402

PQAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pubmedqa" / "pqal_dev.json"


async def measure(n: int, seed: int) -> None:
    settings = load_settings(llm="local", source="demo", use_cache=False, preset="default")
    items = list(json.loads(PQAL.read_text()).items())
    random.Random(seed).shuffle(items)
    items = items[:n]
    llm = create_llm("local", settings)
    source = create_source("demo", settings)
    all_pmids = [pmid for pmid, _ in json.loads(PQAL.read_text()).items()]
    planned_ok = 0
    gold_rel, distractor_irrel = [], []
    gold_scores, distractor_scores = [], []
    started = time.perf_counter()
    for pmid, item in items:
        question = item["QUESTION"]
        run = QuestionRun(settings, llm, source, question)
        queries = await plan_queries(run)
        hits = 0
        for q in queries:
            if q == fallback_query(question):
                continue  # the planner gave up; the fallback is code, not the model
            hits += bool((await source.search(q, limit=5)).pmids)
        planned_ok += hits > 0
        other = random.Random(pmid).choice([p for p in all_pmids if p != pmid])
        gold, distractor = await source.fetch([pmid, other])
        for article, rel_list, scores in (
            (gold, gold_rel, gold_scores),
            (distractor, distractor_irrel, distractor_scores),
        ):
            summary = await screen_article(run, 0, article)
            relevant = bool(summary and summary.relevant)
            rel_list.append(relevant if article is gold else not relevant)
            scores.append(summary.score if summary else 0)
    elapsed = time.perf_counter() - started
    await source.aclose()
    await llm.aclose()
    print(f"questions: {n} (PubMedQA dev, seed {seed}); {elapsed:.0f} s for planning + 2 screenings each")
    print(f"planning: {planned_ok}/{n} questions got a model-written query with hits in the demo corpus")
    print(f"screening sensitivity (gold abstract judged relevant): {sum(gold_rel)}/{n} = {sum(gold_rel) / n:.2f}")
    print(
        "screening specificity (random abstract judged irrelevant):"
        f" {sum(distractor_irrel)}/{n} = {sum(distractor_irrel) / n:.2f}"
    )
    print(
        f"mean relevance score: gold {statistics.mean(gold_scores):.1f},"
        f" random {statistics.mean(distractor_scores):.1f}"
    )


def end_to_end(n: int, seed: int) -> None:
    items = list(json.loads(PQAL.read_text()).items())
    random.Random(seed + 1).shuffle(items)
    clinfo = ClinfoAI(llm="local", source="demo", use_cache=False, cache_dir=Path(tempfile.mkdtemp()))
    clinfo.forward("warm up: load the model and build the demo index")  # excluded from the timing
    walls, found = [], 0
    for pmid, item in items[:n]:
        start = time.perf_counter()
        answer = clinfo.forward(item["QUESTION"])
        walls.append(time.perf_counter() - start)
        found += pmid in {r.pmid for r in answer.references}
        print(
            f"  {walls[-1]:5.1f} s  refs {len(answer.references)}"
            f"  gold cited: {pmid in {r.pmid for r in answer.references}}  {item['QUESTION'][:70]}"
        )
    print(
        f"end to end (small preset): median {statistics.median(walls):.1f} s, max {max(walls):.1f} s per question"
        f" (target <= 60 s); gold PMID among references {found}/{n}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--end-to-end", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args.end_to_end, args.seed)
    if args.questions:
        asyncio.run(measure(args.questions, args.seed))


if __name__ == "__main__":
    main()
