"""Evaluation test data: a small BioASQ task-B file, scripted pipeline parts, prediction records.

The BioASQ questions are written for these tests (no BioASQ data ships here) in the shape of
the real task-B JSON: ``documents`` as PubMed URLs, ``snippets`` with offsets, ``exact_answer``
per question type, ``ideal_answer`` as a list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clinfo.errors import LLMError
from tests.support.scripted import MemorySource, ScriptedLLM, make_article, screen_reply

BIOASQ = {
    "questions": [
        {
            "id": "5e2b1a0cfbd6abf43b000011",
            "type": "yesno",
            "body": (
                "Is metformin associated with lower lactic acidosis risk than previously assumed in type 2 diabetes?"
            ),
            "documents": [
                "http://www.ncbi.nlm.nih.gov/pubmed/20393934",
                "http://www.ncbi.nlm.nih.gov/pubmed/24847880",
            ],
            "snippets": [
                {
                    "document": "http://www.ncbi.nlm.nih.gov/pubmed/20393934",
                    "text": (
                        "There is no evidence from prospective comparative trials that metformin is associated"
                        " with an increased risk of lactic acidosis."
                    ),
                    "offsetInBeginSection": 0,
                    "offsetInEndSection": 128,
                    "beginSection": "abstract",
                    "endSection": "abstract",
                }
            ],
            "exact_answer": "yes",
            "ideal_answer": [
                "Yes. Pooled trial and cohort data show no increased incidence of lactic acidosis with metformin"
                " compared with other glucose-lowering drugs."
            ],
        },
        {
            "id": "5e2b1a0cfbd6abf43b000012",
            "type": "factoid",
            "body": "Which enzyme is inhibited by allopurinol?",
            "documents": ["http://www.ncbi.nlm.nih.gov/pubmed/16723213", "http://www.ncbi.nlm.nih.gov/pubmed/16723213"],
            "snippets": [],
            "exact_answer": [["xanthine oxidase"], ["xanthine oxidoreductase"]],
            "ideal_answer": ["Allopurinol inhibits xanthine oxidase, lowering uric acid production."],
        },
        {
            "id": "5e2b1a0cfbd6abf43b000013",
            "type": "summary",
            "body": "What is the role of vitamin D supplementation in preventing falls in older adults?",
            "documents": ["https://pubmed.ncbi.nlm.nih.gov/31209058/"],
            "snippets": [],
            "ideal_answer": (
                "Trials show no consistent reduction of falls with vitamin D alone in community-dwelling older adults."
            ),
        },
        {
            "id": "5e2b1a0cfbd6abf43b000014",
            "type": "yesno",
            "body": "Does aspirin reduce colorectal adenoma recurrence?",
            "documents": [],
            "snippets": [],
            "exact_answer": "no",
            "ideal_answer": ["No."],
        },
    ]
}


@pytest.fixture
def bioasq_file(tmp_path: Path) -> Path:
    path = tmp_path / "bioasq_b.json"
    path.write_text(json.dumps(BIOASQ, indent=1), encoding="utf-8")
    return path


# ---------------------------------------------------------------- scripted pipeline

MAGNESIUM = [
    make_article(str(100 + i), f"Magnesium trial {i}", "Magnesium supplementation and sleep quality in older adults.")
    for i in range(4)
] + [make_article("200", "Unrelated statin cohort", "Statins and cholesterol.")]


def plan_for(request: Any) -> str:
    # one query per question, made from its id tag "[qN]" so every question has its own results
    prompt = request.messages[-1]["content"]
    question = prompt.split("Question: ", 1)[1]
    tag = question.split("[", 1)[1].split("]", 1)[0]
    if "FAIL" in prompt:
        raise LLMError("the server answered HTTP 500: boom")
    return json.dumps({"queries": [f"{tag}[tiab]"]})


def scripted_llm(classify: str = '{"answer": "yes"}', **extra: Any) -> ScriptedLLM:
    replies: dict[str, Any] = {
        "plan": plan_for,
        "screen": screen_reply(lambda title: "Magnesium" in title),
        "synthesize": "Magnesium improved sleep [1]. A second trial agrees [2].",
        "tldr": "Limited evidence suggests magnesium improves sleep.",
        "classify": classify,
    }
    replies.update(extra)
    return ScriptedLLM(replies)


def scripted_source(n: int) -> MemorySource:
    results = {f"q{i}[tiab]": ["100", "200", "101", "102"] for i in range(n)}
    return MemorySource(results, MAGNESIUM)


def questions_jsonl(path: Path, n: int, fail: tuple[int, ...] = ()) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            text = f"[q{i}] Does magnesium improve sleep in older adults{' FAIL' if i in fail else ''}?"
            f.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "question": text,
                        "label": "yes",
                        "gold_pmids": ["101"],
                        "answer": "Magnesium improves sleep.",
                    }
                )
                + "\n"
            )
    return path
