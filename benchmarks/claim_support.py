"""Claim support (clinfo.claims): does a conclusion score higher against its own abstract than
against a same-topic abstract it does not come from?

Built from real data in ../shared, deterministically:

* claims: the conclusion (``LONG_ANSWER``) of each PubMedQA PQA-L dev item;
* supported pair: the claim against its own abstract without the conclusion (``CONTEXTS``, with
  their section labels);
* misattributed pair: the claim against the most similar of the ~33k real abstracts in the two
  shared NLM baseline files, by BM25 with the conclusion as the query (the local corpus's own
  lexical index, built once into ``--work``): usually the same topic, sometimes the same question.

Items are split into a tune and a check half by the same hash as benchmarks/ranking_sets.py. The
logistic calibration and the threshold are fitted on the tune half (accuracy-maximising
threshold); AUC, precision and recall are reported on the check half, for term coverage alone (the
baseline), the terms-only calibration (no encoder) and the full calibration (with
all-MiniLM-L6-v2). The script also prints the fitted weights in the form of
``clinfo.claims.CALIBRATIONS`` and the check-half figures of the weights that ship there.

    python benchmarks/claim_support.py [--work /tmp/clinfo-claim-support] [--limit 500]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from ranking_sets import BASELINE, PQA_DEV, _half  # noqa: E402

from clinfo.claims import CALIBRATIONS, Calibration, Signals, signals_of  # noqa: E402
from clinfo.models import AbstractSection, Article  # noqa: E402

LEXICAL = ("rare", "phrases")
FULL = (*LEXICAL, "sentence_similarity", "abstract_similarity")
RIDGE = 0.1  # L2 on the weights (not the bias): keeps the fit stable when signals are correlated


def own_abstract(pmid: str, item: dict) -> Article:
    labels = item.get("LABELS") or []
    sections = [
        AbstractSection(label=labels[i] if i < len(labels) else "", text=text)
        for i, text in enumerate(item["CONTEXTS"])
    ]
    return Article(pmid=pmid, abstract_sections=sections)


def neighbours(items: dict[str, dict], work: Path) -> dict[str, Article]:
    """For each item, the BM25-nearest abstract of the baseline files to its conclusion (not itself)."""
    from clinfo.corpus.build import build_index
    from clinfo.sources.corpus import LocalSource

    db = work / "baseline.db"
    summary = build_index(BASELINE, db, progress=False)  # skips files already ingested
    print(f"corpus {db}: {summary.articles:,} abstracts", file=sys.stderr)
    src = LocalSource(str(db), mode="bm25")
    out: dict[str, Article] = {}
    try:
        for pmid, item in items.items():
            found = src.search_sync(item["LONG_ANSWER"], limit=5)
            fetched = {a.pmid: a for a in src.fetch_sync([p for p in found.pmids if p != pmid])}
            pick = next((fetched[p] for p in found.pmids if p in fetched and fetched[p].abstract_sections), None)
            if pick is not None:
                out[pmid] = pick
    finally:
        src.close()
    return out


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:  # the Mann-Whitney statistic: the share of (positive, negative) pairs ordered right
        pos, neg = scores[labels == 1], scores[labels == 0]
        diff = pos[:, None] - neg[None, :]
        return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)
    return float(roc_auc_score(labels, scores))


def fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression (Newton's method; bias not penalised)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    penalty = np.full(xb.shape[1], RIDGE)
    penalty[-1] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w[:-1], float(w[-1])


def best_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The cut with the highest accuracy on these scores (ties: the one nearest 0.5)."""
    cuts = np.unique(np.round(scores, 4))
    acc = [((scores >= c) == (y == 1)).mean() for c in cuts]
    top = max(acc)
    return float(min((c for c, a in zip(cuts, acc) if a == top), key=lambda c: abs(c - 0.5)))


