"""The demo corpus behind ``--source demo``: packaged JSON Lines, built into the cache on first use."""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from clinfo.corpus.build import build_index
from clinfo.corpus.store import SCHEMA_VERSION
from clinfo.errors import CorpusError

if TYPE_CHECKING:
    from clinfo.settings import Settings

__all__ = ["DEMO_DATA", "demo_corpus_path"]

DEMO_DATA = "demo_corpus.jsonl.gz"


def _demo_data() -> Path:
    ref = resources.files("clinfo") / "data" / DEMO_DATA
    path = Path(str(ref))
    if not path.is_file():
        raise CorpusError(f"demo corpus data {DEMO_DATA} is missing from the clinfo installation")
    return path


def demo_corpus_path(settings: "Settings") -> Path:
    """The demo corpus as a ready SQLite file in ``settings.cache_dir``, built on first use.

    The file name carries a digest of the packaged data and the schema version, so an upgrade
    that changes either builds a fresh index. The build goes to a temporary file that is renamed
    into place, so a crash or a concurrent process never sees a half-built corpus.
    """
    data = _demo_data()
    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:16]
    folder = Path(settings.cache_dir) / "corpus"
    target = folder / f"demo-{digest}-v{SCHEMA_VERSION}.db"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".demo-", suffix=".db.tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()  # build_index creates the file itself
        summary = build_index([data], tmp, progress=False, workers=0)
        if summary.files_failed or summary.articles == 0:
            raise CorpusError(f"demo corpus build failed: {summary.line()}")
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)
    for old in folder.glob("demo-*.db"):  # earlier versions of the packaged data
        if old != target:
            old.unlink(missing_ok=True)
    return target
