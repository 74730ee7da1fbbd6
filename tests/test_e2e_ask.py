"""The whole `clinfo ask` flow on real parts: llama.cpp's OpenAI-compatible server (SmolLM2)
and the loopback E-utilities server with real PubMed records."""

from __future__ import annotations

import json
import re

from tests.support.cli import clinfo


def test_clinfo_ask_json_on_real_servers(llama_server, eutils_server) -> None:
    term = eutils_server.sample_terms(n=1, min_hits=8)[0]
    result = clinfo(
        "ask",
        f"Is {term} associated with higher mortality in adults?",
        "--json",
        "--llm",
        f"openai:{llama_server.model}",
        "--base-url",
        llama_server.base_url,
        "--num-queries",
        "2",
        "--prefilter-k",
        "4",
        env={"CLINFO_EUTILS_BASE_URL": eutils_server.base_url, "CLINFO_SCREEN_ABSTRACT_CHARS": "1200"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)

    searched = [r for r in eutils_server.requests if r.endpoint == "esearch"]
    assert searched and all(r.method == "POST" and r.params["tool"] == "clinfo" for r in searched)
    assert sorted(q["query"] for q in answer["queries"]) == sorted(r.params["term"] for r in searched)
    fetched = {pmid for r in eutils_server.requests if r.endpoint == "efetch" for pmid in r.params["id"].split(",")}
    screened = {s["article"]["pmid"] for s in answer["article_summaries"] + answer["irrelevant_articles"]}
    assert screened and screened <= fetched

    references = answer["references"]
    assert {r["pmid"] for r in references} <= fetched
    assert [r["n"] for r in references] == list(range(1, len(references) + 1))
    for group in re.findall(r"\[([\d,\s\u2013-]+)\]", answer["synthesis"]):
        for n in re.findall(r"\d+", group):
            assert 1 <= int(n) <= len(references), answer["synthesis"]
    if answer["no_evidence"]:
        assert not references and "No relevant evidence" in answer["synthesis"]
    else:
        assert references and answer["synthesis"].strip()
        # a yes/no question: the server's replies, held to the schema's stance enum, are tallied
        stances = [s["stance"] for s in answer["article_summaries"]]
        assert set(stances) <= {"supporting", "contradicting", "mixed", "not answering", "not judged"}, stances
        assert sum(answer["agreement"]["counts"].values()) == len(stances)
    trace = answer["trace"]
    assert trace["llm_calls"] >= 2 + len(screened) and trace["prompt_tokens"] > 0 and trace["completion_tokens"] > 0
    assert trace["cost_usd"] is None  # a local model has no public price


def test_clinfo_ask_streams_markdown_with_real_server(llama_server, eutils_server) -> None:
    term = eutils_server.sample_terms(n=2, min_hits=8)[1]
    result = clinfo(
        "ask",
        f"What are the outcomes of {term}?",
        "--llm",
        f"openai:{llama_server.model}",
        "--base-url",
        llama_server.base_url,
        "--num-queries",
        "1",
        "--prefilter-k",
        "3",
        env={"CLINFO_EUTILS_BASE_URL": eutils_server.base_url, "CLINFO_SCREEN_ABSTRACT_CHARS": "1000"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"## What are the outcomes of {term}?")
    assert "**TL;DR:**" in result.stdout
    assert "LLM calls" in result.stdout
    assert "query:" in result.stderr  # progress went to stderr, not stdout
