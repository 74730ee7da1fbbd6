#!/usr/bin/env python
"""Build rate of the local corpus from the two NLM files in ../shared (50,788 citations).

Prints citations/s over wall time, CPU seconds (this process, the lexical index's writer thread
and its parser workers), peak RSS and the size on disk (SQLite records + the lexical index). The
machine is shared: the load average before and after each run is printed too, and citations per
CPU-second is the figure least affected by other work (on N idle cores the build runs at about N
times it: the two files are parsed in parallel while this process writes).

    python benchmarks/index_build.py [--workers N] [--keep corpus.db]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BASELINE = REPO.parent / "shared" / "data" / "pubmed-baseline"
FILES = [BASELINE / "pubmed20n0014.xml.gz", BASELINE / "pubmed21n1298.xml.gz"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--workers", type=int, default=None, help="parser processes (default: one per CPU, at most one per file)"
    )
    ap.add_argument("--keep", type=Path, help="copy the built corpus here")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    from clinfo.corpus.build import build_index

    print(f"cpus={os.cpu_count()} load_avg_before={os.getloadavg()[0]:.2f}")
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "corpus.db"
            t0, c0 = time.perf_counter(), os.times()
            summary = build_index(FILES, out, progress=False, workers=args.workers)
            wall, c1 = time.perf_counter() - t0, os.times()
            cpu_self = (c1.user - c0.user) + (c1.system - c0.system)
            cpu_children = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
            lexical = Path(f"{out}.tantivy")
            db_size = out.stat().st_size
            lex_size = sum(f.stat().st_size for f in lexical.rglob("*") if f.is_file()) if lexical.is_dir() else 0
            size = db_size + lex_size
            if args.keep and run == args.repeat - 1:
                shutil.copy(out, args.keep)
                if lexical.is_dir():
                    shutil.copytree(lexical, Path(f"{args.keep}.tantivy"), dirs_exist_ok=True)
        cpu = cpu_self + cpu_children
        print(summary.line())
        n = summary.citations_read
        per_citation = db_size / max(summary.articles, 1)
        print(
            f"run {run + 1}: {n:,} citations in {wall:.2f} s wall = {n / wall:,.0f} citations/s;"
            f" cpu {cpu:.1f} s (writer {cpu_self:.1f} s, parsers {cpu_children:.1f} s)"
            f" = {n / cpu:,.0f} citations per cpu-second;"
            f" on disk {size / 1e6:.0f} MB (records {db_size / 1e6:.0f} MB = {per_citation:,.0f} B/citation stored,"
            f" lexical index {lex_size / 1e6:.0f} MB);"
            f" load_avg_after={os.getloadavg()[0]:.2f}"
        )
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: writer {rss_self:.0f} MB, largest parser worker {rss_children:.0f} MB")


if __name__ == "__main__":
    main()
