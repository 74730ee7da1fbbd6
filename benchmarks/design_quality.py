#!/usr/bin/env python
r"""Study design from title and abstract alone, measured against NLM's indexing.

New PubMed records carry only "Journal Article" until NLM indexes them, so clinfo reads their
design from the title and abstract (:mod:`clinfo.appraisal.design_text`). This measures that path
on real records NLM did index: each record with an abstract in the shared baseline files gets its
reference design from ``classify(a)`` (publication types, MeSH) and its predicted design from
``classify(a, use_indexing=False)`` (the same record with its types and MeSH hidden).

Reference groups, reported separately:

* ``publication type``: a design publication type decided the reference (the target is read here);
* ``MeSH``: no design type, a design MeSH term did (Prospective/Retrospective/Follow-Up Studies...,
  loosely applied in the 1970s);
* ``indexed, no design``: NLM indexed the record (it has MeSH) and named no design. The reference is
  "other" ("animal/in-vitro" under Animals without Humans); only its randomised-trial predictions
  are reported: NLM and the Cochrane retagging project typed trials of that era, so a text
  "randomised trial" here is likely a false positive (other designs were not typed then).

Records are split by PMID parity: even PMIDs are the tune half (rules were written looking at
its errors, ``--show``), odd PMIDs the check half, read only for the figures.

    python benchmarks/design_quality.py [--files A.xml.gz B.xml.gz] [--show "randomised trial:other"] [--n 20]
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clinfo.appraisal.design import DESIGNS, LEVELS, classify  # noqa: E402
from clinfo.models import Article  # noqa: E402
from clinfo.pubmed.xml import iter_pubmed_xml  # noqa: E402

BASELINE = REPO.parent / "shared" / "data" / "pubmed-baseline"
FILES = [BASELINE / "pubmed20n0014.xml.gz", BASELINE / "pubmed21n1298.xml.gz"]
GROUPS = ("publication type", "MeSH", "indexed, no design")
HALVES = ("tune", "check")
RCT = "randomised trial"
TARGET = {"precision": 0.90, "recall": 0.80}
# any mention of randomness at all: a reference trial without one cannot be found from its text
_RANDOM = re.compile(r"random", re.IGNORECASE)


@dataclass
class Row:
    article: Article
    group: str
    half: str
    reference: str
    predicted: str


def half_of(pmid: str) -> str:
    return "tune" if int(pmid) % 2 == 0 else "check"


def load(files: list[Path]) -> tuple[list[Row], Counter[str], float]:
    """The records with an abstract in a reference group, what was read, and the title/abstract
    path's mean milliseconds per record."""
    rows: list[Row] = []
    counts: Counter[str] = Counter()
    text_seconds = 0.0
    for path in files:
        for a in iter_pubmed_xml(path, Article):
            if not isinstance(a, Article):  # DeleteCitation entries
                continue
            counts["records"] += 1
            if not a.abstract_sections:
                continue
            counts["with abstract"] += 1
            ref = classify(a)
            if ref.basis == "publication type":
                group, reference = "publication type", ref.kind
            elif ref.basis == "MeSH":
                group, reference = "MeSH", ref.kind
            elif a.mesh and ref.basis in ("title/abstract", "none"):
                group = "indexed, no design"
                reference = "animal/in-vitro" if ref.human is False else "other"
            else:
                counts["not indexed" if not a.mesh else "not used"] += 1
                if ref.basis == "title/abstract" and not a.mesh and "Review" in a.publication_types:
                    counts["publisher 'Review' read as MA/SR"] += 1
                continue
            clock = time.perf_counter()
            predicted = classify(a, use_indexing=False).kind
            text_seconds += time.perf_counter() - clock
            rows.append(Row(a, group, half_of(a.pmid), reference, predicted))
    return rows, counts, 1000 * text_seconds / max(len(rows), 1)


LEVEL_NAMES = ("level 1", "level 2", "level 3", "level 4", "level 5", "not graded")


def _level(kind: str) -> str:
    level = LEVELS[kind]
    return f"level {level}" if level else "not graded"


def scores(
    pairs: list[tuple[str, str]], names: tuple[str, ...] = DESIGNS
) -> dict[str, tuple[float | None, float | None, int, int]]:
    """Per class: precision, recall (None when undefined), support, predicted."""
    tp = Counter(r for r, p in pairs if r == p)
    support = Counter(r for r, _ in pairs)
    predicted = Counter(p for _, p in pairs)
    out = {}
    for kind in names:
        if support[kind] or predicted[kind]:
            precision = tp[kind] / predicted[kind] if predicted[kind] else None
            recall = tp[kind] / support[kind] if support[kind] else None
            out[kind] = (precision, recall, support[kind], predicted[kind])
    return out


