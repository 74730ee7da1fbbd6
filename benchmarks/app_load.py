#!/usr/bin/env python
"""Load on the app's question path: N concurrent users, loopback LLM and E-utilities, then the local mirror.

Each simulated user is what one browser session is to the Streamlit page: its own
``clinfo.app.worker.Engine`` (one ``ClinfoAI``), each question a ``BackgroundQuestion`` on a worker thread
with its own event loop, its progress drained in batches as the page does. The users run in one
child process per configuration (as they share one app process), so its peak RSS (VmHWM) is that
configuration's alone.

* LLM: the loopback OpenAI-compatible server (``tests/support/openai_server.py``): every call
  answered after ``--llm-latency`` s, at most ``--llm-concurrency`` at once (a served model's batch
  limit; extra calls queue), canned text derived from the prompt.
* ``pubmed``: the loopback E-utilities server (``tests/support/eutils.py``: real PubMed records,
  ``--eutils-latency`` s per request) behind the real request budget (10 requests/s with an API key,
  the institutional setting; ``--no-api-key``: 3/s). It records each request's arrival: requests/s
  over the run, and the busiest second.
* ``local``: the local mirror (``--corpus``, default the 1M-citation corpus of
  ``benchmarks/corpus_scale.py``), ``auto`` search mode (hybrid over its IVF-PQ index), one shared
  corpus engine per process.

Printed per configuration: answers completed, errors, latency per question (p50/p95, from start to
answer), peak RSS, E-utilities requests/s, and the load average (the machine is shared).

    python benchmarks/app_load.py --users 1,8,32 --questions 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from search_latency import percentile  # noqa: E402

DEFAULT_CORPUS = Path("/work/bench/scale/corpus_1m.db")


def status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------------------------------ the users


def users_child(config: dict[str, Any]) -> None:
    """Run ``config["users"]`` users (threads) of ``config["questions"]`` questions each; print JSON."""
    from clinfo.app.worker import BackgroundQuestion, Engine
    from clinfo.settings import Settings

    settings = Settings(**config["settings"])
    questions: list[str] = config["question_texts"]
    n, per_user = config["users"], config["questions"]
    times: list[float] = []
    llm_calls: list[int] = []
    steps: dict[str, list[float]] = {}
    errors: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(n)

    def ask(engine: Any, question: str) -> tuple[Any, str | None]:
        run = BackgroundQuestion(engine, question).start()
        answer, error = None, None
        for batch in run.batches(poll=0.05):  # what the page's script thread does
            for kind, payload in batch:
                if kind == "answer":
                    answer = payload
                elif kind == "error":
                    error = payload
        return answer, error

    # A running app has answered before: imports, encoders and the corpus engine are loaded once
    # per process, by the first question, which is timed apart (its memory counts in the peak).
    t0 = time.perf_counter()
    answer, error = ask(Engine(settings), questions[-1])
    first_s = time.perf_counter() - t0
    if answer is None:
        raise SystemExit(f"the first question failed: {error}")

    def user(u: int) -> None:
        engine = Engine(settings)  # one per browser session
        start_gate.wait()
        for k in range(per_user):
            question = questions[(u * per_user + k) % (len(questions) - 1)]
            t0 = time.perf_counter()
            answer, error = ask(engine, question)
            elapsed = time.perf_counter() - t0
            with lock:
                if answer is not None:
                    times.append(elapsed)
                    llm_calls.append(answer.trace.llm_calls)
                    for step in answer.trace.steps:
                        steps.setdefault(step.name, []).append(step.seconds)
                else:
                    errors.append(str(error)[:200])

    t0 = time.perf_counter()
    timed_from = time.monotonic()  # the loopback servers stamp arrivals with this clock (system-wide)
    threads = [threading.Thread(target=user, args=(u,), name=f"user-{u}") for u in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(
        json.dumps(
            {
                "wall_s": time.perf_counter() - t0,
                "first_s": first_s,
                "timed_from": timed_from,
                "llm_calls": sum(llm_calls),
                "steps": {name: percentile(v, 50) for name, v in steps.items()},
                "claim_check": settings.claim_check,
                "answered": len(times),
                "errors": errors,
                "p50_s": percentile(times, 50) if times else None,
                "p95_s": percentile(times, 95) if times else None,
                "peak_mb": status_mb("VmHWM"),
                "threads_peak": threading.active_count(),
            }
        )
    )


# ------------------------------------------------------------------------------------------ the driver


def run_config(config: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "_users", json.dumps(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=3600,
    )
    if out.returncode != 0:
        raise SystemExit(f"error: the users' process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def line(label: str, n: int, r: dict[str, Any], load: tuple[float, float], extra: str = "") -> str:
    p50 = f"{r['p50_s']:.1f}" if r["p50_s"] is not None else "-"
    p95 = f"{r['p95_s']:.1f}" if r["p95_s"] is not None else "-"
    steps = ", ".join(f"{name} {sec:.1f}" for name, sec in r["steps"].items())
    return (
        f"{label:7s} N={n:<3d} answered {r['answered']:3d}, errors {len(r['errors'])};"
        f" latency p50 {p50} s, p95 {p95} s (wall {r['wall_s']:.0f} s); peak RSS {r['peak_mb']:,.0f} MB{extra}"
        f"  [load {load[0]:.1f}->{load[1]:.1f}]\n"
        f"          median step seconds: {steps or '-'}; first question of the process {r['first_s']:.1f} s"
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_users":
        users_child(json.loads(sys.argv[2]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", default="1,8,32", help="comma-separated numbers of concurrent users")
    ap.add_argument("--questions", type=int, default=2, help="questions each user asks, one after another")
    ap.add_argument("--llm-latency", type=float, default=0.5, help="seconds per LLM call")
    ap.add_argument("--llm-concurrency", type=int, default=64, help="LLM calls the server serves at once")
    ap.add_argument("--eutils-latency", type=float, default=0.2, help="seconds per E-utilities request")
    ap.add_argument("--no-api-key", action="store_true", help="3 E-utilities requests/s instead of 10")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="local mirror ('none' to skip)")
    ap.add_argument("--sources", default="pubmed,local")
    ap.add_argument("--prefilter-k", type=int, default=16, help="articles screened per question")
    ap.add_argument("--claim-check", choices=("default", "mark", "recheck", "off"), default="default")
    args = ap.parse_args()

    from tests.support.eutils import EUtilsServer
    from tests.support.openai_server import OpenAIServer

    counts = [int(x) for x in args.users.split(",")]
    sources = args.sources.split(",")
    if "local" in sources and not args.corpus.is_file():
        print(f"(no corpus at {args.corpus}: the local mirror is skipped)")
        sources.remove("local")
    rate = "3/s, no API key" if args.no_api_key else "10/s, with an API key"
    print(
        f"app load: users x {args.questions} questions; LLM {args.llm_latency} s per call, {args.llm_concurrency}"
        f" at once; E-utilities {args.eutils_latency} s per request, budget {rate}; prefilter_k"
        f" {args.prefilter_k}; claim check {args.claim_check}; cpus={os.cpu_count()},"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    with (
        OpenAIServer(latency=args.llm_latency, max_concurrency=args.llm_concurrency) as llm,
        EUtilsServer(latency=args.eutils_latency) as eutils,
        tempfile.TemporaryDirectory() as tmp,
    ):
        terms = eutils.sample_terms(n=64, min_hits=args.prefilter_k + 4)
        pubmed_questions = [f"What is the evidence on {t}?" for t in terms]
        from search_latency import pubmedqa

        local_questions = [it["QUESTION"] for it in pubmedqa()][:200]
        base = {
            "llm": "openai:bench",
            "base_url": llm.base_url,
            "openai_api_key": "sk-bench",
            "use_cache": False,
            "cache_dir": tmp,
            "prefilter_k": args.prefilter_k,
        }
        if args.claim_check != "default":
            base["claim_check"] = args.claim_check
        for source in sources:
            for n in counts:
                settings = dict(base)
                if source == "pubmed":
                    settings.update(source="pubmed", eutils_base_url=eutils.base_url)
                    if not args.no_api_key:
                        settings["ncbi_api_key"] = "bench-key"
                    questions = pubmed_questions
                else:
                    settings.update(source=f"local:{args.corpus}", search_mode="auto")
                    questions = local_questions
                config = {"settings": settings, "users": n, "questions": args.questions, "question_texts": questions}
                eutils.requests.clear()
                before = os.getloadavg()[0]
                r = run_config(config)
                load = (before, os.getloadavg()[0])
                extra = f"; LLM calls {r['llm_calls']:,}"
                if source == "pubmed":
                    arrivals = sorted(q.time for q in eutils.requests if q.time >= r["timed_from"])
                    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
                    busiest = max(
                        (sum(1 for u in arrivals[i:] if u < t + 1.0) for i, t in enumerate(arrivals)), default=0
                    )
                    rps = f"{len(arrivals) / span:.1f}" if span > 0 else "-"
                    extra += f"; E-utilities {len(arrivals)} requests, {rps}/s, busiest second {busiest}"
                print(line(source, n, r, load, extra), flush=True)
                for e in sorted(set(r["errors"]))[:3]:
                    print(f"    error: {e}")


if __name__ == "__main__":
    main()
