"""Runs one question for the app, off the Streamlit script thread.

Streamlit elements may only be touched from the script thread, and that thread must stay free
to notice a stop or rerun. So the pipeline runs on a worker thread with an event loop of its own;
its ``on_event``/``on_token`` callbacks only put messages on a queue, and the script thread
drains the queue (:meth:`BackgroundQuestion.batches`) and updates the page. Stopping the script
cancels the worker's task, so an abandoned question does not keep calling the LLM.

Each browser session keeps one :class:`Engine` (a ``ClinfoAI`` and its conversation source)
across questions, so the LLM backend is made once (an embedded model loads once, a server's
structured-output dialect is probed once); the page rebuilds it only when the run settings
change. Questions on one engine run one at a time: the backend's connections belong to the
event loop of the question that opened them.

Follow-up questions can reuse what the conversation already found: :class:`ConversationSource`
wraps the configured source and adds the conversation's articles to every search's results,
so the BM25 prefilter and the LLM judge them against the new question alongside new hits.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from clinfo.errors import ClinfoError, one_line
from clinfo.redact import redact

if TYPE_CHECKING:
    from clinfo.appraisal.filters import StudyFilter
    from clinfo.models import Answer, Article
    from clinfo.pipeline import ClinfoAI
    from clinfo.settings import Settings
    from clinfo.sources.base import DateRange, SearchResult, Source, SourceStats

# "merge": search again and add the conversation's articles; "search": search again only;
# "reuse": only the conversation's articles, no new search (offline, fast follow-ups)
FollowUps = Literal["merge", "search", "reuse"]
FOLLOWUP_LABELS: dict[str, str] = {
    "merge": "Search again and reuse the articles already found",
    "search": "Search again only",
    "reuse": "Reuse the articles already found only",
}


def _in_window(article: Article, dates: DateRange | None) -> bool:
    # the conversation's articles obey the same date window as new searches (by year, as
    # records carry); unlike a search's hits, an undated article the conversation found is kept
    return dates is None or article.year is None or dates.contains(article.year)


class ConversationSource:
    """A source whose results also include articles found earlier in the conversation.

    The same object serves every question of a session's engine; :meth:`reset` gives it the
    question's inner source (opened on the question's event loop) and known articles."""

    def __init__(self, inner: Source | None = None, known: Sequence[Article] = ()) -> None:
        self.reset(inner, known)

    def reset(self, inner: Source | None, known: Sequence[Article]) -> None:
        from clinfo.sources.base import SourceStats

        self.inner = inner
        self.known = {a.pmid: a for a in known}
        self.reused: set[str] = set()  # PMIDs this run took from the conversation
        self._stats = SourceStats()

    @property
    def name(self) -> str:
        return self.inner.name if self.inner is not None else "conversation"

    @property
    def stats(self) -> SourceStats:
        return self.inner.stats if self.inner is not None else self._stats

    @property
    def filters_on_design(self) -> bool:
        return bool(getattr(self.inner, "filters_on_design", False))

    async def search(
        self, query: str, *, limit: int = 20, dates: DateRange | None = None, studies: StudyFilter | None = None
    ) -> SearchResult:
        from clinfo.sources.base import SearchResult, search_studies

        # the conversation's own articles are checked against the study filter after fetch, as every record is
        if self.inner is not None:
            result = await search_studies(self.inner, query, limit=limit, dates=dates, studies=studies)
        else:
            result = SearchResult(query=query, pmids=[], count=0)
        new = set(result.pmids)
        extra = [p for p, a in self.known.items() if p not in new and _in_window(a, dates)]
        self.reused.update(extra)
        return SearchResult(
            query=query,
            pmids=[*result.pmids, *extra],
            count=result.count + len(extra),
            translation=result.translation,
            warnings=list(result.warnings),
            mode=result.mode,  # the ranking the inner source ran, for the answer's trace
            left_out=list(result.left_out),
        )

    async def fetch(self, pmids: Sequence[str]) -> list[Article]:
        missing = [p for p in pmids if p not in self.known]
        fetched: dict[str, Article] = {}
        if missing and self.inner is not None:
            fetched = {a.pmid: a for a in await self.inner.fetch(missing)}
        out = []
        for p in pmids:
            article = self.known.get(p) or fetched.get(p)
            if article is not None:
                out.append(article)
        return out

    async def aclose(self) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            await inner.aclose()


def error_message(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """One line for the chat: clinfo's typed errors say what to do; anything else is named."""
    if isinstance(exc, ClinfoError):
        text = str(exc) or type(exc).__name__
    else:
        text = f"unexpected error ({type(exc).__name__}): {exc}"
    return one_line(redact(text, secrets))


# messages from the worker: ("event", Event) | ("token", str) | ("note", str) | ("answer", Answer) | ("error", str)
Message = tuple[str, Any]

