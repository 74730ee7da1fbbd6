"""Scripted LLM and in-memory source: unit tests of parsing and control flow only.

Real-component tests use the llama.cpp server (tests/support/llama_server.py) and the
loopback E-utilities server (tests/support/eutils.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from clinfo.llm.base import Completion, LLMRequest, TokenCallback
from clinfo.models import AbstractSection, Article
from clinfo.sources.base import DateRange, SearchResult, SourceStats

Reply = str | Callable[[LLMRequest], str]


class ScriptedLLM:
    """Replies by pipeline step (``request.step``); a list is consumed one reply per call."""

    def __init__(self, replies: dict[str, Reply | list[Reply]], spec: str = "scripted:test") -> None:
        self.replies = {k: (list(v) if isinstance(v, list) else v) for k, v in replies.items()}
        self.spec = spec
        self.calls: list[LLMRequest] = []
        self.closed = False

    def identity(self) -> dict[str, Any]:
        return {"backend": "scripted", "model": self.spec}

    async def complete(self, request: LLMRequest, on_token: TokenCallback | None = None) -> Completion:
        self.calls.append(request)
        await asyncio.sleep(0)
        reply = self.replies.get(request.step, "")
        if isinstance(reply, list):
            reply = reply.pop(0) if len(reply) > 1 else reply[0]
        text = reply(request) if callable(reply) else reply
        if on_token:
            for i in range(0, len(text), 7):  # small chunks so citation brackets get split
                on_token(text[i : i + 7])
        return Completion(
            text=text, prompt_tokens=10, completion_tokens=len(text) // 4, model=self.spec, cost_usd=0.001
        )

    def steps(self) -> list[str]:
        return [c.step for c in self.calls]

    async def aclose(self) -> None:
        self.closed = True


def screen_reply(relevant: Callable[[str], bool]) -> Callable[[LLMRequest], str]:
    """A screening reply that judges by the article title shown in the prompt."""

    def reply(request: LLMRequest) -> str:
        prompt = request.messages[-1]["content"]
        title = prompt.split("Article: ", 1)[1].split("\n", 1)[0]
        ok = relevant(title)
        return json.dumps(
            {
                "relevant": ok,
                "score": 8 if ok else 1,
                "reason": f"judged on {title}",
                "summary": f"Summary of {title}." if ok else "",
                "design": "RCT",
                "sample_size": "120",
                "population": "adults",
                "risk_of_bias": "low",
            }
        )

    return reply


def make_article(pmid: str, title: str, abstract: str = "Some abstract text about the topic.", **kw: Any) -> Article:
    sections = [AbstractSection(text=abstract)] if abstract else []
    return Article(
        pmid=pmid,
        title=title,
        abstract_sections=sections,
        journal=kw.pop("journal", "J Test"),
        year=kw.pop("year", 2020),
        **kw,
    )


class MemorySource:
    """Search by exact query string -> PMIDs; fetch from a dict."""

    name = "memory"

    def __init__(self, results: dict[str, list[str]], articles: Sequence[Article]) -> None:
        self.results = results
        self.articles = {a.pmid: a for a in articles}
        self.stats = SourceStats()
        self.searches: list[tuple[str, int, DateRange | None]] = []
        self.fetches: list[list[str]] = []

    async def search(self, query: str, *, limit: int = 20, dates: DateRange | None = None) -> SearchResult:
        self.searches.append((query, limit, dates))
        self.stats.requests += 1
        pmids = self.results.get(query, [])
        return SearchResult(query=query, pmids=pmids[:limit], count=len(pmids))

    async def fetch(self, pmids: Sequence[str]) -> list[Article]:
        self.fetches.append(list(pmids))
        self.stats.requests += 1
        return [self.articles[p] for p in pmids if p in self.articles]

    async def aclose(self) -> None:
        pass
