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
    assert (dense_dir(db) / "index.json").is_file() and (dense_dir(db) / "vectors.f16").stat().st_size == 12 * 384 * 2

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


async def test_imported_vectors_search_like_embedded_ones(tiny_corpus: tuple[Path, dict], tmp_path: Path) -> None:
    """The vectors 'embed' made, exported as an .npy/JSON chunk and imported into a copy of the
    corpus, give the same dense ranking: import-vectors is a full substitute for encoding."""
    import json

    import numpy as np

    from clinfo.corpus.dense import dense_dir, embed_index
    from clinfo.corpus.vector_import import import_vectors
    from clinfo.corpus.vectors import VectorStore
    from clinfo.sources.corpus import LocalSource

    db, items = tiny_corpus
    embed_index(db, progress=False)
    store = VectorStore.open(dense_dir(db))
    np.save(tmp_path / "embeds_chunk_0.npy", np.asarray(store.matrix()))
    (tmp_path / "pmids_chunk_0.json").write_text(json.dumps([str(p) for p in store.pmids().tolist()]))
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    shutil.copytree(lexical_dir(db), lexical_dir(copy))
    summary = import_vectors(
        copy, [(tmp_path / "embeds_chunk_0.npy", tmp_path / "pmids_chunk_0.json")], model="all-MiniLM-L6-v2"
    )
    assert summary.imported == store.rows and summary.not_in_corpus == 0
    from clinfo.corpus.faiss_index import build_dense_index

    assert build_dense_index(dense_dir(copy)).kind == "exact"
    original, imported = LocalSource(db, mode="dense"), LocalSource(copy, mode="dense")
    for pmid, item in list(items.items())[:4]:
        a, b = await original.search(item["QUESTION"], limit=5), await imported.search(item["QUESTION"], limit=5)
        assert a.pmids == b.pmids and a.pmids[0] == pmid
        assert b.scores == pytest.approx(a.scores, abs=1e-5)
    await original.aclose()
    await imported.aclose()


async def test_auto_mode_is_hybrid_with_vectors_and_bm25_without(
    tiny_corpus: tuple[Path, dict], tmp_path: Path
) -> None:
    import numpy as np

    from clinfo.corpus.dense import embed_index
    from clinfo.corpus.vectors import VectorWriter
    from clinfo.sources.corpus import LocalSource

    db, items = tiny_corpus
    embed_index(db, progress=False)
    auto = LocalSource(db, mode="auto")
    assert auto.mode == "hybrid"
    pmid, item = next(iter(items.items()))
    result = await auto.search(item["QUESTION"], limit=3)
    assert result.translation.startswith("hybrid") and result.pmids[0] == pmid
    await auto.aclose()

    bare = tmp_path / "bare.db"
    bare.write_bytes(db.read_bytes())
    shutil.copytree(lexical_dir(db), lexical_dir(bare))
    plain = LocalSource(bare, mode="auto")
    assert plain.mode == "bm25" and not (await plain.search(item["QUESTION"], limit=3)).warnings
    await plain.aclose()

    # Vectors of a model that cannot be loaded here: auto says so and searches with BM25.
    with VectorWriter(Path(f"{bare}.dense") / "unavailable", model="example/unavailable-encoder", dim=8) as w:
        w.append(iter([(np.array([int(pmid)]), np.ones((1, 8), dtype=np.float32))]), fingerprint="x", source="x")
    fallback = LocalSource(bare, mode="auto")
    assert fallback.mode == "bm25"
    result = await fallback.search(item["QUESTION"], limit=3)
    assert result.pmids[0] == pmid
    assert any(
        "dense vectors exist but cannot be used" in w and "example/unavailable-encoder" in w for w in result.warnings
    )
    await fallback.aclose()
    with pytest.raises(Exception, match="example/unavailable-encoder"):
        LocalSource(bare, mode="hybrid")


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
    assert f"embedded {n} articles" in result.stdout and f"exact search over {n} vectors" in result.stdout
    pmid, item = list(items.items())[4]
    for mode in ("dense", "hybrid"):
        out = runner.invoke(
            app, ["search", item["QUESTION"], "--source", f"local:{copy}", "--mode", mode, "-k", "3", "--json"]
        )
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout.splitlines()[0])["pmid"] == pmid
    bad = runner.invoke(app, ["index", "embed", str(tmp_path / "missing.db")])
    assert bad.exit_code != 0 and "no corpus at" in bad.output

    # --max-tokens cuts what the encoder reads: the same articles get other vectors
    import numpy as np

    from clinfo.corpus.dense import dense_dir
    from clinfo.corpus.vectors import VectorStore

    short = tmp_path / "short.db"
    short.write_bytes(db.read_bytes())
    shutil.copytree(lexical_dir(db), lexical_dir(short))
    result = runner.invoke(app, ["index", "embed", str(short), "-q", "--max-tokens", "16"])
    assert result.exit_code == 0, result.output
    full, cut = VectorStore.open(dense_dir(copy)), VectorStore.open(dense_dir(short))
    assert list(full.pmids()) == list(cut.pmids())
    cosines = np.sum(np.asarray(full.matrix(), dtype=np.float32) * np.asarray(cut.matrix(), dtype=np.float32), axis=1)
    assert cosines.min() < 0.99  # long abstracts were read only in part
    assert runner.invoke(app, ["index", "embed", str(short), "--max-tokens", "4"]).exit_code != 0  # below the minimum
