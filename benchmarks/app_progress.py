#!/usr/bin/env python
"""When the app first shows progress, and when the synthesis starts to appear; prints the figures.

The app's own question path (``clinfo.app.worker``: an ``Engine`` per browser session, each question
a ``BackgroundQuestion`` on a worker thread, its messages drained in batches as the page drains them),
against loopback servers with fixed latency (LLM 0.5 s per call, E-utilities 0.2 s per request, the
real NCBI budget). Timed on the page's side of the queue, from the moment the question is submitted
(Enter: the page builds or reuses the session's engine and starts the run):

* first progress: the ``plan`` event, whose queries the page lists (target <= 1 s);
* first synthesis token after the ``screen`` event that ends screening (target: the LLM's own time
  to a first token, 0.5 s here, and nothing more).

Each app process is fresh (a child process that has imported the page's modules, as a Streamlit
server has before its first question, and shown the page: ``runner.warm_up``); the first question
comes ``--typing`` seconds after the page (0: at once) and builds the session's engine, the next
ones reuse it.

    python benchmarks/app_progress.py [--processes 3] [--questions 3] [--typing 2] [--api-key] [--set claim_check=off]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def child(spec: dict[str, Any]) -> None:
    """One app process: the page's imports, then questions on one session's engine; one JSON line each."""
    import clinfo.app.page  # noqa: F401  (what a Streamlit server has imported before its first question)
    from clinfo.app.worker import BackgroundQuestion, Engine, warm_up
    from clinfo.settings import Settings

    warm_up()  # the page is shown
    time.sleep(spec["typing"])  # the question is typed
    settings = Settings.resolve(**spec["settings"])
    engine = None
    for question in spec["questions"]:
        start = time.perf_counter()
        if engine is None:
            engine = Engine(settings)
        run = BackgroundQuestion(engine, question).start()
        seen: dict[str, float] = {}
        for batch in run.batches():
            now = time.perf_counter() - start
            for kind, payload in batch:
                key = f"event:{payload.stage}" if kind == "event" and "done" not in payload.data else kind
                seen.setdefault(key, now)
        print(json.dumps({"question": question, "seen": seen}), flush=True)


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3, help="fresh app processes")
    parser.add_argument("--questions", type=int, default=3, help="questions per process (one session)")
    parser.add_argument("--llm-latency", type=float, default=0.5)
    parser.add_argument("--eutils-latency", type=float, default=0.2)
    parser.add_argument("--typing", type=float, default=2.0, help="seconds from the page shown to the first question")
    parser.add_argument("--api-key", action="store_true", help="with an NCBI API key: 10 requests/s instead of 3")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a setting (repeatable)")
    args = parser.parse_args()

    from tests.support.eutils import EUtilsServer
    from tests.support.openai_server import OpenAIServer

    rows: list[dict[str, Any]] = []
    with (
        OpenAIServer(latency=args.llm_latency, max_concurrency=32) as llm,
        EUtilsServer(latency=args.eutils_latency) as eutils,
        tempfile.TemporaryDirectory() as cache_dir,
    ):
        terms = eutils.sample_terms(n=args.processes * args.questions, min_hits=20)
        settings = {
            "llm": "openai:bench",
            "base_url": llm.base_url,
            "source": "pubmed",
            "eutils_base_url": eutils.base_url,
            "use_cache": False,
            "cache_dir": cache_dir,
            **({"ncbi_api_key": "bench-key"} if args.api_key else {}),
            **dict(item.split("=", 1) for item in args.set),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINFO_", "OPENAI_", "NCBI_"))}
        for p in range(args.processes):
            questions = [
                f"What is the evidence on {terms[(p * args.questions + i) % len(terms)]}?"
                for i in range(args.questions)
            ]
            spec = json.dumps({"settings": settings, "questions": questions, "typing": args.typing})
            load = os.getloadavg()[0]
            done = subprocess.run(
                [sys.executable, __file__, "_child", spec], env=env, capture_output=True, text=True, cwd=REPO
            )
            if done.returncode != 0:
                sys.exit(f"app process failed: {done.stderr[-3000:]}")
            for i, line in enumerate(done.stdout.splitlines()):
                seen = json.loads(line)["seen"]
                if "answer" not in seen:
                    sys.exit(f"no answer: {seen}")
                row = {
                    "process": p + 1,
                    "turn": i + 1,
                    "plan": seen["event:plan"],
                    "screen": seen.get("event:screen"),
                    "token": seen.get("token"),
                    "answer": seen["answer"],
                    "load": load,
                }
                rows.append(row)
                gap = row["token"] - row["screen"] if row["token"] is not None and row["screen"] else float("nan")
                print(
                    f"process {row['process']} question {row['turn']}: first progress (queries) {row['plan']:4.2f} s"
                    f"  screening done {row['screen'] or float('nan'):4.2f} s  first synthesis token"
                    f" {row['token'] or float('nan'):4.2f} s (+{gap:4.2f} s)  answer {row['answer']:4.2f} s"
                    f"  load {load:4.2f}"
                )
    print()
    budget = "with an NCBI API key" if args.api_key else "without an NCBI API key"
    print(
        f"app question path, loopback LLM {args.llm_latency} s, E-utilities {args.eutils_latency} s, {budget};"
        f" first question {args.typing:g} s after the page"
    )
    for label, chosen in (("first question of a fresh app process", 1), ("later questions of the session", None)):
        part = [r for r in rows if (r["turn"] == 1) == (chosen == 1)]
        if not part:
            continue
        gaps = [r["token"] - r["screen"] for r in part if r["token"] is not None and r["screen"] is not None]
        print(f"{label} ({len(part)}):")
        print(f"  Enter -> first planned query on screen: {_spread([r['plan'] for r in part])} (target <= 1 s)")
        if gaps:
            print(
                f"  screening done -> first synthesis token: {_spread(gaps)}"
                f" (the LLM's own time to a first token: {args.llm_latency} s)"
            )
        print(f"  Enter -> answer: {_spread([r['answer'] for r in part])}")
    loads = [r["load"] for r in rows]
    print(f"load average (1 min) at each process start: {statistics.median(loads):.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_child":
        child(json.loads(sys.argv[2]))
    else:
        main()
