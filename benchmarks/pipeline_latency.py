"""One question end to end against loopback servers with fixed latency; prints figures.

LLM: an OpenAI-compatible server answering every call after 0.5 s (32 concurrent at most).
E-utilities: the loopback server with real PubMed records, 0.2 s per request; the real rate
limiter (3 requests/s without an API key, 10/s with one) applies. Floor: four sequential LLM round
trips plus two E-utilities round trips = 2.4 s. Target: wall / floor <= 1.5 in a warm process.

``--cold N`` runs ``clinfo ask --json`` as a fresh process N times instead, as a person at a
terminal does: wall time from launch to exit, the pipeline's own step times (from the answer's
trace), the time outside the steps (interpreter start, imports, setup, teardown), when the first
LLM and E-utilities requests reached the servers, and the machine's load. Target: <= 1.25 x floor.

    python benchmarks/pipeline_latency.py [--questions 5] [--llm-latency 0.5] [--eutils-latency 0.2]
    python benchmarks/pipeline_latency.py --cold 6 [--api-key] [--set claim_check=off]

The process's CPU time (user + system) is printed beside its wall time: on a busy machine the wall
time grows with the load, while the CPU time is what the run itself costs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clinfo import ClinfoAI  # noqa: E402
from clinfo.sources.rate_limit import SpacedRate  # noqa: E402
from tests.support.eutils import EUtilsServer  # noqa: E402
from tests.support.openai_server import OpenAIServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--llm-latency", type=float, default=0.5)
    parser.add_argument("--eutils-latency", type=float, default=0.2)
    parser.add_argument("--candidates", type=int, default=16, help="articles screened (prefilter_k)")
    parser.add_argument("--cold", type=int, default=0, metavar="N", help="run `clinfo ask` as a fresh process N times")
    parser.add_argument("--api-key", action="store_true", help="with an NCBI API key: 10 requests/s instead of 3")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a setting (repeatable)")
    args = parser.parse_args()
    args.settings = dict(item.split("=", 1) for item in args.set)
    floor = 4 * args.llm_latency + 2 * args.eutils_latency
    if args.cold:
        cold(args, floor)
        return

    with (
        OpenAIServer(latency=args.llm_latency, max_concurrency=32) as llm,
        EUtilsServer(latency=args.eutils_latency) as eutils,
    ):
        terms = eutils.sample_terms(n=args.questions, min_hits=args.candidates + 4)
        clinfo = ClinfoAI(
            llm="openai:bench",
            base_url=llm.base_url,
            source="pubmed",
            eutils_base_url=eutils.base_url,
            prefilter_k=args.candidates,
            use_cache=False,
            cache_dir=Path(tempfile.mkdtemp()),
            **({"ncbi_api_key": "bench-key"} if args.api_key else {}),
            **args.settings,
        )
        rows = []
        for term in terms:
            question = f"What is the evidence on {term}?"
            start = time.perf_counter()
            answer = clinfo.forward(question)
            wall = time.perf_counter() - start
            t = answer.trace
            rows.append(
                (wall, t.llm_calls, t.prompt_tokens + t.completion_tokens, t.articles_screened, t.source_requests)
            )
            steps = " ".join(f"{s.name}={s.seconds:.2f}" for s in t.steps)
            print(
                f"{question[:48]:48s} wall {wall:5.2f} s  ratio {wall / floor:4.2f}  LLM calls {t.llm_calls:2d}"
                f"  tokens {t.prompt_tokens + t.completion_tokens:6d}  screened {t.articles_screened:2d}"
                f"  E-utilities requests {t.source_requests}  refs {len(answer.references)}  [{steps}]"
            )
    walls = [r[0] for r in rows]
    print()
    print(f"floor (4 LLM x {args.llm_latency} s + 2 E-utilities x {args.eutils_latency} s): {floor:.2f} s")
    print(f"median wall time: {statistics.median(walls):.2f} s  (min {min(walls):.2f}, max {max(walls):.2f})")
    print(f"median ratio to floor: {statistics.median(walls) / floor:.2f}  (target <= 1.5)")
    print(
        f"LLM calls per question: {statistics.mean(r[1] for r in rows):.1f};"
        f" tokens per question: {statistics.mean(r[2] for r in rows):.0f}"
    )
    print(
        "upstream Clinfo.ai's fixed sleeps alone:"
        f" {2.0 * statistics.mean(r[1] for r in rows):.0f} s of 2 s sleeps per question"
    )


class _Stamped(list):
    """A server's request log that also notes when each request arrived (this process's clock)."""

    def __init__(self, stamps: list[float]) -> None:
        super().__init__()
        self.stamps = stamps

    def append(self, item: object) -> None:
        self.stamps.append(time.perf_counter())
        super().append(item)


def _spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def cold(args: argparse.Namespace, floor: float) -> None:
    """``clinfo ask`` as a fresh process per question, against the same loopback servers."""
    clinfo_cmd = Path(sys.executable).with_name("clinfo")
    command = [str(clinfo_cmd)] if clinfo_cmd.exists() else [sys.executable, "-m", "clinfo"]
    llm_stamps: list[float] = []
    with (
        OpenAIServer(latency=args.llm_latency, max_concurrency=32) as llm,
        EUtilsServer(latency=args.eutils_latency) as eutils,
        tempfile.TemporaryDirectory() as cache_dir,
    ):
        llm.seen = _Stamped(llm_stamps)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINFO_", "OPENAI_", "NCBI_"))}
        env.update(
            CLINFO_LLM="openai:bench",
            OPENAI_BASE_URL=llm.base_url,
            CLINFO_SOURCE="pubmed",
            CLINFO_EUTILS_BASE_URL=eutils.base_url,
            CLINFO_PREFILTER_K=str(args.candidates),
            CLINFO_USE_CACHE="false",
            CLINFO_CACHE_DIR=cache_dir,
        )
        if args.api_key:
            env["NCBI_API_KEY"] = "bench-key"
        env.update({f"CLINFO_{k.upper()}": v for k, v in args.settings.items()})
        terms = eutils.sample_terms(n=max(args.questions, 1), min_hits=args.candidates + 4)
        # one process first, unmeasured: the OS file cache then holds the interpreter and packages,
        # as it does for anyone who has run a command in the last minutes
        subprocess.run([*command, "--help"], env=env, capture_output=True, check=True)
        rows = []
        for i in range(args.cold):
            question = f"What is the evidence on {terms[i % len(terms)]}?"
            load = os.getloadavg()[0]
            del llm_stamps[:]
            first_eutils = len(eutils.requests)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start, start_mono = time.perf_counter(), time.monotonic()
            done = subprocess.run([*command, "ask", "--json", "--quiet", question], env=env, capture_output=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if done.returncode != 0:
                sys.exit(f"clinfo ask failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
            trace = json.loads(done.stdout)["trace"]
            steps = {s["name"]: s["seconds"] for s in trace["steps"]}
            inside = sum(steps.values())
            # the servers' clocks are this process's (their threads run here): launch -> first request
            to_llm = llm_stamps[0] - start if llm_stamps else float("nan")
            ncbi = eutils.requests[first_eutils:]
            to_eutils = ncbi[0].time - start_mono if ncbi else float("nan")
            # what NCBI's budget alone allows: its requests one interval apart, the last one's answer
            spacing = SpacedRate(10.0 if args.api_key else 3.0).interval  # the limiter's own spacing
            budget = (trace["source_requests"] - 1) * spacing + args.eutils_latency
            rows.append((wall, inside, wall - inside, to_llm, to_eutils, load, cpu, budget, trace["source_requests"]))
            shown = " ".join(f"{k}={v:.2f}" for k, v in steps.items())
            print(
                f"run {i + 1}: wall {wall:4.2f} s  ratio {wall / floor:4.2f}  CPU {cpu:4.2f} s  steps {inside:4.2f} s"
                f"  outside {wall - inside:4.2f} s  first LLM request at {to_llm:4.2f} s"
                f"  first E-utilities at {to_eutils:4.2f} s  E-utilities {trace['source_requests']} requests"
                f" (budget minimum {budget:4.2f} s)  load {load:4.2f}  [{shown}]"
            )
    walls = [r[0] for r in rows]
    print()
    settings = "".join(f", {k}={v}" for k, v in args.settings.items())
    print(f"cold `clinfo ask` ({'with' if args.api_key else 'without'} an NCBI API key{settings}), {len(rows)} runs")
    print(f"floor (4 LLM x {args.llm_latency} s + 2 E-utilities x {args.eutils_latency} s): {floor:.2f} s")
    print(f"wall: {_spread(walls)}; ratio to floor {statistics.median(walls) / floor:.2f} (target <= 1.25)")
    print(f"CPU time of the process: {_spread([r[6] for r in rows])}")
    print(f"pipeline steps: {_spread([r[1] for r in rows])}")
    print(f"outside the steps (start, imports, setup, exit): {_spread([r[2] for r in rows])}")
    print(f"launch -> first LLM request: {_spread([r[3] for r in rows])}")
    print(
        f"E-utilities: the floor counts 2 x {args.eutils_latency} s; NCBI's budget alone needs"
        f" {_spread([r[7] for r in rows])} for the {statistics.median(r[8] for r in rows):.0f} requests made"
        " (one interval between starts)"
    )
    # the floor with the E-utilities part the budget allows, run by run
    budgeted = [r[0] / (4 * args.llm_latency + max(r[7], 2 * args.eutils_latency)) for r in rows]
    print(f"ratio to the floor with the budget's E-utilities time: median {statistics.median(budgeted):.2f}")
    loads = [r[5] for r in rows]
    print(
        f"load average (1 min) at each launch: {statistics.median(loads):.2f}"
        f" (min {min(loads):.2f}, max {max(loads):.2f})"
    )
    print(f"launch -> first E-utilities request: {_spread([r[4] for r in rows])}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
