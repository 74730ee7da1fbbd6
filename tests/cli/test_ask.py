"""`clinfo ask` as a user runs it: a real subprocess, one-line errors, exit codes."""

from __future__ import annotations

import pytest

from tests.support.cli import assert_one_line_error, clinfo
from tests.support.openai_server import OpenAIServer


@pytest.fixture
def bench_llm():
    with OpenAIServer(latency=0.0) as server:
        yield server


def test_empty_question(bench_llm) -> None:
    result = clinfo("ask", "   ", "--llm", "openai:bench", "--base-url", bench_llm.base_url)
    assert_one_line_error(result, "question is empty")


def test_too_long_question(bench_llm) -> None:
    result = clinfo("ask", "why " * 600, "--llm", "openai:bench", "--base-url", bench_llm.base_url)
    assert_one_line_error(result, "limit is 2000")


def test_unknown_backend() -> None:
    assert_one_line_error(
        clinfo("ask", "Do statins help?", "--llm", "llama3:8b"), "unknown LLM backend 'llama3'", "openai:llama3:8b"
    )


def test_missing_openai_key() -> None:
    assert_one_line_error(clinfo("ask", "Do statins help?", "--llm", "openai:gpt-4o-mini"), "OPENAI_API_KEY")


def test_bad_setting_from_environment() -> None:
    result = clinfo("ask", "Do statins help?", env={"CLINFO_PREFILTER_K": "lots"})
    assert_one_line_error(result, "prefilter_k")


def test_unreachable_llm_server() -> None:
    result = clinfo(
        "ask",
        "Do statins help?",
        "--llm",
        "openai:x",
        "--base-url",
        "http://127.0.0.1:9/v1",
        env={"CLINFO_LLM_RETRIES": "0"},
    )
    assert_one_line_error(result, "cannot reach LLM server", "127.0.0.1:9")


def test_unreachable_eutils(bench_llm) -> None:
    result = clinfo(
        "ask",
        "Do statins reduce stroke?",
        "--llm",
        "openai:bench",
        "--base-url",
        bench_llm.base_url,
        env={"CLINFO_EUTILS_BASE_URL": "http://127.0.0.1:9/eutils/", "CLINFO_EUTILS_RETRIES": "1"},
    )
    assert_one_line_error(result, "esearch")


def test_bad_ignore_and_date(bench_llm) -> None:
    base = ["ask", "Do statins help?", "--llm", "openai:bench", "--base-url", bench_llm.base_url]
    assert_one_line_error(clinfo(*base, "--ignore", "PMID123"), "not a PMID")
    assert_one_line_error(clinfo(*base, "--restriction-date", "yesterday"), "ISO date")


def test_help_mentions_disclaimer() -> None:
    result = clinfo("--help", env={"COLUMNS": "200"})
    assert result.returncode == 0 and "does not diagnose" in result.stdout
