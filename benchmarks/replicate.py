#!/usr/bin/env python
"""A large corpus input from the real NLM records: the two baseline files replicated under new PMIDs.

Copy ``k`` of every record gets PMID ``pmid + k * OFFSET`` (OFFSET is above any real PMID), so
copies never collide and the text, MeSH and years stay real. Only records the corpus keeps (with
an abstract) are written, as JSON Lines, one file per copy, so the result feeds ``build_index``
or ``clinfo index build`` directly. Files are reused when they already exist with the same name.

    python benchmarks/replicate.py --citations 1000000 --out /tmp/clinfo-1m
    # in code: from benchmarks.replicate import replicate; files = replicate(1_000_000, folder)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BASELINE = REPO.parent / "shared" / "data" / "pubmed-baseline"
FILES = [BASELINE / "pubmed20n0014.xml.gz", BASELINE / "pubmed21n1298.xml.gz"]
OFFSET = 100_000_000  # real PMIDs are below 5e7


def base_records() -> list[dict]:
    """The distinct records with an abstract from both files, later file winning, as JSON objects."""
    from clinfo.models import Article
    from clinfo.pubmed.xml import iter_pubmed_xml

    out: dict[str, dict] = {}
    for f in FILES:
        for item in iter_pubmed_xml(f, Article):
            if not isinstance(item, Article):
                for pmid in getattr(item, "pmids", []):
                    out.pop(pmid, None)
                continue
            if not any(s.text.strip() for s in item.abstract_sections):
                continue
            out[item.pmid] = {
                "pmid": int(item.pmid),
                "title": item.title,
                "abstract": [{"label": s.label, "text": s.text} for s in item.abstract_sections],
                "journal": item.journal,
                "year": item.year,
                "mesh": item.mesh,
                "publication_types": item.publication_types,
                "authors": item.authors,
                "doi": item.doi,
            }
    return list(out.values())


def replicate(citations: int, folder: Path) -> list[Path]:
    """JSON Lines files holding about ``citations`` records (whole copies of the base records)."""
    folder.mkdir(parents=True, exist_ok=True)
    records: list[dict] | None = None
    files = []
    copy = 0
    total = 0
    while total < citations:
        path = folder / f"copy{copy:03d}.jsonl"
        if not path.is_file():
            if records is None:
                records = base_records()
            tmp = path.with_suffix(".tmp")
            with tmp.open("w", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps({**rec, "pmid": rec["pmid"] + copy * OFFSET}, ensure_ascii=False) + "\n")
            tmp.replace(path)
        with path.open("rb") as fh:
            n = sum(1 for _ in fh)
        files.append(path)
        total += n
        copy += 1
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--citations", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    files = replicate(args.citations, args.out)
    print(f"{len(files)} files in {args.out}")


if __name__ == "__main__":
    main()
