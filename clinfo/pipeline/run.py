"""The state of one question's run, and the plumbing every step shares.

A :class:`QuestionRun` holds what the question runs with (settings, LLM, source, date window,
PMIDs to ignore), what it records (the trace, warnings, events) and the one way a step calls
the LLM (:meth:`QuestionRun.call_llm`: a prompt, bounded concurrency, token and cost accounting).
The steps (``plan``, ``search``, ``screen``, ``synthesis``) are functions of a run;
``clinfo.pipeline.answer`` runs them in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from clinfo.appraisal.filters import StudyFilter
from clinfo.llm.base import LLM, LLMRequest, TokenCallback
from clinfo.models import Article, StepTiming, StudyFilterNote, Trace
from clinfo.pipeline.events import Event, EventCallback
from clinfo.prompts import load_prompt
from clinfo.settings import Settings
from clinfo.sources.base import DateRange, Source


class QuestionRun:
    """One question's run: its inputs and resources, its trace, its progress events."""

    def __init__(
        self,
        settings: Settings,
        llm: LLM,
        source: Source,
        question: str,
        dates: DateRange | None = None,
        ignore: frozenset[str] = frozenset(),
        on_event: EventCallback | None = None,
        studies: StudyFilter | None = None,
    ) -> None:
        self.settings = settings
        self.llm = llm
        self.source = source
        self.question = question
        self.dates = dates
        self.ignore = ignore
        self.on_event = on_event
        self.trace = Trace()
        # one bound on the LLM calls in flight for this question, whichever step makes them
        self.llm_slots = asyncio.Semaphore(settings.max_concurrency)
        self.searched: set[str] = set()  # every query sent to the source, so none is sent twice
        # records asked for while other queries were still being searched (clinfo.pipeline.search)
        self.early_fetches: list[asyncio.Task[list[Article]]] = []
        self.fetch_asked: set[str] = set()
        # designs and species the evidence is restricted to (default: the settings'), and the
        # PMIDs it left out (passed over by the source, or dropped after fetch on their design)
        self.studies = studies if studies is not None else StudyFilter.from_settings(settings)
        self.left_out: set[str] = set()
        if self.studies.active:
            # a source that decides on each record's derived design needs no PubMed syntax
            natively = getattr(source, "filters_on_design", False)
            self.trace.study_filter = StudyFilterNote(
                designs=list(self.studies.designs or ()),
                humans_only=self.studies.humans_only,
                label=self.studies.label,
                pubmed="" if natively else self.studies.pubmed(),
            )

    def emit(self, stage: str, message: str, **data: Any) -> None:
        """Send a progress :class:`Event` to the caller's callback, if any."""
        if self.on_event is not None:
            self.on_event(Event(stage, message, data))

    def warn(self, message: str) -> None:
        """Record a warning in the answer's trace."""
        self.trace.warnings.append(message)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Record the wall time of the enclosed step in the trace under ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.trace.steps.append(StepTiming(name=name, seconds=round(time.perf_counter() - start, 4)))

    async def call_llm(
        self,
        step: str,
        prompt: str,
        values: dict[str, Any],
        schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        on_token: TokenCallback | None = None,
    ) -> str:
        """One LLM call: the prompt file ``prompt`` filled with ``values``, held to ``schema`` where
        the backend can, streamed to ``on_token``. Returns the reply's text; counts the call, its
        tokens and cost in the trace. ``step`` names the call (for schemas, caches and scripted tests)."""
        request = LLMRequest(
            messages=load_prompt(prompt, self.settings.prompt_dir).messages(**values),
            schema=schema,
            schema_name=step,
            max_tokens=max_tokens,
            temperature=self.settings.temperature,
            step=step,
        )
        async with self.llm_slots:
            completion = await self.llm.complete(request, on_token)
        trace = self.trace
        trace.llm_calls += 1
        if completion.cached:
            trace.llm_cache_hits += 1
        trace.prompt_tokens += completion.prompt_tokens
        trace.completion_tokens += completion.completion_tokens
        if trace.cost_usd is not None:
            trace.cost_usd = None if completion.cost_usd is None else round(trace.cost_usd + completion.cost_usd, 6)
        return completion.text
