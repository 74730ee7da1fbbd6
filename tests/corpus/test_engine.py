"""One open corpus per process (clinfo.corpus.engine), damaged vector sets, and one writer at a time.

Real corpora throughout: the session's small corpus, corpora built here from real PubMed XML, and
copies of the demo corpus with its shipped all-MiniLM-L6-v2 vectors (damaged on purpose).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clinfo.corpus.build import build_index
from clinfo.corpus.dense import dense_dir
from clinfo.corpus.lexical import lexical_dir
from clinfo.corpus.writelock import write_lock
from clinfo.errors import CorpusError
from clinfo.settings import Settings
from clinfo.sources import create_source
from clinfo.sources.corpus import LocalSource
from tests.support.cli import assert_one_line_error, clinfo
from tests.support.common import REPO
from tests.support.corpus import XmlSlice, write_xml

QUERIES = ["cancer", "patients AND surgery", '"breast cancer"', "covid-19", "Humans[mh] AND 2021[dp]", "children"]


def copy_corpus(db: Path, to: Path) -> Path:
    """A corpus is its record store, its lexical index and its vector sets."""
    to.mkdir(parents=True, exist_ok=True)
    copy = to / "corpus.db"
    shutil.copy(db, copy)
    shutil.copytree(lexical_dir(db), lexical_dir(copy))
    if Path(f"{db}.dense").is_dir():
        shutil.copytree(f"{db}.dense", f"{copy}.dense")
    return copy


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo corpus with its shipped vectors (questions encoded by onnxruntime, the [local] extra)."""
    pytest.importorskip("onnxruntime")
    from clinfo.corpus.demo import demo_corpus_path

    return demo_corpus_path(Settings(cache_dir=tmp_path_factory.mktemp("cache")))


# ------------------------------------------------------------------------------- one engine per corpus


async def test_sources_of_one_corpus_share_one_engine_and_closing_one_keeps_it_open(
    small_corpus: Path, tmp_path: Path
) -> None:
    link = tmp_path / "same.db"
    link.symlink_to(small_corpus)
    first, second = LocalSource(small_corpus), LocalSource(link)  # two spellings of one file
    assert first.engine is second.engine
    found = await first.search("cancer", limit=5)
    await first.aclose()  # a question's source is done: the corpus stays open for the others
    assert (await second.search("cancer", limit=5)).pmids == found.pmids
    assert [a.pmid for a in await second.fetch(found.pmids)] == found.pmids
    private = LocalSource(small_corpus, shared=False)  # the old way: a copy of its own
    assert private.engine is not first.engine and private.search_sync("cancer", limit=5).pmids == found.pmids
    private.close()
    assert (await LocalSource(small_corpus).search("cancer", limit=5)).pmids == found.pmids


def test_concurrent_questions_on_their_own_loops_share_the_corpus_and_agree(small_corpus: Path) -> None:
    expected = {q: LocalSource(small_corpus, shared=False).search_sync(q, limit=20).pmids for q in QUERIES}
    settings = Settings(source=f"local:{small_corpus}", search_mode="bm25")

    def question(query: str) -> tuple[list[str], list[str], object]:
        async def run() -> tuple[list[str], list[str], object]:
            source = create_source(settings.source, settings)  # one per question, as the app and pipeline do
            try:
                result = await source.search(query, limit=20)
                articles = await source.fetch(result.pmids)
                return result.pmids, [a.pmid for a in articles], source.engine  # type: ignore[attr-defined]
            finally:
                await source.aclose()

        return asyncio.run(run())  # its own thread and event loop, as the app runs each question

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(question, QUERIES * 4))
    engines = {id(engine) for _, _, engine in results}
    assert len(engines) == 1
    for query, (pmids, fetched, _) in zip(QUERIES * 4, results):
        assert pmids == expected[query] and fetched == pmids
    engine = results[0][2]
    assert engine._pool == []  # type: ignore[attr-defined]  # no idle connection left to block a build


async def test_a_corpus_changed_on_disk_is_reopened_and_sources_in_flight_keep_theirs(
    tmp_path: Path, slice21: XmlSlice
) -> None:
    db = tmp_path / "c.db"
    build_index([write_xml(tmp_path / "a.xml", slice21.header, slice21.records[:150])], db, progress=False, workers=0)
    before = LocalSource(db)
    assert LocalSource(db).engine is before.engine  # unchanged: the same engine
    size = before.articles
    build_index(
        [write_xml(tmp_path / "b.xml", slice21.header, slice21.records[150:300])], db, progress=False, workers=0
    )
    after = LocalSource(db)
    assert after.engine is not before.engine and after.articles > size
    assert (await before.search("patients", limit=5)).pmids  # a question already running is not disturbed
    assert LocalSource(db).engine is after.engine


async def test_every_search_mode_shares_one_dense_index(demo_db: Path) -> None:
    hybrid, auto, dense = (LocalSource(demo_db, mode=m) for m in ("hybrid", "auto", "dense"))  # type: ignore[arg-type]
    assert auto.mode == "hybrid"
    assert hybrid._dense is auto._dense is dense._dense is not None  # the vectors and index loaded once
    question = "Do mitochondria play a role in remodelling lace plant leaves during programmed cell death?"
    results = await asyncio.gather(*(s.search(question, limit=5) for s in (hybrid, auto, dense) for _ in range(3)))
    assert results[0].pmids == results[3].pmids and results[6].pmids == results[8].pmids


# ------------------------------------------------------------------------------- damaged vector sets