def precision_recall(y: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    said = scores >= threshold
    tp = int((said & (y == 1)).sum())
    return tp / max(int(said.sum()), 1), tp / max(int((y == 1).sum()), 1)


def matrix(signals: list[Signals], names: tuple[str, ...]) -> np.ndarray:
    return np.array([[float(getattr(s, n) or 0.0) for n in names] for s in signals])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/clinfo-claim-support"), help="the baseline corpus")
    ap.add_argument("--limit", type=int, default=500, help="PubMedQA dev items used")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    items = dict(list(json.loads(PQA_DEV.read_text(encoding="utf-8")).items())[: args.limit])
    near = neighbours(items, args.work)
    t_near = time.perf_counter() - started
    pairs, labels, halves = [], [], []
    same_topic = 0
    for pmid, item in items.items():
        if pmid not in near:
            continue
        claim = item["LONG_ANSWER"]
        pairs += [(claim, own_abstract(pmid, item)), (claim, near[pmid])]
        labels += [1, 0]
        halves += [_half(pmid)] * 2
        same_topic += bool(set(item.get("MESHES") or []) & set(near[pmid].mesh))
    y, half = np.array(labels), np.array(halves)
    started = time.perf_counter()
    signals = signals_of(pairs)
    t_signals = time.perf_counter() - started
    if signals[0].sentence_similarity is None:
        sys.exit("error: no encoder runtime for all-MiniLM-L6-v2: pip install 'clinfo[local]'")

    tune, check = half == "tune", half == "check"
    print(
        f"Claim support: {len(pairs) // 2} PubMedQA dev conclusions, each against its own abstract (supported) and"
        f" the BM25-nearest of the baseline abstracts (misattributed; {same_topic} share a MeSH heading with the item)"
    )
    print(f"tune half {tune.sum() // 2} items, check half {check.sum() // 2}; AUC on both, the rest on check\n")
    header = f"{'method':<50} {'AUC tune':>8} {'AUC check':>9} {'threshold':>9} {'precision':>9} {'recall':>7}"
    print(header)
    print("-" * len(header))

    def row(name: str, scores: np.ndarray, threshold: float | None) -> None:
        cells = f"{name:<50} {auc(y[tune], scores[tune]):>8.4f} {auc(y[check], scores[check]):>9.4f}"
        if threshold is not None:
            p, r = precision_recall(y[check], scores[check], threshold)
            cells += f" {threshold:>9.4f} {p:>9.3f} {r:>7.3f}"
        print(cells)

    coverage = matrix(signals, ("coverage",))[:, 0]
    row("term coverage alone (IDF-weighted)", coverage, best_threshold(y[tune], coverage[tune]))
    sentence_sim = matrix(signals, ("sentence_similarity",))[:, 0]
    row("best-sentence similarity alone", sentence_sim, best_threshold(y[tune], sentence_sim[tune]))
    fitted: dict[str, Calibration] = {}
    for name, features in (("coverage", LEXICAL), ("coverage+similarity", FULL)):
        x = matrix(signals, features)
        w, b = fit_logistic(x[tune], y[tune].astype(float))
        scores = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        threshold = best_threshold(y[tune], scores[tune])
        fitted[name] = Calibration(features, tuple(round(float(v), 2) for v in w), round(b, 2), round(threshold, 2))
        row(f"{name}: fitted on tune", scores, threshold)
        shipped = CALIBRATIONS[name]
        ship_scores = np.array([shipped.score(s) for s in signals])
        row(f"{name}: as shipped in clinfo.claims", ship_scores, shipped.threshold)
    print("\nfitted calibrations (clinfo.claims.CALIBRATIONS):")
    for name, cal in fitted.items():
        print(f"  {name!r}: weights {cal.weights} for {cal.features}, bias {cal.bias}, threshold {cal.threshold}")
    print(f"\nneighbours {t_near:.0f} s; signals {t_signals:.0f} s ({len(pairs)} pairs, encoder included)")


if __name__ == "__main__":
    main()
