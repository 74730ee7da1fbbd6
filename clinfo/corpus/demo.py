"""The demo corpus behind ``--source demo``: packaged JSON Lines, built into the cache on first use."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from clinfo.corpus.build import build_index
from clinfo.corpus.store import SCHEMA_VERSION
from clinfo.errors import CorpusError

if TYPE_CHECKING:
    from clinfo.settings import Settings

__all__ = ["DEMO_DATA", "DEMO_VECTORS", "demo_corpus_path"]

DEMO_DATA = "demo_corpus.jsonl.gz"
# all-MiniLM-L6-v2 vectors of every demo record (scripts/build_demo_corpus.py), imported beside
# the built corpus so the offline quickstart searches hybrid with no embedding step.
DEMO_VECTORS = ("demo_vectors.npy", "demo_vectors.pmids.json")


def _demo_data() -> Path:
    ref = resources.files("clinfo") / "data" / DEMO_DATA
    path = Path(str(ref))
    if not path.is_file():
        raise CorpusError(f"demo corpus data {DEMO_DATA} is missing from the clinfo installation")
    return path


def demo_corpus_path(settings: Settings) -> Path:
    """The demo corpus, ready, in ``settings.cache_dir``: ``corpus/demo-<digest>-v<schema>-links/corpus.db``
    with its lexical index beside it, built on first use.

    The folder name carries a digest of the packaged data and the schema version, so an upgrade
    that changes either builds a fresh corpus. The build goes to a temporary folder that is renamed
    into place, so a crash or a concurrent process never sees a half-built corpus.
    """
    data = _demo_data()
    vectors = [Path(str(resources.files("clinfo") / "data" / name)) for name in DEMO_VECTORS]
    vectors = vectors if all(p.is_file() for p in vectors) else []
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in [data, *vectors])).hexdigest()[:16]
    folder = Path(settings.cache_dir) / "corpus"
    # "-links": built since corpora keep NLM's CommentsCorrections links (an older demo index would warn)
    target = folder / f"demo-{digest}-v{SCHEMA_VERSION}-links"
    db = target / "corpus.db"
    if db.is_file():
        return db
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=folder))
    try:
        summary = build_index([data], tmp / "corpus.db", progress=False, workers=0)
        if summary.files_failed or summary.articles == 0:
            raise CorpusError(f"demo corpus build failed: {summary.line()}")
        if vectors:
            from clinfo.corpus.encoders import DEFAULT_MODEL
            from clinfo.corpus.vector_import import import_vectors

            import_vectors(tmp / "corpus.db", [(vectors[0], vectors[1])], model=DEFAULT_MODEL)
        try:
            os.rename(tmp, target)
        except OSError:
            if not db.is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in folder.glob("demo-*"):  # earlier versions of the packaged data or of the schema
        if old != target:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    return db
