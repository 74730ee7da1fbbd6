"""The dense index on generated vector sets: compressed IVF-PQ with exact rescoring against exact
search, the exact path, incremental updates, and the all-or-nothing vector store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinfo.corpus.dense import VectorIndex
from clinfo.corpus.faiss_index import IndexInfo, IndexOptions, build_dense_index, exact_top
from clinfo.corpus.vectors import VectorStore, VectorWriter
from clinfo.errors import CorpusError

DIM = 64


def clustered(n: int, dim: int = DIM, clusters: int = 200, latent: int = 16, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters on a low-dimensional subspace, plus a little noise: like text
    embeddings, their neighbourhoods are structured (isotropic noise would make every point of a
    cluster equally near, a case no index and no real encoder meets)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, latent)).astype(np.float32)
    z = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, latent)).astype(np.float32)
    x = z @ (rng.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent))
    x += 0.1 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write_set(folder: Path, pmids: np.ndarray, vecs: np.ndarray, name: str = "chunk") -> None:
    with VectorWriter(folder, model="synthetic", dim=vecs.shape[1]) as w:
        w.append(iter([(pmids, vecs)]), fingerprint=f"{name}-{len(pmids)}-{int(pmids[0])}", source=name)


@pytest.fixture(scope="module")
def ivf_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("ivf") / "set"
    vecs = clustered(50_000)
    pmids = np.arange(1_000_000, 1_050_000, dtype=np.int64)
    write_set(folder, pmids, vecs)
    return folder, pmids, vecs


def test_ivfpq_with_rescoring_reaches_095_recall_of_exact_search(ivf_set: tuple[Path, np.ndarray, np.ndarray]) -> None:
    import faiss

    folder, pmids, vecs = ivf_set
    info = build_dense_index(
        folder, IndexOptions(exact_limit=1_000, nlist=128, m=16, rescore=500, target_recall=0.97, train_size=12_000)
    )
    assert info.kind == "ivfpq" and info.vectors == 50_000 and info.nlist == 128
    assert info.recall_at_10 is not None and info.recall_at_10 >= 0.97 and 1 <= info.nprobe <= 128
    assert "WARNING" not in info.line()
    index = VectorIndex.open(folder)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index.index))
    assert (
        isinstance(ivf, faiss.IndexIVFPQFastScan) and ivf.code_size == 8
    )  # 16 4-bit codes: 8 bytes per vector in memory, not 256

    # Held-out queries: not rows of the set, near them (as a question is near its abstracts).
    rng = np.random.default_rng(7)
    q = vecs[rng.choice(len(vecs), 300, replace=False)] + 0.05 * rng.standard_normal((300, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    # exact search over the rows as stored (float16): rescoring must reproduce its scores
    truth_rows, truth_scores = exact_top(VectorStore.open(folder).matrix(), q, 10)
    hits = 0
    for i in range(len(q)):
        got, scores = index.search(q[i], 10)
        assert list(scores) == sorted(scores, reverse=True)
        # rescored scores are exact cosines, so the best one matches exact search's best when found
        if got[0] == pmids[truth_rows[i][0]]:
            assert scores[0] == pytest.approx(truth_scores[i][0], abs=1e-5)
        hits += len(set(got.tolist()) & set(pmids[truth_rows[i]].tolist()))
    recall = hits / (10 * len(q))
    assert recall >= 0.95, recall


def test_new_rows_are_stale_until_folded_in(ivf_set: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    import shutil

    src, pmids, vecs = ivf_set
    folder = tmp_path / "set"
    shutil.copytree(src, folder)
    build_dense_index(folder, IndexOptions(exact_limit=1_000, nlist=128, m=16, rescore=500, train_size=12_000))
    # A new article, and a new vector for an old one (its old vector must stop counting).
    extra = clustered(2, seed=99)
    write_set(folder, np.array([7, int(pmids[5])], dtype=np.int64), extra, name="update")
    stale = VectorIndex.open(folder)
    assert stale.stale_rows == 2
    assert 7 not in stale.search(extra[0], 5)[0]

    info = build_dense_index(folder, IndexOptions(exact_limit=1_000, nlist=128, m=16, rescore=500))
    assert info.kind == "ivfpq" and info.rows == 50_002 and info.vectors == 50_001
    fresh = VectorIndex.open(folder)
    assert fresh.stale_rows == 0
    ids, scores = fresh.search(extra[0], 5)
    assert ids[0] == 7 and scores[0] == pytest.approx(1.0, abs=1e-3)  # rows are stored as float16
    ids, scores = fresh.search(extra[1], 5)
    assert ids[0] == pmids[5] and scores[0] == pytest.approx(1.0, abs=1e-3)
    ids, _ = fresh.search(vecs[5], 50)
    assert list(ids).count(pmids[5]) <= 1  # the superseded row is gone from the index
    assert len(list(folder.glob("index-*.faiss"))) == 1


def test_exact_search_is_exact_and_last_vector_wins(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    vecs = clustered(3_000, seed=3)
    pmids = np.arange(10, 3_010, dtype=np.int64)
    write_set(folder, pmids, vecs)
    replacement = clustered(1, seed=4)
    write_set(folder, np.array([10], dtype=np.int64), replacement, name="again")
    info = build_dense_index(folder)
    assert info.kind == "exact" and info.vectors == 3_000 and info.rows == 3_001
    index = VectorIndex.open(folder)
    assert index.count == 3_000
    ids, scores = index.search(vecs[0], 3)
    assert 10 not in ids.tolist()  # its first vector was replaced
    ids, scores = index.search(replacement[0], 1)
    assert ids.tolist() == [10] and scores[0] == pytest.approx(1.0, abs=1e-3)
    q = clustered(1, seed=5)[0]
    truth, _ = exact_top(VectorStore.open(folder).matrix()[1:3000], q[None, :], 20)
    assert index.search(q, 20)[0].tolist() == (pmids[1:][truth[0]]).tolist()


def test_vector_rows_are_normalised_and_bad_rows_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    vecs = np.array([[3.0, 4.0, 0, 0], [np.nan, 1, 1, 1], [0, 0, 0, 0], [0, 0, 2, 0]], dtype=np.float32)
    with VectorWriter(folder, model="m", dim=4) as w:
        written, invalid = w.append(iter([(np.array([1, 2, 3, 4]), vecs)]), fingerprint="a", source="a")
    assert (written, invalid) == (2, 2)
    store = VectorStore.open(folder)
    assert store.pmids().tolist() == [1, 4]
    assert store.matrix().dtype == np.float16
    assert np.allclose(store.matrix(), [[0.6, 0.8, 0, 0], [0, 0, 1, 0]], atol=1e-3)


def test_a_failed_append_leaves_nothing_visible(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    write_set(folder, np.array([1, 2], dtype=np.int64), clustered(2))

    def broken():
        yield np.array([3], dtype=np.int64), clustered(1, seed=1)
        raise OSError("disk gone")

    with pytest.raises(OSError):
        with VectorWriter(folder, model="synthetic", dim=DIM) as w:
            w.append(broken(), fingerprint="b", source="b")
    store = VectorStore.open(folder)
    assert store.rows == 2 and store.pmids().tolist() == [1, 2]
    assert (folder / "vectors.f16").stat().st_size > 2 * DIM * 2  # the dead bytes are there, unseen
    write_set(folder, np.array([5], dtype=np.int64), clustered(1, seed=2), name="c")
    store = VectorStore.open(folder)
    assert store.pmids().tolist() == [1, 2, 5]
    assert (folder / "vectors.f16").stat().st_size == 3 * DIM * 2


def test_one_writer_at_a_time_and_fixed_dimension(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    write_set(folder, np.array([1], dtype=np.int64), clustered(1))
    with VectorWriter(folder, model="synthetic", dim=DIM):
        with pytest.raises(CorpusError, match="another clinfo process"):
            with VectorWriter(folder, model="synthetic", dim=DIM):
                pass
    with pytest.raises(CorpusError, match="32 dimensions.*64-dimensional"):
        with VectorWriter(folder, model="synthetic", dim=32):
            pass
    with pytest.raises(CorpusError, match="holds vectors of synthetic"):
        with VectorWriter(folder, model="other", dim=DIM):
            pass


def test_an_index_that_missed_its_recall_target_says_so() -> None:
    info = IndexInfo(
        kind="ivfpq", rows=3_000_000, vectors=3_000_000, nlist=8192, m=64, nprobe=2048, rescore=200, recall_at_10=0.827
    )
    assert "recall@10 0.827" in info.line() and "WARNING: recall@10 stayed below the 0.97 target" in info.line()


def test_default_parameters_reach_the_recall_target_by_themselves(
    ivf_set: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """No tuning by the caller: nlist, training sample, PQ size, rescoring depth and nprobe all
    come from the set's size, and the index reaches 0.95 of exact search on held-out queries."""
    import shutil

    src, pmids, vecs = ivf_set
    folder = tmp_path / "set"
    shutil.copytree(src, folder)
    info = build_dense_index(folder, IndexOptions(exact_limit=1_000))
    assert info.kind == "ivfpq" and info.recall_at_10 is not None and info.recall_at_10 >= 0.97, info.line()
    index = VectorIndex.open(folder)
    rng = np.random.default_rng(11)
    q = vecs[rng.choice(len(vecs), 200, replace=False)] + 0.05 * rng.standard_normal((200, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    truth, _ = exact_top(VectorStore.open(folder).matrix(), q, 10)
    hits = sum(len(set(index.search(q[i], 10)[0].tolist()) & set(pmids[truth[i]].tolist())) for i in range(len(q)))
    assert hits / (10 * len(q)) >= 0.95


def test_rows_are_stored_as_float16_and_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((500, DIM)).astype(np.float32) * 3  # not unit length: normalised on the way in
    write_set(folder, np.arange(1, 501, dtype=np.int64), raw)
    store = VectorStore.open(folder)
    assert store.dtype == "float16" and store.matrix().dtype == np.float16
    assert not (folder / "vectors.f32").exists() and (folder / "vectors.f16").stat().st_size == 500 * DIM * 2
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.array_equal(store.matrix(), unit.astype(np.float16))  # nearest float16 of the unit rows
    assert np.abs(np.linalg.norm(store.matrix().astype(np.float32), axis=1) - 1).max() < 1e-3
    # Rows exported and imported again keep their bytes (already unit length: not divided again).
    again = tmp_path / "again"
    write_set(again, store.pmids().copy(), np.asarray(store.matrix()))
    assert (again / "vectors.f16").read_bytes() == (folder / "vectors.f16").read_bytes()
    # Exact search ranks by the stored rows; cosines within float16's precision of float32's.
    build_dense_index(folder)
    q = unit[:20] + 0.02 * rng.standard_normal((20, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = VectorIndex.open(folder)
    for i in range(20):
        ids, scores = index.search(q[i], 5)
        exact = np.sort(unit @ q[i])[::-1][:5]
        assert np.allclose(scores, exact, atol=2e-3)
        assert ids[0] == i + 1


def test_a_float32_set_from_before_float16_still_opens_and_grows(tmp_path: Path) -> None:
    import sqlite3

    folder = tmp_path / "set"
    vecs = clustered(12_000, seed=8)
    with VectorWriter(folder, model="synthetic", dim=DIM, dtype="float32") as w:
        w.append(iter([(np.arange(1, 12_001, dtype=np.int64), vecs)]), fingerprint="old", source="old")
    conn = sqlite3.connect(folder / "manifest.sqlite")  # the manifest as the first layout wrote it: no dtype
    conn.execute("DELETE FROM meta WHERE key='dtype'")
    conn.commit()
    conn.close()
    store = VectorStore.open(folder)
    assert store.dtype == "float32" and store.matrix().dtype == np.float32
    assert np.allclose(store.matrix(), vecs, atol=1e-6)
    # appending keeps the set's own dtype and file
    write_set(folder, np.array([20_000], dtype=np.int64), clustered(1, seed=9), name="more")
    store = VectorStore.open(folder)
    assert store.dtype == "float32" and store.rows == 12_001 and not (folder / "vectors.f16").exists()
    assert (folder / "vectors.f32").stat().st_size == 12_001 * DIM * 4
    assert build_dense_index(folder).kind == "exact"
    ids, scores = VectorIndex.open(folder).search(vecs[3], 1)
    assert ids.tolist() == [4] and scores[0] == pytest.approx(1.0, abs=1e-5)
    info = build_dense_index(folder, IndexOptions(exact_limit=1_000, nlist=64, m=16, train_size=12_001))
    assert info.kind == "ivfpq" and info.recall_at_10 is not None and info.recall_at_10 >= 0.97
    ids, scores = VectorIndex.open(folder).search(vecs[3], 1)
    assert ids.tolist() == [4] and scores[0] == pytest.approx(1.0, abs=1e-5)  # rescored from float32 rows


def test_a_vector_set_of_an_unknown_dtype_is_refused_in_one_line(tmp_path: Path) -> None:
    import sqlite3

    folder = tmp_path / "set"
    write_set(folder, np.array([1], dtype=np.int64), clustered(1))
    conn = sqlite3.connect(folder / "manifest.sqlite")
    conn.execute("UPDATE meta SET value='bfloat16' WHERE key='dtype'")
    conn.commit()
    conn.close()
    with pytest.raises(CorpusError, match="holds bfloat16 rows; this clinfo reads float16 or float32"):
        VectorStore.open(folder)
    with pytest.raises(CorpusError, match="vector dtype 'int8'"):
        VectorWriter(folder, model="synthetic", dim=DIM, dtype="int8")


def test_an_hnsw_quantiser_is_searched_exactly(
    ivf_set: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many lists are assigned through an HNSW graph over the centroids, but searches rank all
    centroids exactly: HNSW returned ~efSearch lists whatever nprobe asked, capping recall."""
    import shutil

    import faiss

    from clinfo.corpus import faiss_index

    src, pmids, vecs = ivf_set
    folder = tmp_path / "set"
    shutil.copytree(src, folder)
    monkeypatch.setattr(faiss_index, "_HNSW_LISTS", 64)  # the HNSW path at a test's size
    info = build_dense_index(
        folder, IndexOptions(exact_limit=1_000, nlist=256, m=16, rescore=500, train_size=20_000, rebuild=True)
    )
    assert info.recall_at_10 is not None and info.recall_at_10 >= 0.97, info.line()
    index = VectorIndex.open(folder)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index.index))
    assert isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexFlat) and ivf.quantizer.ntotal == 256
    # every list is reachable: probing all of them returns as many candidates as asked
    _, cand = index.index.search(vecs[:1], 2_000, params=index._params(256))
    assert (cand >= 0).sum() == 2_000