def _f(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def print_table(title: str, pairs: list[tuple[str, str]]) -> None:
    print(f"\n{title}: {len(pairs)} records, accuracy {sum(r == p for r, p in pairs) / max(len(pairs), 1):.3f}")
    print(f"  {'design':<22} {'precision':>9} {'recall':>7} {'support':>8} {'predicted':>9}")
    for kind, (p, r, s, n) in scores(pairs).items():
        print(f"  {kind:<22} {_f(p):>9} {_f(r):>7} {s:>8} {n:>9}")
    levels = [(_level(r), _level(p)) for r, p in pairs]
    print("  by level (meta-analysis and systematic review are both 1): " + "; ".join(
        f"{lv} P {_f(p)} R {_f(r)} n {s}" for lv, (p, r, s, _) in scores(levels, LEVEL_NAMES).items()))  # fmt: skip
    wrong = Counter((r, p) for r, p in pairs if r != p)
    print("  most frequent confusions (reference -> predicted): " + "; ".join(
        f"{r} -> {p} {n}" for (r, p), n in wrong.most_common(8)))  # fmt: skip


def show(rows: list[Row], spec: str, n: int) -> None:
    ref, _, pred = spec.partition(":")
    picked = [x for x in rows if x.half == "tune" and x.reference == ref and (not pred or x.predicted == pred)]
    print(f"\n{len(picked)} tune-half records {ref} -> {pred or 'anything'}; the first {n}:")
    for x in picked[:n]:
        a = x.article
        print(f"--- {a.pmid} ({a.year}) {x.reference} -> {x.predicted}; types: {', '.join(a.publication_types)}")
        print(f"T: {a.title}\nA: {a.abstract[:700]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", nargs="+", type=Path, default=FILES, help="PubMed XML files (.xml or .xml.gz)")
    ap.add_argument("--show", help="print tune-half records 'REFERENCE:PREDICTED' (or 'REFERENCE:')")
    ap.add_argument("--n", type=int, default=20, help="how many records --show prints")
    args = ap.parse_args()
    print("$ python " + " ".join(shlex.quote(x) for x in sys.argv))
    start = time.perf_counter()
    rows, counts, ms = load(args.files)
    print(f"files: {', '.join(p.name for p in args.files)}; " + ", ".join(f"{k}: {v}" for k, v in counts.items())
          + f" ({time.perf_counter() - start:.0f} s; title/abstract path {ms:.1f} ms a record)")  # fmt: skip
    if args.show:
        show(rows, args.show, args.n)
        return
    for group in GROUPS[:2]:
        for half in HALVES:
            pairs = [(x.reference, x.predicted) for x in rows if x.group == group and x.half == half]
            print_table(f"[{group}] {half} half", pairs)

    print("\nRandomised trials (reference: publication type), by half:")
    for half in HALVES:
        typed = [x for x in rows if x.group == "publication type" and x.half == half]
        untyped = [x for x in rows if x.group == "indexed, no design" and x.half == half]
        trials = [x for x in typed if x.reference == RCT]
        found = sum(x.predicted == RCT for x in trials)
        said = [x for x in typed if x.predicted == RCT]
        extra = sum(x.predicted == RCT for x in untyped)
        stated = sum(bool(_RANDOM.search(f"{x.article.title} {x.article.abstract}")) for x in trials)
        precision = found / max(len(said), 1)
        recall = found / max(len(trials), 1)
        print(
            f"  {half}: precision {precision:.3f} ({found}/{len(said)}), recall {recall:.3f} ({found}/{len(trials)})"
            f" [target >= {TARGET['precision']:.2f} / >= {TARGET['recall']:.2f}]"
        )
        print(
            f"    reference trials whose title or abstract mentions randomness at all: {stated}/{len(trials)}"
            f" (recall ceiling of any reading of the text: {stated / max(len(trials), 1):.3f});"
            f" recall among them {sum(x.predicted == RCT for x in trials if _RANDOM.search(x.article.title + ' ' + x.article.abstract)) / max(stated, 1):.3f}"  # noqa: E501
        )
        print(
            f"    also said 'randomised trial' of {extra} of the {len(untyped)} indexed records NLM typed no design:"
            f" precision over both {found / max(len(said) + extra, 1):.3f}"
        )
    print(
        "\nReference noise: most typed trials here are 1970s records typed by the Cochrane retagging project,"
        " which read the full text; an abstract often never says how patients were allocated, and a trial typed"
        " only 'Clinical Trial' or 'Controlled Clinical Trial' may say 'randomly allocated' (counted as a false"
        " positive above). The MeSH group's 'Follow-Up Studies' and 'Retrospective Studies' also cover case series."
    )


if __name__ == "__main__":
    main()
