"""One question end to end against loopback servers with fixed latency; prints figures.

LLM: an OpenAI-compatible server answering every call after 0.5 s (32 concurrent at most).
E-utilities: the loopback server with real PubMed records, 0.2 s per request; the real rate
limiter (3 requests/s without an API key) applies. Floor: four sequential LLM round trips plus
two E-utilities round trips = 2.4 s. Target: wall / floor <= 1.5.

    python benchmarks/pipeline_latency.py [--questions 5] [--llm-latency 0.5] [--eutils-latency 0.2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clinfo import ClinfoAI  # noqa: E402
from tests.support.eutils import EUtilsServer  # noqa: E402
from tests.support.openai_server import OpenAIServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--llm-latency", type=float, default=0.5)
    parser.add_argument("--eutils-latency", type=float, default=0.2)
    parser.add_argument("--candidates", type=int, default=16, help="articles screened (prefilter_k)")
    args = parser.parse_args()
    floor = 4 * args.llm_latency + 2 * args.eutils_latency

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


if __name__ == "__main__":
    main()
