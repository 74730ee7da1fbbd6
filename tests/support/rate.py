"""Questions whose E-utilities traffic the rate tests count: a scripted LLM, the real PubMed source."""

from __future__ import annotations

import json

from clinfo import Answer, ClinfoAI
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
