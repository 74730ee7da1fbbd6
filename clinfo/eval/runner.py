"""Runs clinfo over a question set: concurrent, resumable, one JSON line per question.

Layout of a run directory::

    config.json        everything needed to reproduce the run (no secrets); fixed at the first start
    predictions.jsonl  one line per finished question, appended (and fsynced) as each finishes
    sessions.jsonl     one line per start of the run that ended normally: wall time, throughput

Durability: a single writer (the event loop's thread) appends each line with one ``write`` and
an ``fsync``, so a run killed at any moment (``kill -9`` included) leaves at most one partial
last line. On restart that tail is cut off, ids already present are skipped, and questions
that failed are tried again (``retry_errors``); nothing is lost or written twice.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinfo.errors import ClinfoError, ConfigError, InvalidArgument, LLMUnavailable, SourceUnavailable, one_line
from clinfo.eval.datasets import LABELS, Dataset, EvalItem, load_dataset
from clinfo.redact import redact, secret_values
from clinfo.settings import Settings

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"
SESSIONS = "sessions.jsonl"

CLASSIFY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": list(LABELS)}},
    "required": ["answer"],
    "additionalProperties": False,
}

# Settings that decide where and how fast a run goes, not what it answers: a resumed run may
# change them (a vLLM server restarted on another port, more retries, a different cache dir).
RESUMABLE_SETTINGS = frozenset(
    {
        "base_url",
        "openai_base_url",
        "eutils_base_url",
        "ncbi_email",
        "ncbi_tool",
        "cache_dir",
        "use_cache",
        "cache_ttl_search",
        "cache_ttl_records",
        "cache_ttl_llm",
        "cache_max_mb",
        "database_url",
        "http_timeout",
        "http_retries",
        "llm_timeout",
        "llm_retries",
        "max_concurrency",
        "openai_api_key_set",
        "ncbi_api_key_set",
    }
)
# Failures that say the backend is gone rather than that one question went wrong.
_OUTAGE = (LLMUnavailable, SourceUnavailable)


class RunError(InvalidArgument):
    """The run directory cannot be used: another configuration, or a damaged predictions file."""


class RunAborted(ClinfoError):
    """Too many questions in a row failed because a backend is unreachable."""


# ---------------------------------------------------------------- the answer's yes/no/maybe


@dataclass
class Classification:
    label: str | None
    method: str  # "llm", "no_evidence" (no LLM call: nothing was found) or "unreadable"
    raw: str = ""
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "raw": self.raw,
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "cached": self.cached,
        }


_WORD_LABEL = re.compile(r"\b(yes|no|maybe)\b", re.I)


def read_label(text: str) -> str | None:
    """The yes/no/maybe in a classification reply: JSON first, else the first such word."""
    from clinfo.jsonout import parse_json

    data = parse_json(text)
    if isinstance(data, dict):
        data = data.get("answer")
    if isinstance(data, str) and data.strip().lower() in LABELS:
        return data.strip().lower()
    match = _WORD_LABEL.search(text)
    return match.group(1).lower() if match else None


CLASSIFY_CHARS = 2000  # quoted conclusions can be long; a small model's context is not


async def classify_answer(
    llm: Any, question: str, text: str, settings: Settings, *, no_evidence: bool = False
) -> Classification:
    """Read the final yes/no/maybe decision from an answer's text (its TL;DR) with one
    constrained LLM call.

    An answer with no evidence is "maybe" without a call: it says nothing either way.
    """
    from clinfo.llm.base import LLMRequest
    from clinfo.prompts import load_prompt

    if no_evidence or not text.strip():
        return Classification(label="maybe", method="no_evidence")
    if len(text) > CLASSIFY_CHARS:
        text = text[: CLASSIFY_CHARS - 1].rsplit(" ", 1)[0] + "…"
    request = LLMRequest(
        messages=load_prompt("classify_answer", settings.prompt_dir).messages(question=question, answer=text),
        schema=CLASSIFY_SCHEMA,
        schema_name="classify",
        max_tokens=20,
        temperature=0.0,  # a label, not prose: always the most likely one
        step="classify",
    )
    completion = await llm.complete(request)
    label = read_label(completion.text)
    return Classification(
        label=label,
        method="llm" if label else "unreadable",
        raw=one_line(completion.text, 200),
        llm_calls=1,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        cost_usd=completion.cost_usd,
        cached=completion.cached,
    )


# ---------------------------------------------------------------- config


def _scrub_url(value: Any) -> Any:
    # user:password@ in a base URL is a credential too
    return re.sub(r"//[^/@\s]+@", "//***@", value) if isinstance(value, str) else value


def run_config(settings: Settings, dataset: Dataset, limit: int | None, seed: int, selected: int) -> dict[str, Any]:
    from clinfo import __version__

    public = {k: _scrub_url(v) for k, v in settings.public_dict().items()}
    return {
        "clinfo_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dataset": {
            "path": dataset.path,
            "sha256": dataset.sha256,
            "format": dataset.format,
            "items": len(dataset.items),
        },
        "limit": limit,
        "seed": seed,
        "selected": selected,
        "settings": public,
    }


def _default(key: str) -> Any:
    field = Settings.model_fields.get(key)
    if field is None or field.default_factory is not None:
        return None
    return field.default


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two run configs in a way that changes the answers."""
    diffs = []
    for key in ("sha256", "format"):
        a, b = (old.get("dataset") or {}).get(key), new["dataset"][key]
        if a != b:
            diffs.append(f"dataset {key} {a!r} -> {b!r}")
    for key in ("limit", "seed"):
        if old.get(key) != new.get(key):
            diffs.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    old_s, new_s = old.get("settings") or {}, new["settings"]
    for key in sorted(set(old_s) | set(new_s)):
        # a setting added since the old run started ran there at its default
        before = old_s[key] if key in old_s else _default(key)
        if key not in RESUMABLE_SETTINGS and before != new_s.get(key):
            diffs.append(f"{key} {before!r} -> {new_s.get(key)!r}")
    return diffs


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_config(out: Path) -> dict[str, Any] | None:
    path = out / CONFIG
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is unreadable ({exc}); remove the directory or choose another --out") from None
    if not isinstance(data, dict):
        raise RunError(f"{path} is not a clinfo run configuration")
    return data


