"""Runs clinfo over a question set: concurrent, resumable, one JSON line per question.

What it writes, and how a killed run resumes, is the run directory's (:mod:`clinfo.eval.run_dir`);
how an answer's yes/no/maybe is read is :mod:`clinfo.eval.classify`'s.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinfo.errors import ClinfoError, ConfigError, InvalidArgument, LLMUnavailable, SourceUnavailable, one_line
from clinfo.eval.classify import Classification, classify_answer
from clinfo.eval.datasets import Dataset, EvalItem, load_dataset
from clinfo.eval.run_dir import (
    PREDICTIONS,
    PredictionWriter,
    RunError,
    append_session,
    check_resumable,
    exclusive_writer,
    recover,
    run_config,
    write_config,
)
from clinfo.redact import redact, secret_values
from clinfo.settings import Settings

# Failures that say the backend is gone rather than that one question went wrong.
_OUTAGE = (LLMUnavailable, SourceUnavailable)


class RunAborted(ClinfoError):
    """Too many questions in a row failed because a backend is unreachable."""


# ---------------------------------------------------------------- progress


class RunProgress:
    """A progress bar on stderr: done/total, questions per minute, ETA and errors."""

    def __init__(self, enabled: bool, total: int, done: int, label: str) -> None:
        self.enabled = enabled
        self.errors = 0
        self._progress: Any = None
        self._task: Any = None
        self._total, self._done, self._label = total, done, label

    def __enter__(self) -> RunProgress:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        start = time.monotonic()
        first = self._done

        class RateColumn(ProgressColumn):
            # rate over this session only (resumed questions were not done now), ETA from it
            def render(self, task: Any) -> Text:
                elapsed = time.monotonic() - start
                finished = task.completed - first
                if finished <= 0 or elapsed <= 0:
                    return Text("-- q/min  ETA --", style="progress.remaining")
                rate = finished / elapsed
                eta = (task.total - task.completed) / rate
                return Text(f"{rate * 60:.1f} q/min  ETA {dt.timedelta(seconds=int(eta))}", style="progress.remaining")

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("errors {task.fields[errors]}"),
            console=Console(stderr=True),
        )
        self._progress.start()
        self._task = self._progress.add_task(self._label, total=self._total, completed=self._done, errors=0)
        return self

    def advance(self, error: bool) -> None:
        self.errors += error
        if self._progress is not None:
            self._progress.update(self._task, advance=1, errors=self.errors)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# ---------------------------------------------------------------- the run


@dataclass
class RunResult:
    out: Path
    total: int  # questions selected for the run
    already_done: int  # finished by earlier sessions
    completed: int  # finished by this session (errors included)
    errors: int  # of those, failed
    wall_seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> Path:
        return self.out / PREDICTIONS


def _record(
    item: EvalItem,
    answer: Any,
    classification: Classification | None,
    error: BaseException | None,
    wall: float,
    secrets: list[str],
) -> dict[str, Any]:
    return {
        "id": item.id,
        "question": item.question,
        "task": item.task,
        "gold_answer": item.answer,
        "gold_label": item.label,
        "gold_pmids": item.gold_pmids,
        "restriction_date": item.restriction_date.isoformat() if item.restriction_date else None,
        "ignore": item.ignore,
        "answer": answer.model_dump(mode="json") if answer is not None else None,
        "predicted_label": classification.label if classification else None,
        "classification": classification.as_dict() if classification else None,
        "error": one_line(redact(str(error) or type(error).__name__, secrets), 500) if error is not None else None,
        "error_type": type(error).__name__ if error is not None else None,
        "wall_seconds": round(wall, 4),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


async def arun_eval(
    dataset: Dataset | str | Path,
    out: str | Path,
    *,
    format: str | None = None,
    llm: Any = None,
    source: Any = None,
    settings: Settings | None = None,
    limit: int | None = None,
    seed: int = 0,
    concurrency: int = 8,
    retry_errors: bool = True,
    progress: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    **overrides: Any,
) -> RunResult:
    """Answer every selected question of ``dataset`` and append the predictions under ``out``.

    ``llm`` and ``source`` take a spec string or an object implementing the protocol (as for
    :class:`~clinfo.ClinfoAI`); other keywords override :class:`~clinfo.settings.Settings`.
    Starting again with the same ``out`` resumes; a different configuration is refused.
    """
    from clinfo.cache import open_cache
    from clinfo.llm.base import with_cache
    from clinfo.llm.registry import create_llm
    from clinfo.pipeline import ClinfoAI
    from clinfo.sources import create_source

    if concurrency < 1:
        raise InvalidArgument(f"concurrency must be at least 1, got {concurrency}")
    # the values the pipeline will really use (a preset fills what nobody set), so that
    # config.json says what ran and a resumed run compares like with like
    settings = Settings.resolve(
        settings,
        llm=llm if isinstance(llm, str) else getattr(llm, "spec", None),
        source=source if isinstance(source, str) else getattr(source, "name", None),
        **overrides,
    )
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, format)
    items = data.select(limit, seed)
    config = run_config(settings, data, limit, seed, len(items))
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} exists and is not a directory")
    check_resumable(out, config)

    # Backends first: an unknown LLM or a missing key stops here, before the directory is touched.
    cache = open_cache(settings)
    owned: list[Any] = []
    try:
        llm_obj = llm if llm is not None and not isinstance(llm, str) else create_llm(settings.llm, settings)
        if llm_obj is not llm:
            owned.append(llm_obj)
        if source is None or isinstance(source, str):
            # Built once here so an unknown source or a missing corpus stops the run before it
            # starts (and the demo corpus is indexed now); ClinfoAI then opens one per question,
            # which keeps each answer's trace (requests, cache hits) its own. The E-utilities
            # request budget is per base URL for the host, so those instances still share it.
            await create_source(settings.source, settings, cache=cache).aclose()
        # One ClinfoAI and one LLM for the whole run: connection pools, the structured-output
        # probe and an in-process engine (vllm-offline batches whatever concurrent calls it
        # sees) are shared by all questions in flight.
        clinfo = ClinfoAI(
            llm=llm_obj,
            source=source if source is not None and not isinstance(source, str) else None,
            settings=settings,
        )
        classifier = with_cache(llm_obj, cache)

        out.mkdir(parents=True, exist_ok=True)
        with exclusive_writer(out):
            if check_resumable(out, config) is None:  # again, now that no other run can write
                write_config(out, config)
            done = recover(out / PREDICTIONS, {i.id for i in items}, retry_errors)
            plan = _RunPlan(
                out=out,
                clinfo=clinfo,
                classifier=classifier,
                settings=settings,
                todo=[i for i in items if i.id not in done],
                total=len(items),
                done_before=len(done),
                concurrency=concurrency,
                show_progress=progress,
                secrets=secret_values(settings),  # the keys, and the database URL's password
                config=config,
                on_record=on_record,
            )
            return await _execute(plan)
    finally:
        for obj in owned:
            await obj.aclose()
        cache.close()


@dataclass(frozen=True)
class _RunPlan:
    """One session of a run, decided before the first question goes out."""

    out: Path
    clinfo: Any  # the ClinfoAI that answers every question
    classifier: Any  # the (cached) LLM that reads yes/no/maybe
    settings: Settings
    todo: list[EvalItem]  # questions this session answers, in order
    total: int  # questions selected for the run
    done_before: int  # finished by earlier sessions
    concurrency: int
    show_progress: bool
    secrets: list[str]  # values redacted from recorded errors
    config: dict[str, Any]
    on_record: Callable[[dict[str, Any]], None] | None


async def _execute(plan: _RunPlan) -> RunResult:
    out, todo, concurrency, settings = plan.out, plan.todo, plan.concurrency, plan.settings
    writer = PredictionWriter(out / PREDICTIONS)
    queue = collections.deque(todo)
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    completed = errors = 0
    outage_streak = 0
    outage_limit = max(3, concurrency)  # every worker failing at once is an outage, not bad luck
    status = "interrupted"

    async def answer_one(item: EvalItem) -> dict[str, Any]:
        nonlocal outage_streak
        start = time.perf_counter()
        answer = classification = error = None
        try:
            answer = await plan.clinfo.aforward(
                item.question, restriction_date=item.restriction_date, ignore=item.ignore or None
            )
            if item.task == "yesno":
                # an extractive answer's TL;DR is a fixed sentence about the evidence count; its
                # quoted conclusions are what says yes or no
                extractive = settings.synthesis_mode == "extractive"
                text = answer.synthesis if extractive else answer.tldr
                classification = await classify_answer(
                    plan.classifier, answer.question, text, settings, no_evidence=answer.no_evidence
                )
        except ConfigError:
            raise  # a bad prompt directory or the like: every question would fail the same way
        except Exception as exc:  # one question's failure is recorded and the run goes on
            error = exc
        record = _record(item, answer, classification, error, time.perf_counter() - start, plan.secrets)
        if isinstance(error, _OUTAGE):
            outage_streak += 1
        elif error is None:
            outage_streak = 0
        return record

    with RunProgress(plan.show_progress, plan.total, plan.done_before, f"{out.name}") as bar:

        async def worker() -> None:
            nonlocal completed, errors
            while queue:
                item = queue.popleft()
                record = await answer_one(item)
                writer.write(record)  # single writer: the loop's thread, one line at a time
                completed += 1
                errors += record["error"] is not None
                bar.advance(record["error"] is not None)
                if plan.on_record is not None:
                    plan.on_record(record)
                if outage_streak >= outage_limit:
                    raise RunAborted(
                        f"stopped after {outage_streak} questions in a row failed: {record['error']}"
                        f" (run the same command again to resume once the backend is back)"
                    )

        tasks = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(todo)))]
        try:
            await asyncio.gather(*tasks)
            status = "finished"
        except RunAborted:
            status = "aborted"
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            wall = time.monotonic() - started
            if todo:
                session = {
                    "started": started_at,
                    "wall_seconds": round(wall, 3),
                    "completed": completed,
                    "errors": errors,
                    "concurrency": concurrency,
                    "status": status,
                    "clinfo_version": plan.config.get("clinfo_version"),
                }
                append_session(out, session)
    return RunResult(
        out=out,
        total=plan.total,
        already_done=plan.done_before,
        completed=completed,
        errors=errors,
        wall_seconds=round(wall, 3),
        config=plan.config,
    )


def run_eval(dataset: Dataset | str | Path, out: str | Path, **kwargs: Any) -> RunResult:
    """Synchronous :func:`arun_eval`."""
    from clinfo.pipeline import run_sync

    return run_sync(arun_eval(dataset, out, **kwargs))
