"""The run directory of ``clinfo eval run``: its configuration, predictions, sessions, recovery and lock.

Layout::

    config.json        everything needed to reproduce the run (no secrets); fixed at the first start
    predictions.jsonl  one line per finished question, appended (and fsynced) as each finishes
    sessions.jsonl     one line per start of the run that ended normally: wall time, throughput

Durability: a single writer (the event loop's thread) appends each line with one ``write`` and
an ``fsync``, so a run killed at any moment (``kill -9`` included) leaves at most one partial
last line. On restart that tail is cut off, ids already present are skipped, and questions
that failed are tried again (``retry_errors``); nothing is lost or written twice.

Reading a finished run (metrics, reports) needs only this module, never the runner.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.errors import InvalidArgument
from clinfo.settings import Settings
from clinfo.urls import scrub_url

if TYPE_CHECKING:
    from clinfo.eval.datasets import Dataset

PREDICTIONS = "predictions.jsonl"
CONFIG = "config.json"
SESSIONS = "sessions.jsonl"

# Settings that decide where and how fast a run goes, not what it answers: a resumed run may
# change them (a vLLM server restarted on another port, more retries, a different cache dir).
RESUMABLE_SETTINGS = frozenset(
    {
        "base_url",
        "openai_base_url",  # the old name of base_url, in the configs of older runs
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
        "eutils_timeout",
        "eutils_retries",
        "http_timeout",  # the old names of eutils_timeout and eutils_retries, in older runs' configs
        "http_retries",
        "llm_timeout",
        "llm_retries",
        "max_concurrency",
        "openai_api_key_set",
        "ncbi_api_key_set",
    }
)


class RunError(InvalidArgument):
    """The run directory cannot be used: another configuration, or a damaged predictions file."""


# ---------------------------------------------------------------- config


def run_config(settings: Settings, dataset: Dataset, limit: int | None, seed: int, selected: int) -> dict[str, Any]:
    from clinfo import __version__

    # user:password@ and ?api_key=... in a base URL are credentials too
    public = {k: scrub_url(v) if isinstance(v, str) else v for k, v in settings.public_dict().items()}
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


def write_config(out: Path, config: dict[str, Any]) -> None:
    """Writes ``config.json`` atomically: a run killed meanwhile leaves the old file or the new one."""
    _atomic_write(out / CONFIG, (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


# ---------------------------------------------------------------- sessions


def append_session(out: Path, session: dict[str, Any]) -> None:
    """One line in ``sessions.jsonl`` for a start of the run that has ended."""
    with open(out / SESSIONS, "a", encoding="utf-8") as f:
        f.write(json.dumps(session) + "\n")


def read_sessions(run_dir: Path) -> list[dict[str, Any]]:
    """The sessions of a run, oldest first (a line cut by a crash is left out)."""
    path = Path(run_dir) / SESSIONS
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a session line cut by a crash: throughput just leaves it out
        if isinstance(item, dict):
            out.append(item)
    return out


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


def check_resumable(out: Path, config: dict[str, Any]) -> dict[str, Any] | None:
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
def exclusive_writer(out: Path) -> Iterator[None]:
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
