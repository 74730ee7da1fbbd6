#!/usr/bin/env python
"""Memory and latency of concurrent questions over one local corpus: one engine per process vs one per question.

Each variant runs in a fresh child process. 8 users (threads), each with its own ``ClinfoAI``
and event loop per question as the app runs them, ask real PubMedQA questions through the whole
pipeline over a local corpus (plan, search, fetch, prefilter, screen, synthesise). The LLM is
canned in process (``tests/support/openai_server.canned_reply``: queries made from the question's
words, screening by word overlap) and answers each call after ``--llm-latency`` seconds, so the
questions are in flight together, as they are behind a real LLM; the corpus is all that is real.

* ``per-question``: how every question ran before ``clinfo.corpus.engine``: its own corpus
  (``LocalSource(shared=False)``: SQLite connections, the Tantivy reader, the FAISS index read
  into memory), opened and closed per question;
* ``shared``: the default now: every question borrows the process's engine.

Printed per variant: latency per question (p50/p95, wall, from ``forward`` to the answer), peak
RSS of the process over the concurrent phase (VmHWM, reset after one warm-up question), its
anonymous and file-mapped parts at the end, and the load average. The corpus: the 1M-citation
one of ``benchmarks/corpus_scale.py`` (``--work /work/bench/scale``), searched in ``auto`` mode
(hybrid over its IVF-PQ index).

    python benchmarks/corpus_sharing.py --corpus /work/bench/scale/corpus_1m.db --users 8 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from search_latency import percentile, pubmedqa  # noqa: E402

VARIANTS = ("per-question", "shared")


def status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class CannedLLM:
    """Replies like the loopback OpenAI server, in process, after a fixed delay."""

    spec = "canned:bench"

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def identity(self) -> dict[str, Any]:
        return {"backend": "canned"}

    async def complete(self, request: Any, on_token: Any = None) -> Any:
        from clinfo.llm.base import Completion
        from tests.support.openai_server import canned_reply

        await asyncio.sleep(self.latency)
        text = canned_reply(request.step, request.messages[-1]["content"])
        if on_token is not None:
            on_token(text)
        return Completion(text=text, prompt_tokens=100, completion_tokens=len(text) // 4, model=self.spec)

    async def aclose(self) -> None:
        pass


def child(variant: str, corpus: str, users: int, rounds: int, mode: str, latency: float) -> None:
    from clinfo import ClinfoAI
    from clinfo.sources import register
    from clinfo.sources.corpus import LocalSource

    register("unshared", lambda arg, settings: LocalSource(arg, mode=settings.search_mode, shared=False))
    spec = f"{'unshared' if variant == 'per-question' else 'local'}:{corpus}"
    questions = [it["QUESTION"] for it in pubmedqa()]

    def make() -> Any:
        return ClinfoAI(
            llm=CannedLLM(latency),
            source=spec,
            search_mode=mode,
            use_cache=False,
            num_queries=3,
            prefilter_k=10,
        )

    t0 = time.perf_counter()
    warm = make().forward(questions[-1])  # encoder, page cache; not counted
    warm_s = time.perf_counter() - t0
    result: dict[str, Any] = {
        "variant": variant,
        "warm_s": warm_s,
        "modes": sorted(set(getattr(warm.trace, "search_modes", None) or [])),
        "rss_before_mb": status_mb("VmRSS"),
        "peak_reset": reset_peak(),
        "load_before": os.getloadavg()[0],
    }
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def user(u: int) -> None:
        clinfo = make()  # one per user, as the app keeps one engine per session
        for r in range(rounds):
            q = questions[(u * rounds + r) % (len(questions) - 1)]
            start = time.perf_counter()
            try:
                answer = clinfo.forward(q)
                assert answer.trace.articles_found > 0, "nothing found"
            except Exception as exc:  # counted, and the run goes on
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                times.append(time.perf_counter() - start)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.update(
        wall_s=time.perf_counter() - t0,
        answered=len(times),
        errors=errors,
        p50_s=percentile(times, 50) if times else None,
        p95_s=percentile(times, 95) if times else None,
        peak_mb=status_mb("VmHWM"),
        rss_end_mb=status_mb("VmRSS"),
        anon_end_mb=status_mb("RssAnon"),
        file_end_mb=status_mb("RssFile"),
        load_after=os.getloadavg()[0],
    )
    print(json.dumps(result))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        v, corpus, users, rounds, mode, latency = sys.argv[2:8]
        child(v, corpus, int(users), int(rounds), mode, float(latency))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("/work/bench/scale/corpus_1m.db"))
    ap.add_argument("--users", type=int, default=8, help="concurrent users (threads)")
    ap.add_argument("--rounds", type=int, default=3, help="questions per user")
    ap.add_argument("--mode", default="auto", help="search mode (auto: hybrid where the corpus has vectors)")
    ap.add_argument("--llm-latency", type=float, default=0.2, help="seconds per canned LLM call")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    if not args.corpus.is_file():
        raise SystemExit(f"error: no corpus at {args.corpus}; build one with benchmarks/corpus_scale.py")
    from clinfo.corpus.store import corpus_info

    info = corpus_info(args.corpus)
    print(
        f"corpus {args.corpus}: {info['articles']:,} articles; {args.users} users x {args.rounds} questions,"
        f" search mode {args.mode}, canned LLM {args.llm_latency} s per call; cpus={os.cpu_count()}"
    )
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "_child", variant, str(args.corpus), str(args.users), str(args.rounds)]
        out = subprocess.run([*cmd, args.mode, str(args.llm_latency)], capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            raise SystemExit(f"error: {variant} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        peak = f"{r['peak_mb']:,.0f} MB" + ("" if r["peak_reset"] else " (whole process)")
        p50 = f"{r['p50_s']:.2f}" if r["p50_s"] is not None else "-"
        p95 = f"{r['p95_s']:.2f}" if r["p95_s"] is not None else "-"
        print(
            f"{variant:12s} answered {r['answered']:3d}, errors {len(r['errors'])};"
            f" latency per question p50 {p50} s, p95 {p95} s (wall {r['wall_s']:.1f} s);"
            f" RSS before {r['rss_before_mb']:,.0f} MB, peak {peak}, end {r['rss_end_mb']:,.0f} MB"
            f" (anon {r['anon_end_mb']:,.0f}, mapped files {r['file_end_mb']:,.0f});"
            f" first question {r['warm_s']:.1f} s ({', '.join(r['modes']) or 'mode not recorded'});"
            f" load {r['load_before']:.1f}->{r['load_after']:.1f}"
        )
        for e in r["errors"][:3]:
            print(f"  error: {e}")


if __name__ == "__main__":
    main()