# ---------------------------------------------------------------- predictions file


def read_predictions(path: Path) -> list[dict[str, Any]]:
    """Complete lines of a predictions file (a partial last line is ignored), for reports."""
    records, _, _ = _scan(path)
    return records


def _scan(path: Path) -> tuple[list[dict[str, Any]], list[bytes], bool]:
    """(records, their raw lines, whether the file has a partial tail or blank lines)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], [], False
    end = data.rfind(b"\n") + 1
    untidy = end != len(data)
    records: list[dict[str, Any]] = []
    raws: list[bytes] = []
    for n, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if not raw.strip():
            untidy = True
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise RunError(f"{path}: line {n} is not a prediction record; the file was edited or damaged")
        records.append(record)
        raws.append(raw)
    return records, raws, untidy


class PredictionWriter:
    """Appends one JSON line per call, durably. Only ever used from one thread (the event loop's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:  # os.write may write less than asked
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def recover(path: Path, valid_ids: set[str], retry_errors: bool) -> dict[str, dict[str, Any]]:
    """Make the predictions file whole again and return the finished records by id.

    Cuts a partial last line (a run killed mid-write), drops duplicates and, with
    ``retry_errors``, the records of failed questions so they run again. The file is rewritten
    atomically only when something had to go.
    """
    records, raws, untidy = _scan(path)
    kept: dict[str, dict[str, Any]] = {}
    kept_raw: list[bytes] = []
    for record, raw in zip(records, raws):
        rid = record["id"]
        if rid not in valid_ids:
            raise RunError(f"{path}: id {rid!r} is not among the questions of this run; was it written by another run?")
        if rid in kept or (retry_errors and record.get("error")):
            continue
        kept[rid] = record
        kept_raw.append(raw)
    if untidy or len(kept_raw) != len(raws):
        _atomic_write(path, b"".join(r + b"\n" for r in kept_raw))
    return kept


def _check_resumable(out: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The run directory's config, if any, after checking that this run may continue it."""
    old = read_config(out)
    if old is None and (out / PREDICTIONS).exists() and (out / PREDICTIONS).stat().st_size:
        raise RunError(f"{out} holds predictions but no {CONFIG}; choose another --out")
    if old is not None:
        diffs = config_differences(old, config)
        if diffs:
            shown = "; ".join(diffs[:3]) + (f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else "")
            raise RunError(
                f"{out} holds a run with another configuration ({shown});"
                " use the same options to resume, or another --out"
            )
    return old


@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One writer per run directory: a second ``clinfo eval run`` on it would duplicate lines.
    The lock is the kernel's (flock), so a killed run releases it by dying."""
    import fcntl

    fd = os.open(out / ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(
                f"another clinfo eval run is writing to {out}; wait for it or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------- progress


class _Progress:
    """A progress bar on stderr: done/total, questions per minute, ETA and errors."""

    def __init__(self, enabled: bool, total: int, done: int, label: str) -> None:
        self.enabled = enabled
        self.errors = 0
        self._progress: Any = None
        self._task: Any = None
        self._total, self._done, self._label = total, done, label

    def __enter__(self) -> _Progress:
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
    _check_resumable(out, config)

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
        with _exclusive(out):
            if _check_resumable(out, config) is None:  # again, now that no other run can write
                _atomic_write(out / CONFIG, (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
            done = recover(out / PREDICTIONS, {i.id for i in items}, retry_errors)
            todo = [i for i in items if i.id not in done]
            secrets = secret_values(settings)  # the keys, and the database URL's password
            return await _execute(
                out,
                clinfo,
                classifier,
                settings,
                todo,
                len(items),
                len(done),
                concurrency,
                progress,
                secrets,
                config,
                on_record,
            )
    finally:
        for obj in owned:
            await obj.aclose()
        cache.close()


async def _execute(
    out: Path,
    clinfo: Any,
    classifier: Any,
    settings: Settings,
    todo: list[EvalItem],
    total: int,
    done_before: int,
    concurrency: int,
    show_progress: bool,
    secrets: list[str],
    config: dict[str, Any],
    on_record: Callable[[dict[str, Any]], None] | None,
) -> RunResult:
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
            answer = await clinfo.aforward(
                item.question, restriction_date=item.restriction_date, ignore=item.ignore or None
            )
            if item.task == "yesno":
                # an extractive answer's TL;DR is a fixed sentence about the evidence count; its
                # quoted conclusions are what says yes or no
                extractive = settings.synthesis_mode == "extractive"
                text = answer.synthesis if extractive else answer.tldr
                classification = await classify_answer(
                    classifier, answer.question, text, settings, no_evidence=answer.no_evidence
                )
        except ConfigError:
            raise  # a bad prompt directory or the like: every question would fail the same way
        except Exception as exc:  # one question's failure is recorded and the run goes on
            error = exc
        record = _record(item, answer, classification, error, time.perf_counter() - start, secrets)
        if isinstance(error, _OUTAGE):
            outage_streak += 1
        elif error is None:
            outage_streak = 0
        return record

    with _Progress(show_progress, total, done_before, f"{out.name}") as bar:

        async def worker() -> None:
            nonlocal completed, errors
            while queue:
                item = queue.popleft()
                record = await answer_one(item)
                writer.write(record)  # single writer: the loop's thread, one line at a time
                completed += 1
                errors += record["error"] is not None
                bar.advance(record["error"] is not None)
                if on_record is not None:
                    on_record(record)
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
                    "clinfo_version": config.get("clinfo_version"),
                }
                with open(out / SESSIONS, "a", encoding="utf-8") as f:
                    f.write(json.dumps(session) + "\n")
    return RunResult(
        out=out,
        total=total,
        already_done=done_before,
        completed=completed,
        errors=errors,
        wall_seconds=round(wall, 3),
        config=config,
    )


def run_eval(dataset: Dataset | str | Path, out: str | Path, **kwargs: Any) -> RunResult:
    """Synchronous :func:`arun_eval`."""
    from clinfo.pipeline import run_sync

    return run_sync(arun_eval(dataset, out, **kwargs))
