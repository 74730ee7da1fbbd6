"""Dense retrieval over a tiny real corpus (needs the [dense] extra; skipped without it), and the
promise that the BM25 path never imports the heavy libraries."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clinfo.corpus.build import build_index
from clinfo.corpus.lexical import lexical_dir
from clinfo.errors import CorpusError
from tests.support.common import REPO
from tests.support.corpus import pubmedqa_items, pubmedqa_jsonl_record, write_jsonl


def test_bm25_path_does_not_import_torch_or_faiss(small_corpus: Path) -> None:
    code = (
        "import sys, asyncio\n"
        "import clinfo, clinfo.cli\n"
        "from clinfo.sources.corpus import LocalSource\n"
        f"src = LocalSource({str(small_corpus)!r})\n"
        "asyncio.run(src.search('cancer', limit=3))\n"
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("faiss")
    qa = pubmedqa_items()
    chosen = {p: qa[p] for p in list(qa)[:12]}
    folder = tmp_path_factory.mktemp("dense")
    src = write_jsonl(folder / "qa.jsonl", [pubmedqa_jsonl_record(p, item) for p, item in chosen.items()])
    db = folder / "corpus.db"
    build_index([src], db, progress=False, workers=0)
    return db, chosen


def test_dense_without_vectors_says_how_to_make_them(tiny_corpus: tuple[Path, dict]) -> None:
    from clinfo.sources.corpus import LocalSource

    db, _ = tiny_corpus
    fresh = db.parent / "other.db"
    fresh.write_bytes(db.read_bytes())
    shutil.copytree(lexical_dir(db), lexical_dir(fresh))  # a corpus is the file and its lexical index
    with pytest.raises(CorpusError, match="clinfo index embed"):
        LocalSource(fresh, mode="dense")


async def test_embed_search_hybrid_and_resume(tiny_corpus: tuple[Path, dict]) -> None:
    from clinfo.corpus.dense import dense_dir, embed_index
    from clinfo.sources.corpus import LocalSource

    db, items = tiny_corpus
    first = embed_index(db, progress=False)
    assert first.embedded == 12 and first.total == 12 and first.index_kind == "exact"
    assert (dense_dir(db) / "index.faiss").is_file()

    dense = LocalSource(db, mode="dense")
    found = 0
    for pmid, item in items.items():
        result = await dense.search(item["QUESTION"], limit=3)
        assert result.scores == sorted(result.scores, reverse=True) and -1.0 <= result.scores[0] <= 1.0
        found += result.pmids[0] == pmid
    assert found >= 10  # twelve abstracts on different topics: the question's own should lead
    boolean = await dense.search('"tailored interventions"[tiab] AND mammography', limit=2)
    assert boolean.pmids  # boolean syntax is reduced to its words for the encoder
    await dense.aclose()

    hybrid = LocalSource(db, mode="hybrid")
    pmid, item = next(iter(items.items()))
    result = await hybrid.search(item["QUESTION"], limit=5)
    assert result.pmids[0] == pmid and len(result.scores) == len(result.pmids)
    assert result.translation and result.translation.startswith("hybrid")
    await hybrid.aclose()

    again = embed_index(db, progress=False)
    assert again.embedded == 0 and again.reused == 12  # nothing re-encoded

    # New articles: the index says its vectors are stale until embedded again, which encodes only them.
    qa = pubmedqa_items()
    extra = {p: qa[p] for p in list(qa)[12:15]}
    more = write_jsonl(db.parent / "more.jsonl", [pubmedqa_jsonl_record(p, it) for p, it in extra.items()])
    build_index([more], db, progress=False, workers=0)
    stale = LocalSource(db, mode="dense")
    assert any("clinfo index embed" in w for w in (await stale.search("mammography", limit=1)).warnings)
    third = embed_index(db, progress=False)
    assert third.embedded == 3 and third.total == 15


def test_hnsw_above_the_exact_limit(tiny_corpus: tuple[Path, dict], tmp_path: Path) -> None:
    from clinfo.corpus.dense import DenseIndex, embed_index
    from clinfo.corpus.store import RecordStore

    db, items = tiny_corpus
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    # Reuse no vectors: a separate corpus file has its own dense folder.
    summary = embed_index(copy, progress=False, exact_limit=5)
    assert summary.index_kind == "hnsw"
    index = DenseIndex.open(copy)
    pmid, item = next(iter(items.items()))
    ids, _ = index.search(item["QUESTION"], 3, RecordStore.open(copy))
    assert ids[0] == int(pmid)


def test_cli_embed_and_hybrid_search(tiny_corpus: tuple[Path, dict], tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from clinfo.cli import app

    db, items = tiny_corpus
    copy = tmp_path / "cli.db"
    copy.write_bytes(db.read_bytes())
    shutil.copytree(lexical_dir(db), lexical_dir(copy))
    runner = CliRunner()
    result = runner.invoke(app, ["index", "embed", str(copy), "-q"])
    assert result.exit_code == 0, result.output
    # The module's corpus may have grown in an earlier test: count what it holds now.
    from clinfo.corpus.store import corpus_info

    n = corpus_info(copy)["articles"]
    assert f"embedded {n} articles" in result.stdout and f"exact index over {n} vectors" in result.stdout
    pmid, item = list(items.items())[4]
    for mode in ("dense", "hybrid"):
        out = runner.invoke(app, ["search", item["QUESTION"], "--source", f"local:{copy}", "--mode", mode, "-k", "3", "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout.splitlines()[0])["pmid"] == pmid
    bad = runner.invoke(app, ["index", "embed", str(tmp_path / "missing.db")])
    assert bad.exit_code != 0 and "no corpus at" in bad.output
