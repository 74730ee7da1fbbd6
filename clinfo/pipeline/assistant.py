"""``ClinfoAI``, the public entry point, and ``run_sync``, the sync facade over the async core.

A ``ClinfoAI`` holds what lasts across questions (the resolved settings, one LLM backend);
each question gets its own cache handle, source (unless one was passed in) and
:class:`~clinfo.pipeline.run.QuestionRun`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterable
from typing import Any

from clinfo.cache import note_problem, open_cache
from clinfo.lazy import preload
from clinfo.llm.base import LLM, TokenCallback, with_cache
from clinfo.llm.registry import create_llm
from clinfo.models import Answer
from clinfo.pipeline.answer import answer_question
from clinfo.pipeline.events import EventCallback
from clinfo.pipeline.inputs import check_ignore, check_question, check_restriction_date, check_studies
from clinfo.pipeline.run import QuestionRun
from clinfo.settings import Settings
from clinfo.sources import DateRange, Source, create_source

# What the steps after planning import on first use (query parsing, the esearch parser, design
# rules, BM25 and its numpy, stems): a first question in a fresh process loads them on a thread
# while its plan call is in flight, instead of on the critical path when each step first needs them.
LATER_IMPORTS = (
    "clinfo.pubmed.query",
    "Bio.Entrez.Parser",
    "clinfo.appraisal.design_text",
    "rank_bm25",
    "snowballstemmer",
)
_preload_started = False


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
        self.settings = Settings.resolve(
            settings,
            llm=llm if isinstance(llm, str) else None,
            source=source if isinstance(source, str) else None,
            use_cache=use_cache,
            **overrides,
        )
        self._source = source if source is not None and not isinstance(source, str) else None
        # One backend object for every call: it keeps what it learnt (the server's structured-output
        # dialect) and heavy engines load once. Unknown backends and missing keys fail here, and
        # nothing connects yet: clients are made per event loop on first use.
        self._owns_llm = llm is None or isinstance(llm, str)
        backend = create_llm(self.settings.llm, self.settings) if self._owns_llm else llm
        self._llm: LLM = backend  # type: ignore[assignment]
        self._in_flight = 0  # concurrent aforward calls; the last one out closes the connections

    async def aforward(
        self,
        question: str,
        *,
        restriction_date: dt.date | str | None = None,
        ignore: str | int | Iterable[str | int] | None = None,
        designs: str | Iterable[str] | None = None,
        humans_only: bool | None = None,
        on_event: EventCallback | None = None,
        on_token: TokenCallback | None = None,
    ) -> Answer:
        """Answer ``question``. ``on_token`` receives the synthesis as it streams (citations
        already checked); ``on_event`` receives progress :class:`~clinfo.pipeline.events.Event`s.
        ``designs`` / ``humans_only`` restrict this question's evidence (default: the settings')."""
        global _preload_started
        settings = self.settings
        if not _preload_started:
            # run when this task first waits (the plan's call on the wire): sooner, the thread would
            # slow down the work that sends that call
            _preload_started = True
            asyncio.get_running_loop().call_soon(preload, LATER_IMPORTS)
        text = check_question(question, settings.max_question_chars)
        ignored = check_ignore(ignore)
        studies = check_studies(settings, designs, humans_only)
        end = check_restriction_date(restriction_date) or settings.restriction_date
        dates = DateRange.ending(end, settings.date_window_years)
        cache = open_cache(settings)
        llm = with_cache(self._llm, cache)
        source = self._source or create_source(settings.source, settings, cache=cache)
        self._in_flight += 1
        try:
            run = QuestionRun(settings, llm, source, text, dates, ignored, on_event, studies)
            answer = await answer_question(run, on_token)
            note_problem(answer.trace, cache)  # a cache that failed was left out: said once
            return answer
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
    """Run ``coro`` to completion from sync code and return its result (or raise its error),
    in a fresh thread when this thread already runs an event loop (Jupyter, Streamlit)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
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
