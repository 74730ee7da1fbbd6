"""How much of each design the study filter's PubMed form finds, with and without its text words.

Records: the loopback E-utilities server's (the first 3,000 citations of the shared baseline file
pubmed21n1298.xml.gz plus the recorded fixtures), each parsed as the pipeline parses efetch XML.
Truth: each record's derived design (``Article.design``, decided by code). For each design the
filter's clause is run alone on the server's boolean evaluator ([pt] and [mh] matched whole, not
exploded as PubMed does), once with only its publication types and MeSH headings and once whole
(plus the Clinical Queries-style title/abstract words), and compared with the derived design:
recall (share of the design's records the clause finds: what the search would not lose) and
precision (share of what the clause finds that has that design: the rest is dropped after fetch).

The file is a 2021 update: most records are not indexed yet, so their derived design comes from
their title and abstract, read with patterns close to the clause's text words. The recall "with text
words" is therefore an upper bound; what the table shows is how much a [pt]/[mh]-only filter loses.

    python benchmarks/filter_recall.py [--records 3000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clinfo.appraisal.filters import StudyFilter  # noqa: E402
from clinfo.models import Article  # noqa: E402
from clinfo.pubmed.xml import parse_efetch  # noqa: E402
from tests.support.eutils import EFETCH_HEAD, EFETCH_TAIL, EUtilsServer  # noqa: E402

DESIGNS = ("meta-analysis", "systematic review", "randomised trial", "cohort", "case report/series")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=3000, help="baseline citations the server loads")
    args = parser.parse_args()
    server = EUtilsServer(records=args.records)
    pmids = list(server.corpus)
    articles = parse_efetch(EFETCH_HEAD + b"".join(server.corpus[p].xml for p in pmids) + EFETCH_TAIL, Article)
    design = {a.pmid: a.design.kind for a in articles}
    print(f"{len(articles)} records; clause run alone on the loopback esearch; truth: Article.design")
    print(f"{'design':<20} {'records':>7} | {'[pt]/[mh] only':>22} | {'with text words':>22}")
    print(f"{'':<20} {'':>7} | {'recall':>10} {'precision':>11} | {'recall':>10} {'precision':>11}")
    for kind in DESIGNS:
        truth = {p for p, k in design.items() if k == kind}
        clause = StudyFilter((kind,)).designs_pubmed() or ""
        indexed = " OR ".join(t for t in clause.split(" OR ") if t.endswith(("[pt]", "[mh]")))
        cells = []
        for term in (indexed, clause):
            found = set(server.expected_pmids(term, 10**6)) if term else set()
            hit = len(truth & found)
            recall = hit / len(truth) if truth else float("nan")
            precision = hit / len(found) if found else float("nan")
            cells.append(f"{recall:>10.3f} {precision:>11.3f}")
        print(f"{kind:<20} {len(truth):>7} | {cells[0]} | {cells[1]}")
    # the humans clause after a query most abstracts match
    matched = set(server.expected_pmids("the", 10**6))
    kept = set(server.expected_pmids(StudyFilter(None, True).apply("the"), 10**6))
    animal = {a.pmid for a in articles if a.design.human is False} & matched
    untagged = {a.pmid for a in articles if a.design.human is None} & matched
    print(
        f"humans clause after 'the' ({len(matched)} records): {len(animal & kept)} of {len(animal)} tagged animals"
        f" without humans kept, {len(untagged & kept)} of {len(untagged)} without check tags kept"
    )


if __name__ == "__main__":
    main()
