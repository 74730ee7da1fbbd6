"""``clinfo index import-vectors`` on generated .npy/JSON chunks against a real corpus: counts,
resuming, and bad input (one ``error:`` line, exit 1, the vector set unchanged)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clinfo.corpus.store import RecordStore
from tests.support.common import REPO


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clinfo", "index", "import-vectors", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def chunk(folder: Path, name: str, pmids: list[int | str], dim: int = 384, seed: int = 0) -> tuple[Path, Path]:
    vecs = np.random.default_rng(seed).standard_normal((len(pmids), dim)).astype(np.float32)
    np.save(folder / f"{name}.npy", vecs)
    (folder / f"{name}.json").write_text(json.dumps(pmids))
    return folder / f"{name}.npy", folder / f"{name}.json"


def pairs(*chunks: tuple[Path, Path]) -> list[str]:
    return [a for v, p in chunks for a in ("--vectors", str(v), "--pmids", str(p))]


def snapshot(folder: Path) -> dict[str, str]:
    return (
        {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}
        if folder.exists()
        else {}
    )


@pytest.fixture
def corpus(small_corpus: Path, tmp_path: Path) -> tuple[Path, list[int]]:
    db = tmp_path / "corpus.db"
    shutil.copy(small_corpus, db)
    store = RecordStore.open(db)
    try:
        pmids = sorted(int(r[0]) for r in store.conn.execute("SELECT pmid FROM docs"))
    finally:
        store.close()
    return db, pmids


def test_import_counts_skips_and_resumes(corpus: tuple[Path, list[int]], tmp_path: Path) -> None:
    db, pmids = corpus
    absent = [99_000_001, 99_000_002, 99_000_003]
    a = chunk(tmp_path, "a", [str(p) for p in pmids[:100]] + [str(p) for p in absent])  # MedCPT writes strings
    b_ids = pmids[100:150]
    b = chunk(tmp_path, "b", b_ids, seed=1)
    vecs = np.load(b[0])
    vecs[7] = np.nan
    np.save(b[0], vecs)
    done = run(str(db), *pairs(a, b), "-q")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "imported 149 vectors from 2 chunks" in lines[0]
    assert "skipped 3 PMIDs not in the corpus and 1 invalid vectors" in lines[0]
    assert "the set holds 149 rows of 384 dimensions" in lines[0]
    assert lines[1] == "exact search over 149 vectors"

    folder = Path(f"{db}.dense") / "all-MiniLM-L6-v2"
    before = snapshot(folder)
    again = run(str(db), *pairs(b, a), "-q")
    assert again.returncode == 0, again.stderr
    assert "imported 0 vectors from 0 chunks" in again.stdout and "2 chunks already imported" in again.stdout
    assert snapshot(folder)["vectors.f16"] == before["vectors.f16"]

    from clinfo.corpus.vectors import VectorStore

    store = VectorStore.open(folder)
    assert store.rows == 149 and set(store.pmids().tolist()) == set(pmids[:100]) | (set(b_ids) - {b_ids[7]})
    row = np.flatnonzero(store.pmids() == pmids[3])[0]
    expected = np.load(a[0])[3]
    assert store.dtype == "float16" and not (folder / "vectors.f32").exists()  # float32 chunks are stored as float16
    assert (folder / "vectors.f16").stat().st_size == 149 * 384 * 2
    assert np.allclose(store.matrix()[row], expected / np.linalg.norm(expected), atol=1e-3)


@pytest.mark.parametrize(
    "case, message",
    [
        ("truncated", "truncated .npy file"),
        ("not_a_list", "expected a JSON list of PMIDs"),
        ("not_pmids", 'expected a JSON list of PMIDs, found "abc"'),
        ("bad_json", "not valid JSON"),
        ("length", "lists 9 PMIDs but"),
        ("one_dimensional", "expected a 2-D matrix"),
        ("wrong_model_dim", "has 256 dimensions but all-MiniLM-L6-v2 makes 384"),
        ("unpaired", "give one --pmids per --vectors"),
    ],
)
def test_bad_chunks_fail_with_one_line_and_write_nothing(
    corpus: tuple[Path, list[int]], tmp_path: Path, case: str, message: str
) -> None:
    db, pmids = corpus
    good = chunk(tmp_path, "good", pmids[:10])
    bad_v, bad_p = chunk(tmp_path, "bad", pmids[10:20])
    extra: list[str] = []
    if case == "truncated":
        data = bad_v.read_bytes()
        bad_v.write_bytes(data[: len(data) - 1000])
    elif case == "not_a_list":
        bad_p.write_text(json.dumps({"pmids": pmids[10:20]}))
    elif case == "not_pmids":
        bad_p.write_text(json.dumps([*pmids[10:19], "abc"]))
    elif case == "bad_json":
        bad_p.write_text("[1, 2,")
    elif case == "length":
        bad_p.write_text(json.dumps(pmids[10:19]))
    elif case == "one_dimensional":
        np.save(bad_v, np.zeros(10, dtype=np.float32))
    elif case == "wrong_model_dim":
        bad_v, bad_p = chunk(tmp_path, "bad", pmids[10:20], dim=256)
    elif case == "unpaired":
        extra = ["--vectors", str(bad_v)]
    if case == "unpaired":
        args = pairs(good) + extra
    elif case == "wrong_model_dim":
        args = pairs((bad_v, bad_p))  # alone: beside a 384-dimensional chunk it fails as a mixed set
    else:
        args = pairs(good, (bad_v, bad_p))
    result = run(str(db), *args, "-q")
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not Path(f"{db}.dense").exists()  # the good pair before the bad one was not imported either


def test_dimension_is_fixed_by_the_first_import(corpus: tuple[Path, list[int]], tmp_path: Path) -> None:
    db, pmids = corpus
    first = run(str(db), *pairs(chunk(tmp_path, "a", pmids[:20], dim=32)), "--model", "example/encoder", "-q")
    assert first.returncode == 0, first.stderr
    folder = Path(f"{db}.dense") / "example_encoder"
    before = snapshot(folder)
    second = run(str(db), *pairs(chunk(tmp_path, "b", pmids[20:40], dim=48)), "--model", "example/encoder", "-q")
    assert second.returncode == 1
    expected = (
        f"error: {tmp_path / 'b.npy'} has 48 dimensions, but {folder} holds 32-dimensional vectors of example/encoder"
    )
    assert second.stderr.strip() == expected
    assert snapshot(folder) == before


def test_missing_corpus_and_nothing_to_do(tmp_path: Path) -> None:
    v, p = chunk(tmp_path, "a", [1, 2])
    missing = run(str(tmp_path / "nope.db"), *pairs((v, p)))
    assert missing.returncode == 1 and missing.stderr.startswith("error: no corpus at")
    nothing = run(str(tmp_path / "nope.db"), "--no-index")
    assert nothing.returncode == 1 and "nothing to do" in nothing.stderr


def test_import_into_a_float32_set_from_before_keeps_it_float32(corpus: tuple[Path, list[int]], tmp_path: Path) -> None:
    """A vector set written before float16 storage (float32 rows in vectors.f32, no dtype in its
    manifest) takes new chunks in its own layout and is searched as before."""
    import sqlite3

    from clinfo.corpus.vectors import VectorStore, VectorWriter

    db, pmids = corpus
    folder = Path(f"{db}.dense") / "all-MiniLM-L6-v2"
    old = np.random.default_rng(5).standard_normal((30, 384)).astype(np.float32)
    with VectorWriter(folder, model="all-MiniLM-L6-v2", dim=384, dtype="float32") as w:
        w.append(iter([(np.array(pmids[:30], dtype=np.int64), old)]), fingerprint="before", source="before")
    conn = sqlite3.connect(folder / "manifest.sqlite")
    conn.execute("DELETE FROM meta WHERE key='dtype'")
    conn.commit()
    conn.close()
    done = run(str(db), *pairs(chunk(tmp_path, "new", pmids[30:50], seed=3)), "-q")
    assert done.returncode == 0, done.stderr
    assert "the set holds 50 rows of 384 dimensions" in done.stdout and "exact search over 50 vectors" in done.stdout
    store = VectorStore.open(folder)
    assert store.dtype == "float32" and not (folder / "vectors.f16").exists()
    assert (folder / "vectors.f32").stat().st_size == 50 * 384 * 4
    new = np.load(tmp_path / "new.npy")
    assert np.allclose(store.matrix()[30], new[0] / np.linalg.norm(new[0]), atol=1e-6)
    assert np.allclose(store.matrix()[0], old[0] / np.linalg.norm(old[0]), atol=1e-6)