# What the first question of an app process imports: the pipeline with its steps, the LLM client,
# the sources and the modules later steps load on first use.
QUESTION_IMPORTS = (
    "clinfo.pipeline.assistant",
    "clinfo.llm.openai_compat",
    "clinfo.sources.pubmed",
    "clinfo.pipeline.search",
    "clinfo.pubmed.query",
    "rank_bm25",
)
_warm = threading.Event()


def warm_up() -> None:
    """Loads :data:`QUESTION_IMPORTS` on a thread, once per process: called when the page is first
    shown, it runs while the person types, so the first question shows its queries sooner."""
    if not _warm.is_set():
        _warm.set()
        from clinfo.lazy import preload

        preload(QUESTION_IMPORTS)


def settings_key(settings: Settings) -> str:
    """What decides whether a session's engine can be reused: every public setting."""
    return json.dumps(settings.public_dict(), sort_keys=True, default=str)


class Engine:
    """One ``ClinfoAI`` for a browser session, reused across its questions."""

    def __init__(self, settings: Settings) -> None:
        from clinfo.pipeline import ClinfoAI

        self.key = settings_key(settings)
        self.source = ConversationSource()
        # a source object passed in is not closed by the pipeline: BackgroundQuestion does it
        self.clinfo: ClinfoAI = ClinfoAI(source=self.source, settings=settings)
        self.settings = self.clinfo.settings  # preset applied
        self.busy = threading.Lock()  # one question at a time (see the module's docstring)


class BackgroundQuestion:
    """One question on a worker thread; read its progress with :meth:`batches`."""

    def __init__(
        self,
        engine: Engine,
        question: str,
        *,
        known: Sequence[Article] = (),
        followups: FollowUps = "merge",
        secrets: Sequence[str] = (),
    ) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.question = question
        self.followups = followups
        self.known = list(known) if followups in ("merge", "reuse") else []
        self.secrets = list(secrets)
        self.messages: queue.Queue[Message] = queue.Queue()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._finished = False
        self._thread = threading.Thread(target=self._main, name="clinfo-app-question", daemon=True)

    # ---- worker thread
    def start(self) -> BackgroundQuestion:
        self._thread.start()
        return self

    def _main(self) -> None:
        # a stopped question may still be closing its connections on the same engine
        with self.engine.busy:
            self._run()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            with self._lock:
                if self._cancelled:
                    self.messages.put(("error", "stopped"))
                    return
                self._loop = loop
                self._task = loop.create_task(self._answer())
            answer = loop.run_until_complete(self._task)
            self.messages.put(("answer", answer))
        except asyncio.CancelledError:
            self.messages.put(("error", "stopped"))
        except Exception as exc:  # shown as one line in the chat; never a traceback
            self.messages.put(("error", error_message(exc, self.secrets)))
        finally:
            with self._lock:
                self._loop = None
            loop.close()

    async def _answer(self) -> Answer:
        from clinfo.cache import note_problem, open_cache
        from clinfo.sources import create_source  # plug-in sources too (clinfo.sources.register)

        s = self.settings
        use_inner = not (self.followups == "reuse" and self.known)
        if self.followups == "reuse" and not self.known:
            self.messages.put(("note", "No articles were found earlier in this conversation: searching again."))
        cache = open_cache(s)
        try:
            source = self.engine.source
            source.reset(create_source(s.source, s, cache=cache) if use_inner else None, self.known)
            try:
                answer = await self.engine.clinfo.aforward(
                    self.question,
                    on_event=lambda e: self.messages.put(("event", e)),
                    on_token=lambda t: self.messages.put(("token", t)),
                )
            finally:
                await source.aclose()
            note_problem(answer.trace, cache)  # the source's cache; the LLM's is noted by aforward
            if source.reused:
                self.messages.put(
                    ("note", f"{len(source.reused)} articles from earlier in the conversation were considered.")
                )
            return answer
        finally:
            cache.close()

    # ---- script thread
    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None and not self._task.done():
                self._loop.call_soon_threadsafe(self._task.cancel)

    def batches(self, poll: float = 0.1) -> Iterator[list[Message]]:
        """Yields what arrived since the last batch, until the answer or the error has come.
        Returning to the caller between batches lets Streamlit stop the script meanwhile."""
        while not self._finished:
            try:
                batch = [self.messages.get(timeout=poll)]
            except queue.Empty:
                if not self._thread.is_alive() and self.messages.empty():
                    # the worker died without a word (it should not): say so rather than hang
                    self._finished = True
                    yield [("error", "the question stopped unexpectedly")]
                continue
            while True:
                try:
                    batch.append(self.messages.get_nowait())
                except queue.Empty:
                    break
            self._finished = any(kind in ("answer", "error") for kind, _ in batch)
            yield batch