def _damage(db: Path, how: str) -> str:
    """Damage the demo copy's vector set; the file the error must name."""
    folder = dense_dir(db)
    if how == "missing":
        (folder / "vectors.f16").unlink()
        return "vectors.f16"
    if how == "truncated":
        data = (folder / "vectors.f16").read_bytes()
        (folder / "vectors.f16").write_bytes(data[: len(data) // 2])
        return "vectors.f16"
    if how == "pmids":
        (folder / "pmids.i64").write_bytes(b"")
        return "pmids.i64"
    # an IVF-PQ index.json naming a FAISS file that is not one
    pytest.importorskip("faiss")
    (folder / "index-bad.faiss").write_bytes(b"not a faiss index" * 64)
    rows = (folder / "pmids.i64").stat().st_size // 8
    info = {"kind": "ivfpq", "rows": rows, "vectors": rows, "file": "index-bad.faiss", "nlist": 64, "nprobe": 8}
    (folder / "index.json").write_text(json.dumps(info))
    return "index-bad.faiss"


@pytest.mark.parametrize("how", ["missing", "truncated", "pmids", "index"])
async def test_a_damaged_vector_set_falls_back_to_bm25_in_auto_and_is_one_line_in_dense(
    demo_db: Path, tmp_path: Path, how: str
) -> None:
    db = copy_corpus(demo_db, tmp_path / how)
    named = _damage(db, how)
    for mode in ("dense", "hybrid"):
        with pytest.raises(CorpusError) as err:
            LocalSource(db, mode=mode)  # type: ignore[arg-type]
        assert "\n" not in str(err.value) and named in str(err.value)
    auto = LocalSource(db, mode="auto")
    assert auto.mode == "bm25"
    result = await auto.search("lace plant programmed cell death", limit=5)
    assert result.pmids and result.mode == "bm25"
    assert any("dense vectors exist but cannot be used" in w and named in w for w in result.warnings)


async def test_vectors_damaged_after_opening_fall_back_per_search_in_auto(demo_db: Path, tmp_path: Path) -> None:
    db = copy_corpus(demo_db, tmp_path / "late")
    auto = LocalSource(db, mode="auto")
    assert auto.mode == "hybrid"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error in faiss::read: corrupted\nsecond line")

    auto._dense.search = broken  # type: ignore[union-attr,method-assign]  # a failure under a running search
    result = await auto.search("lace plant programmed cell death", limit=5)
    assert result.pmids and result.mode == "bm25"
    assert any(w.startswith("search mode auto: dense search failed") and "\n" not in w for w in result.warnings)
    dense = LocalSource(db, mode="dense")  # shares the damaged index: an explicit mode says so, one line
    with pytest.raises(CorpusError, match="dense search over .* failed: Error in faiss::read: corrupted second line"):
        await dense.search("lace plant", limit=5)


# ------------------------------------------------------------------------------- one writer at a time

HOLDER = """
import sys
from clinfo.corpus.writelock import write_lock
with write_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_writer_fails_fast_naming_the_running_one(small_corpus: Path, tmp_path: Path) -> None:
    db = copy_corpus(small_corpus, tmp_path / "locked")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), "index build"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        who = f"clinfo index build (pid {holder.pid}"
        assert_one_line_error(clinfo("index", "upgrade", str(db), "-q"), "cannot run clinfo index upgrade", who)
        vectors, pmids = tmp_path / "v.npy", tmp_path / "p.json"
        import numpy as np

        np.save(vectors, np.ones((1, 384), dtype=np.float32))
        pmids.write_text(json.dumps([LocalSource(db).search_sync("cancer", limit=1).pmids[0]]))
        assert_one_line_error(
            clinfo("index", "import-vectors", str(db), "--vectors", str(vectors), "--pmids", str(pmids), "-q"),
            "cannot run clinfo index import-vectors",
            who,
        )
        with pytest.raises(CorpusError, match="is writing it; wait for it to finish"):
            build_index([], db, progress=False, workers=0)
        assert not Path(f"{db}.dense").exists()  # nothing was written
    finally:
        holder.communicate("done\n", timeout=30)
    build_index([], db, progress=False, workers=0)  # released when its holder ended


def test_the_lock_is_reentrant_in_one_thread_and_exclusive_between_threads(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    errors: list[str] = []
    with write_lock(db, "index import-vectors"):
        with write_lock(db, "index import-vectors"):  # import, then build the index: one writer
            thread = threading.Thread(target=lambda: _try_lock(db, errors))
            thread.start()
            thread.join()
    assert len(errors) == 1 and f"clinfo index import-vectors (pid {os.getpid()}" in errors[0]
    _try_lock(db, errors)  # released: taken at once
    assert len(errors) == 1


def _try_lock(db: Path, errors: list[str]) -> None:
    try:
        with write_lock(db, "index embed"):
            pass
    except CorpusError as exc:
        errors.append(str(exc))


def test_a_forked_worker_does_not_keep_the_writer_lock(tmp_path: Path) -> None:
    # a build's parser workers are forked while it holds the lock; one that outlives its build
    # (the build was killed first) must not keep the corpus locked against the next writer
    db = tmp_path / "c.db"
    db.touch()
    read, write = os.pipe()
    started_r, started_w = os.pipe()
    with write_lock(db, "index build"):
        pid = os.fork()
        if pid == 0:  # the worker: says it runs, then waits, holding whatever it inherited
            os.write(started_w, b"x")
            os.read(read, 1)
            os._exit(0)
    os.read(started_r, 1)
    try:
        with write_lock(db, "index upgrade"):  # the worker still runs; the lock is free
            pass
    finally:
        os.write(write, b"x")
        os.waitpid(pid, 0)
        for fd in (read, write, started_r, started_w):
            os.close(fd)
