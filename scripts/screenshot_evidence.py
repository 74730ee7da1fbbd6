"""Screenshot of the app answering online with its evidence shown: ``docs/screenshot_evidence.png``.

    python scripts/screenshot_evidence.py        # ~1 min; needs /usr/bin/chromium and ../shared/data

The app runs with ``source=pubmed`` against the loopback E-utilities server
(``tests/support/eutils.py``) serving real PubMed XML: the twelve records of
``pubmed21n1298.xml.gz`` that mention a plane block or the transversus abdominis, among them the
randomised trial PMID 31031480 and its retraction notice 34092875 (both set aside by code), plus
1,500 other records of that file. The LLM is the loopback OpenAI-compatible server
(``tests/support/openai_server.py``) with scripted replies: the screening judges the on-topic
trials and the meta-analysis relevant and gives each a stance read off its abstract's conclusion
by hand (see ``STANCES``), and the synthesis states each conclusion citing its block. The design
badges, the tally, the set-aside list and the claim check are clinfo's own, computed by code
from the records. The photo opens the set-aside list and one claim.
Drives ``scripts/screenshot_app.py`` (headless Chromium over the DevTools protocol).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

QUESTION = "Does transversus abdominis plane block give better analgesia than other techniques after abdominal surgery?"
QUERIES = ["transversus abdominis plane block", "plane block", "transversus abdominis"]
# title fragment -> (stance, design, sample size, population, summary, synthesis sentence); stances
# and sentences were read off each abstract's results and conclusion
STANCES: dict[str, tuple[str, str, str, str, str, str]] = {
    "Caudal Block for Inguinal Hernia": (
        "supporting",
        "randomised controlled trial, single-blinded",
        "62",
        "children having inguinal hernia repair",
        "TAP block gave a longer duration of analgesia than caudal block (12.9 vs 6.5 h) and lower pain scores"
        " at 12 and 18 h.",
        "Children who received TAP block had a prolonged duration of analgesia and lower pain scores than those"
        " who received caudal analgesia after inguinal hernia repair [{n}].",
    ),
    "Open Cholecystectomy": (
        "mixed",
        "randomised controlled trial, double-blind, three arms",
        "123",
        "adults having open cholecystectomy",
        "Subcostal TAP block and intercostal nerve block both prolonged analgesia against no block, with no"
        " difference between the two blocks.",
        "After open cholecystectomy, subcostal TAP block and intercostal nerve blocks gave similar analgesia"
        " and patient satisfaction, both better than no block [{n}].",
    ),
    "Wound Infiltration for Analgesia After Caesarean": (
        "contradicting",
        "systematic review and meta-analysis of randomised trials",
        "475 (7 trials)",
        "women after caesarean section",
        "TAP block and local anaesthetic wound infiltration gave similar pain scores and morphine consumption.",
        "A meta-analysis of seven trials found moderate level evidence that TAP block and wound infiltration"
        " provide similar postoperative analgesia after caesarean section [{n}].",
    ),
    "TINGLE Trial": (
        "not answering",
        "randomised clinical trial, parallel groups, not blinded",
        "102",
        "adults having minimally invasive colorectal surgery",
        "Compares two local anaesthetics within a TAP block; no comparison with another technique.",
        "",
    ),
}


def screen(prompt: str) -> str:
    title = prompt.split("Article: ", 1)[1].split("\n", 1)[0]
    key = next((k for k in STANCES if k.lower() in title.lower()), None)
    if key is None:
        return json.dumps(
            {
                "relevant": False,
                "score": 1,
                "reason": "Not a comparison of analgesic techniques after surgery.",
                **dict.fromkeys(("summary", "design", "sample_size", "population", "risk_of_bias"), ""),
                "stance": "not answering",
            }
        )
    stance, design, size, population, summary, _ = STANCES[key]
    return json.dumps(
        {
            "relevant": True,
            "score": 5 if stance == "not answering" else 8,
            "reason": "Compares a TAP block with another analgesic technique after abdominal surgery.",
            "summary": summary,
            "design": design,
            "sample_size": size,
            "population": population,
            "risk_of_bias": "single centre" if "meta" not in design else "heterogeneous trials",
            "stance": stance,
        }
    )


def synthesize(prompt: str) -> str:
    """One sentence per scripted block, under the number the prompt gave it, then the disagreement."""
    numbers = {}
    for n, title in re.findall(r"^\[(\d+)\] (.+)$", prompt, flags=re.M):
        key = next((k for k in STANCES if k.lower() in title.lower()), None)
        if key:
            numbers[key] = int(n)
    sentences = [STANCES[k][5].format(n=n) for k, n in numbers.items() if STANCES[k][5]]
    against = [n for k, n in numbers.items() if STANCES[k][0] == "contradicting"]
    if against:
        sentences.append(
            f"The evidence disagrees: TAP block prolonged analgesia against no block or caudal block in small"
            f" trials, but a meta-analysis found it no better than wound infiltration [{against[0]}]."
        )
    return " ".join(sentences) or "No relevant evidence was found."


def reply(step: str, prompt: str) -> str:
    if step == "plan":
        return json.dumps({"queries": QUERIES})
    if step == "screen":
        return screen(prompt)
    if step == "tldr":
        return (
            "Small trials suggest TAP block prolongs analgesia compared with no block or caudal block, but a"
            " meta-analysis found it no better than wound infiltration."
        )
    if step == "classify":
        return json.dumps({"answer": "maybe"})
    return synthesize(prompt)


def served_records() -> dict[str, bytes]:
    import gzip

    from clinfo.models import Article
    from clinfo.pubmed.xml import iter_pubmed_xml
    from tests.support.corpus import UPDATE_21, read_slice, records_by_pmid

    with gzip.open(UPDATE_21) as f:
        wanted = [
            a.pmid
            for a in iter_pubmed_xml(f, Article)
            if isinstance(a, Article)
            and re.search(r"plane block|transversus abdominis", f"{a.title} {a.abstract}", flags=re.I)
        ]
    served: dict[str, bytes] = {}
    background = read_slice(UPDATE_21, 1500)
    for i, xml in enumerate(background.records):
        served[background.pmid(i)] = xml.encode("utf-8")
    served.update({p: x.encode("utf-8") for p, x in records_by_pmid(UPDATE_21, tuple(wanted)).items()})
    print(f"serving {len(served)} real records, {len(wanted)} on the topic", file=sys.stderr)
    return served


def main() -> None:
    import screenshot_app

    from tests.support.eutils import EUtilsServer
    from tests.support.openai_server import OpenAIServer

    with EUtilsServer(records=served_records()) as eutils, OpenAIServer(latency=0.2, reply=reply) as llm:
        os.environ.update(
            {
                "CLINFO_EUTILS_BASE_URL": eutils.base_url,
                "CLINFO_BASE_URL": llm.base_url,
                "CLINFO_USE_CACHE": "false",
                "CLINFO_EUTILS_RETRIES": "0",
            }
        )
        for name in ("CLINFO_APP_PASSWORD", "CLINFO_APP_CONFIG", "CLINFO_APP_LLMS", "CLINFO_APP_SOURCES"):
            os.environ.pop(name, None)
        screenshot_app.main(
            [
                "--llm",
                "vllm:scripted",
                "--source",
                "pubmed",
                "--question",
                QUESTION,
                "--earlier",
                "",
                "--out",
                str(REPO / "docs" / "screenshot_evidence.png"),
                "--expand",
                "set aside",
                "--expand",
                "Children who received TAP block",
                "--timeout",
                "300",
                "--max-height",
                "0",
                *sys.argv[1:],
            ]
        )


if __name__ == "__main__":
    main()
