"""Questions per minute of ``clinfo eval run`` at concurrency 1 versus 16; prints figures.

LLM: the loopback OpenAI-compatible server, 0.5 s per call, 32 requests served at once (more
queue). Literature: the demo corpus (``--source demo``, local SQLite, no rate limit), or the
loopback E-utilities server at 0.2 s per request (``--source pubmed``) behind the real
E-utilities rate limiter: 3 requests/s, or 10/s with an API key (``--ncbi-key`` sets a fake
one). The servers run in a child process so their threads do not share the runner's GIL.
Questions: PubMedQA PQA-L dev (the demo corpus holds their articles), cache off.

    python benchmarks/eval_throughput.py                        # demo corpus, 100 questions at 16, 12 at 1
    python benchmarks/eval_throughput.py --source pubmed --ncbi-key
    python benchmarks/eval_throughput.py --prefilter-k 4        # fewer screening calls per question

Concurrency 1 runs fewer questions (``--questions-c1``) and its rate is extrapolated: each
question is independent, so questions per minute at concurrency 1 is 60 / mean seconds per
question, whatever the count.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARED = Path(__file__).resolve().parents[2] / "shared"
PQAL = SHARED / "data/pubmedqa/pqal_dev.json"


def _serve(llm_latency: float, eutils_latency: float | None, pipe: mp.connection.Connection) -> None:
    from tests.support.openai_server import OpenAIServer

    llm = OpenAIServer(latency=llm_latency, max_concurrency=32).start()
    eutils = None
    if eutils_latency is not None:
        from tests.support.eutils import EUtilsServer

        eutils = EUtilsServer(latency=eutils_latency).start()
    pipe.send({"llm": llm.base_url, "eutils": eutils.base_url if eutils else None})
    while True:
        command = pipe.recv()
        if command == "stats":
            pipe.send({"requests": llm.requests, "peak_in_flight": llm.peak_in_flight})
            llm.peak_in_flight = 0
        else:
            break


def _questions(path: Path, n: int, source: str, eutils_terms: list[str]) -> Path:
    if source == "demo":
        data = json.loads(PQAL.read_text())
        rows = [
            {"id": k, "question": v["QUESTION"], "label": v["final_decision"], "gold_pmids": [k]}
            for k, v in list(data.items())[:n]
        ]
    else:
        # the loopback E-utilities corpus only knows a few topics: vary the wording around them
        forms = [
            "What is the evidence on {}?",
            "What is known about {} in adults?",
            "Which treatments help in {}?",
            "What are the risks of {}?",
        ]
        rows = [
            {
                "id": f"t{i}",
                "question": forms[(i // len(eutils_terms)) % len(forms)].format(eutils_terms[i % len(eutils_terms)])
                + f" (case {i})",
                "label": "yes",
            }
            for i in range(n)
        ]
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def _run(
    data: Path, out: Path, concurrency: int, limit: int, args: argparse.Namespace, urls: dict, cache: Path
) -> tuple[float, list[dict]]:
    from clinfo.eval import run_eval

    overrides = {"base_url": urls["llm"], "use_cache": False, "cache_dir": cache}
    if args.prefilter_k:
        overrides["prefilter_k"] = args.prefilter_k
    if urls["eutils"]:
        overrides["eutils_base_url"] = urls["eutils"]
    start = time.perf_counter()
    result = run_eval(
        data,
        out,
        llm="openai:bench",
        source=args.source,
        limit=limit,
        concurrency=concurrency,
        progress=False,
        **overrides,
    )
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in result.predictions.read_text().splitlines()]
    return wall, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=100, help="questions at concurrency 16")
    parser.add_argument("--questions-c1", type=int, default=12, help="questions at concurrency 1 (extrapolated)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--source", choices=["demo", "pubmed"], default="demo")
    parser.add_argument(
        "--ncbi-key", action="store_true", help="set a fake NCBI_API_KEY: 10 E-utilities requests/s instead of 3"
    )
    parser.add_argument("--llm-latency", type=float, default=0.5)
    parser.add_argument("--eutils-latency", type=float, default=0.2)
    parser.add_argument(
        "--prefilter-k", type=int, default=None, help="articles screened per question (default: the setting's default)"
    )
    args = parser.parse_args()

    for name in list(os.environ):
        if name.startswith("CLINFO_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "NCBI_API_KEY"):
            del os.environ[name]
    if args.ncbi_key:
        os.environ["NCBI_API_KEY"] = "fake-benchmark-key"

    parent, child = mp.Pipe()
    server = mp.get_context("spawn").Process(
        target=_serve,
        args=(args.llm_latency, args.eutils_latency if args.source == "pubmed" else None, child),
        daemon=True,
    )
    server.start()
    urls = parent.recv()
    work = Path(tempfile.mkdtemp(prefix="clinfo-bench-"))
    cache = work / "cache"  # holds the demo index only: the LLM and E-utilities cache is off
    terms: list[str] = []
    if args.source == "pubmed":
        from tests.support.eutils import EUtilsServer

        terms = EUtilsServer().sample_terms(n=20, min_hits=4)
    data = _questions(work / "questions.jsonl", max(args.questions, args.questions_c1), args.source, terms)

    if args.source == "demo":  # index the demo corpus before timing anything
        from clinfo.corpus.demo import demo_corpus_path
        from clinfo.settings import load_settings

        demo_corpus_path(load_settings(cache_dir=cache))

    rows = []
    records: list[dict] = []
    for concurrency, n in ((1, args.questions_c1), (args.concurrency, args.questions)):
        wall, records = _run(data, work / f"c{concurrency}", concurrency, n, args, urls, cache)
        parent.send("stats")
        stats = parent.recv()
        answered = [r for r in records if not r["error"]]
        calls = statistics.mean(
            r["answer"]["trace"]["llm_calls"] + (r["classification"] or {}).get("llm_calls", 0) for r in answered
        )
        per_q = statistics.median(r["wall_seconds"] for r in records)
        # at concurrency 1 the rate is 60 / mean seconds per question (questions are independent,
        # so this extrapolates to any count); at higher concurrency it is measured over the session
        qpm = 60 / statistics.mean(r["wall_seconds"] for r in records) if concurrency == 1 else 60 * len(records) / wall
        rows.append(
            (concurrency, len(records), wall, qpm, per_q, calls, stats["peak_in_flight"], len(records) - len(answered))
        )
        print(
            f"concurrency {concurrency:2d}: {len(records):3d} questions in {wall:6.1f} s -> {qpm:6.1f} questions/min"
            f"  (median {per_q:.2f} s per question, {calls:.1f} LLM calls per question,"
            f" peak {stats['peak_in_flight']} LLM requests in flight, {rows[-1][-1]} errors)",
            flush=True,
        )
    parent.send("stop")
    server.join(timeout=5)

    (c1, _, _, q1, wall1, calls1, _, _), (cn, _, _, qn, _, callsn, _, _) = rows
    capacity = 60 * 32 / (callsn * args.llm_latency)  # the LLM server's own ceiling
    print()
    print(f"speed-up at concurrency {cn}: {qn / q1:.1f}x (target >= 12x)")
    print(
        f"ceilings: concurrency alone {cn} x {q1:.1f} = {cn * q1:.0f} q/min;"
        f" LLM server 32 slots / ({callsn:.1f} calls x {args.llm_latency} s) = {capacity:.0f} q/min"
    )
    if args.source == "pubmed":
        rate = 10 if args.ncbi_key else 3
        per_q = statistics.mean(r["answer"]["trace"]["source_requests"] for r in records if r["answer"])
        print(
            f"E-utilities: {rate} requests/s for the whole host (the shared request budget)"
            f" / {per_q:.1f} requests per question"
            f" = {60 * rate / per_q:.0f} q/min ceiling, whatever the concurrency"
        )
    print(f"run directories: {work}")


if __name__ == "__main__":
    main()
