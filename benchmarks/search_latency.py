#!/usr/bin/env python
"""Search latency of the local corpus (lexical, bm25 mode), warm.

Queries (seeded, reproducible): natural-language questions sampled from PubMedQA PQA-L; the same
questions with a publication-year window (DateRange, as the pipeline passes it); PubMed-syntax
queries built from the same items' MeSH terms and question words (MeSH [mh], [tiab] words and
phrases, truncation, OR groups, NOT, date ranges), the shape an LLM writes; and planner-style
queries of common words (``patients[tiab] AND treatment[tiab]``). Each query runs through
LocalSource.search_sync, top 20. A first pass warms the caches; the second pass is timed.

Without --corpus, a corpus of the two NLM baseline files is built in a temporary folder;
``--corpus big.db --build-from DIR`` builds one from JSON Lines made by benchmarks/replicate.py.
The script runs unchanged against an older checkout (PYTHONPATH=that checkout) to compare engines.

    python benchmarks/search_latency.py [--corpus corpus.db] [--n 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
FILES = [SHARED / "pubmed-baseline" / "pubmed20n0014.xml.gz", SHARED / "pubmed-baseline" / "pubmed21n1298.xml.gz"]
STOP = set(
    "a an and are as at be by can do does for from has have how in is it its of on or than that the their there"
    " these this those to was were what when which who whom why will with without".split()
)


def pubmedqa() -> list[dict]:
    items = {}
    for name in ("pqal_dev.json", "pqal_test_unlabeled.json"):
        items.update(json.loads((SHARED / "pubmedqa" / name).read_text()))
    return [items[k] for k in sorted(items, key=int)]


def boolean_query(item: dict, rng: random.Random) -> str:
    """Two or three concept groups ANDed, each an OR of MeSH headings, [tiab] words, truncations."""
    words = [w for w in re.findall(r"[a-z][a-z0-9-]{3,}", item["QUESTION"].lower()) if w not in STOP]
    mesh = [
        m for m in item.get("MESHES") or [] if m not in ("Humans", "Female", "Male", "Adult", "Middle Aged", "Aged")
    ]
    rng.shuffle(words)
    rng.shuffle(mesh)
    groups = []
    for g in range(rng.randint(2, 3)):
        options = []
        if g < len(mesh) and rng.random() < 0.7:
            options.append(f'"{mesh[g]}"[mh]')
        for w in words[2 * g : 2 * g + rng.randint(1, 2)]:
            options.append(f"{w[:5]}*[tiab]" if len(w) > 7 and rng.random() < 0.3 else f"{w}[tiab]")
        if options:
            groups.append(options[0] if len(options) == 1 else "(" + " OR ".join(options) + ")")
    query = " AND ".join(groups) if groups else (words[0] if words else "therapy")
    r = rng.random()
    if r < 0.3:
        start = rng.randint(1970, 2015)
        query += f" AND {start}:{start + rng.randint(1, 10)}[dp]"
    elif r < 0.4:
        query += " NOT (animals[mh] NOT humans[mh])"
    elif r < 0.5:
        query += ' AND english[la] AND "journal article"[pt]'
    return query


def corpus_bytes(db: Path) -> int:
    """The SQLite file plus the lexical index folder beside it (if any)."""
    lexical = Path(f"{db}.tantivy")
    return db.stat().st_size + (
        sum(f.stat().st_size for f in lexical.rglob("*") if f.is_file()) if lexical.is_dir() else 0
    )


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--corpus", type=Path, help="corpus built from the two baseline files (built to a temp dir if absent)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--show", type=int, default=3, help="print this many example queries per kind")
    ap.add_argument("--n", type=int, default=500, help="queries per kind")
    ap.add_argument(
        "--build-from", type=Path, help="with --corpus: build it from these JSON Lines files (a folder) if absent"
    )
    args = ap.parse_args()

    from clinfo.corpus.build import build_index
    from clinfo.sources.corpus import LocalSource

    tmp = None
    corpus = args.corpus
    if corpus is None or not corpus.exists():
        tmp = tempfile.TemporaryDirectory()
        corpus = corpus or Path(tmp.name) / "corpus.db"
        print("building", corpus, "...", file=sys.stderr)
        inputs = sorted(args.build_from.glob("*.jsonl")) if args.build_from else FILES
        print(build_index(inputs, corpus, progress=False).line(), file=sys.stderr)

    import datetime as dt

    from clinfo.sources.base import DateRange

    rng = random.Random(args.seed)
    items = rng.sample(pubmedqa(), args.n)
    natural = [(it["QUESTION"], None) for it in items]
    windows = [DateRange(start=dt.date(y, 1, 1), end=dt.date(y + 4, 12, 31)) for y in (1975, 2017, 2019)]
    windowed = [(it["QUESTION"], rng.choice(windows)) for it in items]
    boolean = [(boolean_query(it, rng), None) for it in items]
    common = [
        "patients",
        "treatment",
        "study",
        "results",
        "clinical",
        "disease",
        "risk",
        "children",
        "women",
        "therapy",
    ]
    planner = [(" AND ".join(f"{w}[tiab]" for w in rng.sample(common, 2)), None) for _ in items]
    src = LocalSource(corpus)
    print(
        f"corpus {corpus} ({src.articles:,} articles, {corpus_bytes(corpus) / 1e6:,.0f} MB with its lexical index),"
        f" load_avg={os.getloadavg()[0]:.2f}"
    )
    kinds = (
        ("pubmed-syntax", boolean),
        ("planner-common", planner),
        ("natural-language", natural),
        ("natural+years", windowed),
    )
    for kind, queries in kinds:
        for q, dates in queries:  # warm-up: page cache, vocabulary cache
            src.search_sync(q, limit=args.k, dates=dates)
        times, zero = [], 0
        for q, dates in queries:
            t = time.perf_counter()
            result = src.search_sync(q, limit=args.k, dates=dates)
            times.append((time.perf_counter() - t) * 1000)
            zero += not result.pmids
        print(
            f"{kind:17s} n={len(queries)} p50={percentile(times, 50):6.2f} ms  p95={percentile(times, 95):6.2f} ms"
            f"  p99={percentile(times, 99):6.2f} ms  max={max(times):6.1f} ms"
            f"  mean={statistics.mean(times):6.2f} ms  zero-hit={zero}"
        )
        for q, dates in queries[: args.show]:
            print(f"    e.g. {q}" + (f"  [{dates.start.year}-{dates.end.year}]" if dates else ""))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
