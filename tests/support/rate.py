"""Questions whose E-utilities traffic the rate tests count: a scripted LLM, the real PubMed source.

``python -m tests.support.rate BASE_URL TERM...`` asks one question per term on as many threads and
prints how many answers cite something; :func:`start_asking` starts that as another process (a
second app process, or another host).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from clinfo import Answer, ClinfoAI
from tests.support.common import REPO
from tests.support.scripted import ScriptedLLM, screen_reply


def busiest_second(times: list[float]) -> int:
    """The most request arrivals in any window [t, t + 1 s)."""
    times = sorted(times)
    return max((sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times)), default=0)


def ask(base_url: str, term: str) -> Answer:
    llm = ScriptedLLM(
        {
            "plan": json.dumps({"queries": [term]}),
            "screen": screen_reply(lambda title: True),
            "synthesize": "The retrieved study bears on it [1].",
            "tldr": "Evidence is limited.",
        }
    )
    clinfo = ClinfoAI(
        llm=llm,
        source="pubmed",
        eutils_base_url=base_url,
        use_cache=False,
        num_queries=1,
        prefilter_k=2,
        eutils_retries=0,
        # the server's clock runs in this process: the claim check's encoder (every core, on 8
        # threads at once) would delay its threads in stamping arrivals, which is not what NCBI sees
        claim_check="off",
    )
    return clinfo.forward(f"What is known about {term}?")


def start_asking(base_url: str, terms: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Another process asking about ``terms`` at once against ``base_url``, with ``env`` added."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.rate", base_url, *terms],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


if __name__ == "__main__":
    url, asked = sys.argv[1], sys.argv[2:]
    with ThreadPoolExecutor(len(asked)) as pool:
        answers = list(pool.map(lambda term: ask(url, term), asked))
    print(sum(bool(a.references) for a in answers))
