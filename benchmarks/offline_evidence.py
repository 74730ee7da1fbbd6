"""Offline evidence selection (the small preset over the demo corpus): does the answer cite the
right abstract when the corpus has it, and say "no relevant evidence" when it does not?

Question sets (all real, from ../shared):
- pqa-dev      PubMedQA PQA-L dev questions; each one's own abstract (gold) is in the demo corpus
- pqa-dev-off  the same questions with the gold abstract removed (``ignore=[pmid]``)
- rs200-off    PubMedRS-200 questions (review PMID ignored, no date cut-off): the script checks
               that none of their reference PMIDs is in the demo corpus
- pqa-test / pqa-test-off   the PubMedQA test questions (held out: not used to set the threshold)

For each question the real pipeline runs (``ClinfoAI(llm="local", source="demo")``, small preset:
keyword search, BM25 prefilter, relevance by term coverage, quoted sentences). Printed per set:
share of questions whose gold abstract is cited, precision of the cited references against gold
(over answers citing any), share of honest no-evidence answers, and seconds per question. A sweep
then re-judges the same candidates at other thresholds (the calibration curve).

``--model-check N`` also asks the embedded model (SmolLM2-135M, relevance-only prompt) about the
same candidates of N questions per set, to measure whether its verdict helps as a second signal.

    python benchmarks/offline_evidence.py [--limit 200] [--sets pqa-dev,pqa-dev-off,rs200-off] [--model-check 0]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clinfo import ClinfoAI  # noqa: E402
from clinfo.eval.datasets import EvalItem, load_dataset  # noqa: E402
from clinfo.models import Article  # noqa: E402
from clinfo.pipeline import relevance  # noqa: E402
from clinfo.pipeline.relevance import MARGIN, THRESHOLDS, judge  # noqa: E402
from clinfo.settings import load_settings  # noqa: E402
from clinfo.sources import create_source  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "pqa-dev": (SHARED / "pubmedqa" / "pqal_dev.json", "pubmedqa", False),
    "pqa-dev-off": (SHARED / "pubmedqa" / "pqal_dev.json", "pubmedqa", True),
    "pqa-test": (SHARED / "pubmedqa" / "pqal_test_unlabeled.json", "pubmedqa", False),
    "pqa-test-off": (SHARED / "pubmedqa" / "pqal_test_unlabeled.json", "pubmedqa", True),
    "rs200-off": (SHARED / "pubmedrs200" / "PubMedRS-200.csv", "pubmedrs", True),
}
SWEEP = (0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)
_seen: dict[str, list[float] | None] = {}


def _recording(original):  # type: ignore[no-untyped-def]
    """relevance.similarities, keeping what the pipeline computed so the sweep reuses it."""

    def similarities(question, articles):  # type: ignore[no-untyped-def]
        out = original(question, articles)
        _seen["last"] = out
        return out

    return similarities


@dataclass
class Outcome:
    gold: set[str]
    candidates: list[Article]
    cited: list[str]
    seconds: float
    similarity: list[float] | None = None  # the pipeline's similarity signal per candidate
    model_says: list[bool] | None = None  # the embedded model's verdict per candidate (--model-check)


@dataclass
class Tally:
    on_topic: bool
    outcomes: list[Outcome] = field(default_factory=list)


def demo_pmids() -> set[str]:
    import clinfo

    path = Path(clinfo.__file__).parent / "data" / "demo_corpus.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return {json.loads(line)["pmid"] for line in lines}


def items_of(name: str, limit: int) -> tuple[list[EvalItem], bool]:
    path, fmt, off_topic = SETS[name]
    items = load_dataset(path, fmt).select(limit, seed=0)
    if fmt == "pubmedqa" and off_topic:
        items = [i.model_copy(update={"ignore": list(i.gold_pmids)}) for i in items]
    return items, not off_topic


def score(outcomes: list[Outcome], cited: list[list[str]], on_topic: bool) -> str:
    n = len(outcomes)
    no_evidence = sum(not c for c in cited)
    text = f"no-evidence {no_evidence}/{n} = {no_evidence / n:.3f}"
    if on_topic:
        found = sum(bool(o.gold & set(c)) for o, c in zip(outcomes, cited))
        shares = [sum(p in o.gold for p in c) / len(c) for o, c in zip(outcomes, cited) if c]
        precision = statistics.mean(shares) if shares else float("nan")
        text = f"gold cited {found}/{n} = {found / n:.3f}; precision {precision:.3f} (over {len(shares)}); " + text
    return text


def rejudge(
    question: str, outcome: Outcome, threshold: float | None, similar: bool, with_model: bool = False
) -> list[str]:
    verdicts = judge(
        question,
        outcome.candidates,
        similarity=outcome.similarity if similar else None,
        threshold=threshold,
        margin=MARGIN,
    )
    keep = [v.relevant for v in verdicts]
    if with_model and outcome.model_says is not None:
        keep = [k and m for k, m in zip(keep, outcome.model_says)]
    ranked = sorted((i for i, k in enumerate(keep) if k), key=lambda i: (-round(10 * verdicts[i].score), i))
    return [outcome.candidates[i].pmid for i in ranked][:5]


async def model_verdicts(question: str, articles: list[Article], llm, settings) -> list[bool]:  # type: ignore[no-untyped-def]
    from clinfo.pipeline.run import QuestionRun
    from clinfo.pipeline.screen import screen_article

    run = QuestionRun(settings, llm, None, question)  # type: ignore[arg-type]
    out = []
    for rank, article in enumerate(articles):
        summary = await screen_article(run, rank, article)
        out.append(bool(summary and summary.relevant))
    return out


async def main_async(args: argparse.Namespace) -> None:
    cache = Path(tempfile.mkdtemp(prefix="offline-evidence-"))
    settings = load_settings(llm="local", source="demo", cache_dir=cache, use_cache=False)
    source = create_source("demo", settings)
    clinfo = ClinfoAI(llm="local", source=source, cache_dir=cache, use_cache=False)
    s = clinfo.settings
    relevance.similarities = _recording(relevance.similarities)
    print(
        f"settings: preset small -> screening={s.screening}, thresholds={THRESHOLDS}, margin={MARGIN},"
        f" planner={s.planner}, prefilter_k={s.prefilter_k}, search_mode={getattr(s, 'search_mode', 'bm25')}"
    )
    in_corpus = demo_pmids()
    model = None
    if args.model_check:
        from clinfo.llm import create_llm

        model_settings = load_settings(
            llm="local", source="demo", cache_dir=cache, use_cache=False, preset="small", screening="llm"
        )
        model = (create_llm("local", model_settings), model_settings)
    await clinfo.aforward("warm up: build the demo index")  # excluded from timings
    tallies: dict[str, Tally] = {}
    questions: dict[str, list[str]] = {}
    for name in args.sets:
        items, on_topic = items_of(name, args.limit)
        if name == "rs200-off":
            leaking = [i.id for i in items if set(i.gold_pmids) & in_corpus]
            print(
                f"rs200-off: {len(leaking)} of {len(items)} questions"
                f" have a reference PMID in the demo corpus {leaking}"
            )
        tally = tallies[name] = Tally(on_topic=on_topic)
        questions[name] = [i.question for i in items]
        for k, item in enumerate(items):
            _seen.clear()
            started = time.perf_counter()
            answer = await clinfo.aforward(item.question, ignore=item.ignore or None)
            seconds = time.perf_counter() - started
            summaries = sorted(answer.article_summaries + answer.irrelevant_articles, key=lambda x: x.rank)
            outcome = Outcome(
                gold=set(item.gold_pmids) if on_topic else set(),
                candidates=[x.article for x in summaries],
                cited=[r.pmid for r in answer.references],
                seconds=seconds,
                similarity=_seen.get("last"),
            )
            if model is not None and k < args.model_check:
                started = time.perf_counter()
                outcome.model_says = await model_verdicts(item.question, outcome.candidates, *model)
                print(
                    f"  model check {name} {k + 1}/{args.model_check}: {time.perf_counter() - started:.1f} s"
                    f" for {len(outcome.candidates)} candidates",
                    file=sys.stderr,
                )
            tally.outcomes.append(outcome)

    print("\nthe pipeline as configured:")
    for name, tally in tallies.items():
        o = tally.outcomes
        secs = [x.seconds for x in o]
        print(
            f"  {name:13s} n={len(o)}: {score(o, [x.cited for x in o], tally.on_topic)};"
            f" seconds/question p50 {statistics.median(secs):.3f} mean {statistics.mean(secs):.3f}"
        )
    has_similarity = all(x.similarity is not None for t in tallies.values() for x in t.outcomes)
    for similar in (False, True) if has_similarity else (False,):
        print(
            "\nsweep of the threshold over the same candidates,"
            f" signals: {relevance.signals(similar)} (margin {MARGIN}):"
        )
        for threshold in SWEEP:
            print(f"  threshold {threshold:.2f}")
            for name, tally in tallies.items():
                cited = [rejudge(q, x, threshold, similar) for q, x in zip(questions[name], tally.outcomes)]
                print(f"    {name:13s} {score(tally.outcomes, cited, tally.on_topic)}")
    if model is not None:
        print(
            "\nthe embedded model's verdict as a second signal"
            f" (first {args.model_check} questions per set, calibrated threshold):"
        )
        for name, tally in tallies.items():
            pairs = [(q, x) for q, x in zip(questions[name], tally.outcomes) if x.model_says is not None]
            outs = [x for _, x in pairs]
            alone = [rejudge(q, x, None, x.similarity is not None) for q, x in pairs]
            both = [rejudge(q, x, None, x.similarity is not None, with_model=True) for q, x in pairs]
            model_only = [[c.pmid for c, m in zip(x.candidates, x.model_says or []) if m] for x in outs]
            print(f"  {name:13s} retrieval scores: {score(outs, alone, tally.on_topic)}")
            print(f"  {'':13s} retrieval AND model: {score(outs, both, tally.on_topic)}")
            print(f"  {'':13s} model only: {score(outs, model_only, tally.on_topic)}")
        await model[0].aclose()
    await source.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=200, help="questions per set (seeded sample; default 200)")
    parser.add_argument(
        "--sets", default="pqa-dev,pqa-dev-off,rs200-off", help=f"comma-separated, from {', '.join(SETS)}"
    )
    parser.add_argument(
        "--model-check", type=int, default=0, help="also ask the embedded model about N questions per set"
    )
    args = parser.parse_args()
    args.sets = [x.strip() for x in args.sets.split(",") if x.strip()]
    unknown = [x for x in args.sets if x not in SETS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; use {', '.join(SETS)}")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
