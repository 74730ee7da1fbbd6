"""Scores a run from its predictions file alone (no LLM call): retrieval, yes/no/maybe, text,
citations, claim support, cost and speed.

Retrieval metrics come from ir-measures (pytrec_eval) and ROUGE from rouge-score (both in the ``[eval]`` extra);
accuracy and macro-F1 are a few lines and need no library. Means are over the questions
that were answered (failed questions are counted under ``errors``), and every section says
over how many questions it was computed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from clinfo.eval.datasets import LABELS
from clinfo.eval.run_dir import PREDICTIONS, RunError, read_config, read_predictions, read_sessions

# reported name -> ir-measures measure
RETRIEVAL_METRICS = {"recall@5": "R@5", "recall@10": "R@10", "mrr": "RR", "ndcg@10": "nDCG@10"}
CURVE_K = tuple(range(1, 21))
INSTALL_HINT = "pip install 'clinfo[eval]'"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def _answered(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if not r.get("error") and r.get("answer")]


# ---------------------------------------------------------------- retrieval


def ranked_candidates(answer: dict[str, Any]) -> list[str]:
    """PMIDs the LLM screened, in prefilter rank order (relevant and irrelevant alike)."""
    summaries = list(answer.get("article_summaries") or []) + list(answer.get("irrelevant_articles") or [])
    summaries.sort(key=lambda s: s.get("rank", 0))
    return _unique(s["article"]["pmid"] for s in summaries)


def ranked_references(answer: dict[str, Any]) -> list[str]:
    """PMIDs of the reference list, in citation-number order."""
    return _unique(r["pmid"] for r in sorted(answer.get("references") or [], key=lambda r: r.get("n", 0)))


def _unique(items: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def retrieval_scores(
    gold: dict[str, list[str]], ranked: dict[str, list[str]], metrics: Sequence[str]
) -> dict[str, float]:
    """Mean IR metrics (ir-measures names: ``R@10``, ``RR``, ``nDCG@10``) over the questions in
    ``gold``; a question that ranked nothing scores 0 rather than dropping out of the mean."""
    try:
        import ir_measures
    except ImportError:
        raise ImportError(f"retrieval metrics need ir-measures: {INSTALL_HINT}") from None
    qrels = {qid: {pmid: 1 for pmid in pmids} for qid, pmids in gold.items() if pmids}
    if not qrels:
        return {}
    run: dict[str, dict[str, float]] = {}
    for qid in qrels:
        pmids = ranked.get(qid) or []
        # scores only encode the order (higher first); an empty ranking gets one non-PMID so the
        # question still counts, as zero
        run[qid] = {p: float(len(pmids) - i) for i, p in enumerate(pmids)} or {"-": 0.0}
    parsed = [ir_measures.parse_measure(m) for m in metrics]
    scores = ir_measures.calc_aggregate(parsed, qrels, run)
    return {name: round(float(scores[m]), 4) for name, m in zip(metrics, parsed)}


def retrieval_metrics(answered: list[dict[str, Any]], curve: bool = True) -> dict[str, Any] | None:
    with_gold = [r for r in answered if r.get("gold_pmids")]
    if not with_gold:
        return None
    gold = {r["id"]: r["gold_pmids"] for r in with_gold}
    out: dict[str, Any] = {"questions": len(with_gold)}
    names = list(RETRIEVAL_METRICS.values()) + ([f"R@{k}" for k in CURVE_K] if curve else [])
    names = list(dict.fromkeys(names))
    for what, ranking in (("candidates", ranked_candidates), ("references", ranked_references)):
        scores = retrieval_scores(gold, {r["id"]: ranking(r["answer"]) for r in with_gold}, names)
        out[what] = {name: scores.get(measure) for name, measure in RETRIEVAL_METRICS.items()}
        if curve:
            out[what]["recall_curve"] = [scores.get(f"R@{k}") for k in CURVE_K]
    out["references"].update(reference_precision(with_gold))
    return out


def reference_precision(with_gold: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of cited references that are gold, averaged over the answers that cite any (an
    answer that says "no evidence" cites nothing and is counted under ``no_evidence_share``)."""
    shares = []
    for r in with_gold:
        refs = ranked_references(r["answer"])
        if refs:
            shares.append(sum(p in set(r["gold_pmids"]) for p in refs) / len(refs))
    mean = _mean(shares)
    return {"precision": round(mean, 4) if mean is not None else None, "precision_questions": len(shares)}


# ---------------------------------------------------------------- yes / no / maybe


def label_metrics(answered: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Accuracy, macro-F1 (over the classes present in gold or predictions) and the confusion matrix."""
    pairs = [
        (r["gold_label"], r.get("predicted_label"))
        for r in answered
        if r.get("task") == "yesno" and r.get("gold_label")
    ]
    if not pairs:
        return None
    columns = [*LABELS, "none"]  # "none": the label could not be read from the answer
    matrix = [[sum(1 for g, p in pairs if g == gold and (p or "none") == pred) for pred in columns] for gold in LABELS]
    present = [lab for lab in LABELS if any(g == lab or p == lab for g, p in pairs)]
    f1s = []
    for lab in present:
        tp = sum(1 for g, p in pairs if g == lab and p == lab)
        fp = sum(1 for g, p in pairs if g != lab and p == lab)
        fn = sum(1 for g, p in pairs if g == lab and p != lab)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {
        "questions": len(pairs),
        "accuracy": round(sum(g == p for g, p in pairs) / len(pairs), 4),
        "macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else None,
        "unreadable": sum(1 for _, p in pairs if p is None),
        "confusion": {"rows_gold": list(LABELS), "columns_predicted": columns, "matrix": matrix},
    }


# ---------------------------------------------------------------- free text


def rouge_l(pairs: list[tuple[str, str]]) -> float | None:
    """Mean ROUGE-L F1 of (reference, prediction) pairs, stemmed."""
    if not pairs:
        return None
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise ImportError(f"ROUGE needs rouge-score: {INSTALL_HINT}") from None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return round(sum(scorer.score(ref, pred)["rougeL"].fmeasure for ref, pred in pairs) / len(pairs), 4)


def bertscore(pairs: list[tuple[str, str]]) -> tuple[float | None, str]:
    """Mean BERTScore F1 when bert-score and its model are already on this machine; never downloads."""
    if not pairs:
        return None, "no gold answers"
    try:
        import bert_score  # noqa: F401
    except ImportError:
        return None, "n/a (bert-score not installed)"
    model = os.environ.get("CLINFO_BERTSCORE_MODEL", "roberta-large")
    # offline switches must be set before transformers reads them; restore afterwards
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        from bert_score import score

        _, _, f1 = score([p for _, p in pairs], [r for r, _ in pairs], model_type=model, verbose=False)
        return round(float(f1.mean()), 4), model
    except Exception as exc:  # model not in the local cache, no torch, ...
        return None, f"n/a ({model} not available offline: {type(exc).__name__})"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def text_metrics(answered: list[dict[str, Any]], with_bertscore: bool = True) -> dict[str, Any] | None:
    with_gold = [r for r in answered if r.get("gold_answer")]
    if not with_gold:
        return None
    tldr = [(r["gold_answer"], r["answer"].get("tldr") or "") for r in with_gold]
    synthesis = [(r["gold_answer"], r["answer"].get("synthesis") or "") for r in with_gold]
    out: dict[str, Any] = {
        "questions": len(with_gold),
        "rougeL_tldr": rouge_l(tldr),
        "rougeL_synthesis": rouge_l(synthesis),
    }
    if with_bertscore:
        out["bertscore_tldr"], out["bertscore_note"] = bertscore(tldr)
    return out


# ---------------------------------------------------------------- citations


def inline_citations(text: str) -> list[int]:
    """Every number cited inline as ``[n]``, ``[n, m]`` or ``[n-m]``, in order, repeats kept."""
    from clinfo.pipeline.citations import citation_groups

    return [n for _start, _end, numbers in citation_groups(text) for n in numbers]


def not_evidence_cited(answer: dict[str, Any]) -> tuple[int, int]:
    """(retracted, other non-evidence) among an answer's references: records listed as set aside,
    or whose article is not evidence by :func:`clinfo.appraisal.evidence_status.evidence_status`
    with nothing admitted. Both must be 0."""
    from clinfo.appraisal.evidence_status import evidence_status
    from clinfo.models import Article

    articles = {(s.get("article") or {}).get("pmid"): s.get("article") for s in answer.get("article_summaries") or []}
    aside = {item.get("pmid"): item.get("kind") for item in answer.get("set_aside") or []}
    retracted = other = 0
    for ref in answer.get("references") or []:
        pmid = ref.get("pmid")
        kind = aside.get(pmid)
        if kind is None and isinstance(articles.get(pmid), dict):
            status = evidence_status(Article.model_validate(articles[pmid]))
            kind = None if status.evidence else status.kind
        if kind == "retracted":
            retracted += 1
        elif kind is not None:
            other += 1
    return retracted, other


def citation_metrics(answered: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not answered:
        return None
    total = valid = 0
    retracted = non_evidence = 0
    refs_per_answer = []
    citing = 0
    for r in answered:
        answer = r["answer"]
        n_refs = len(answer.get("references") or [])
        cites = inline_citations(answer.get("synthesis") or "")
        total += len(cites)
        valid += sum(1 for n in cites if 1 <= n <= n_refs)
        refs_per_answer.append(n_refs)
        citing += bool(cites)
        bad = not_evidence_cited(answer)
        retracted, non_evidence = retracted + bad[0], non_evidence + bad[1]
    return {
        "questions": len(answered),
        "inline_citations": total,
        "valid_citation_share": round(valid / total, 4) if total else None,
        "references_per_answer": round(_mean(refs_per_answer) or 0.0, 3),
        "answers_with_citations": round(citing / len(answered), 4),
        "no_evidence_share": round(sum(bool(r["answer"].get("no_evidence")) for r in answered) / len(answered), 4),
        "invalid_citations_removed": sum(
            (r["answer"].get("trace") or {}).get("invalid_citations_removed", 0) for r in answered
        ),
        # references that are retracted work, or notices, letters and the like (must be 0 and 0)
        "retracted_cited": retracted,
        "non_evidence_cited": retracted + non_evidence,
        "set_aside_per_answer": round(_mean([len(r["answer"].get("set_aside") or []) for r in answered]) or 0.0, 3),
    }


# ---------------------------------------------------------------- claims


def claim_checks(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's claim checks (``Answer.claims``); checked now with :mod:`clinfo.claims` where
    the run recorded none (``claim_check`` off, answers saved before claims were checked)."""
    if answer.get("claims"):
        return list(answer["claims"])
    synthesis = answer.get("synthesis") or ""
    if answer.get("no_evidence") or not synthesis.strip():
        return []
    from clinfo.claims import check_synthesis
    from clinfo.models import Article

    by_pmid = {(s.get("article") or {}).get("pmid"): s.get("article") for s in answer.get("article_summaries") or []}
    articles = {
        r["n"]: Article.model_validate(by_pmid[r["pmid"]])
        for r in answer.get("references") or []
        if r["pmid"] in by_pmid
    }
    return [c.model_dump() for c in check_synthesis(synthesis, articles)] if articles else []


def claim_metrics(answered: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The share of synthesis sentences that cite [n] and are supported by what they cite, over all
    such sentences of all answers; and the share of answers with at least one that is not."""
    checked = supported = answers = with_unsupported = 0
    signals: set[str] = set()
    for r in answered:
        checks = claim_checks(r["answer"])
        if not checks:
            continue
        ok = sum(bool(c.get("supported")) for c in checks)
        answers += 1
        checked += len(checks)
        supported += ok
        with_unsupported += ok < len(checks)
        signals.update(str(s.get("signals")) for c in checks for s in c.get("supports") or [])
    if not checked:
        return None
    return {
        "answers": answers,
        "sentences_checked": checked,
        "supported_share": round(supported / checked, 4),
        "answers_with_unsupported": round(with_unsupported / answers, 4),
        "signals": sorted(signals),  # "quote", "coverage" (no encoder) or "coverage+similarity"
    }


# ---------------------------------------------------------------- evidence cited


def _cited_design(answer: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any] | None:
    """The design of a cited reference, as the answer recorded it (on the reference or on its
    article); decided now for answers saved before designs were recorded."""
    if isinstance(ref.get("design"), dict):
        return ref["design"]
    for summary in answer.get("article_summaries") or []:
        article = summary.get("article") or {}
        if article.get("pmid") == ref.get("pmid"):
            if isinstance(article.get("design"), dict):
                return article["design"]
            from clinfo.models import Article

            return Article.model_validate(article).design.model_dump()
    return None


def evidence_metrics(answered: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The design mix of cited evidence: cited references counted by design kind and by level
    (shares of all cited references), and, for yes/no questions, the stances tallied
    (``Answer.agreement``) summed over answers."""
    from clinfo.appraisal.agreement import STANCES
    from clinfo.appraisal.design import DESIGNS

    kinds: dict[str, int] = {}
    levels: dict[str, int] = {}
    stances = dict.fromkeys(STANCES, 0)
    citing = tallied = 0
    for r in answered:
        answer = r["answer"]
        cited = [ref for ref in answer.get("references") or [] if ref.get("cited")]
        citing += bool(cited)
        for ref in cited:
            design = _cited_design(answer, ref) or {}
            kind = design.get("kind") or "unknown"
            kinds[kind] = kinds.get(kind, 0) + 1
            level = str(design["level"]) if design.get("level") else "not graded"
            levels[level] = levels.get(level, 0) + 1
        agreement = answer.get("agreement")
        if isinstance(agreement, dict) and agreement.get("judged"):
            tallied += 1
            for stance, count in (agreement.get("counts") or {}).items():
                if stance in stances:
                    stances[stance] += count
    total = sum(kinds.values())
    if not total and not tallied:
        return None
    order = [*DESIGNS, "unknown"]
    mix = {k: kinds[k] for k in sorted(kinds, key=lambda k: order.index(k) if k in order else len(order))}
    level_mix = {k: levels[k] for k in sorted(levels, key=lambda k: (k == "not graded", k))}
    strong = sum(n for k, n in levels.items() if k in ("1", "2"))
    return {
        "questions": len(answered),
        "answers_citing": citing,
        "cited": total,
        "design_mix": mix,
        "design_share": {k: round(n / total, 4) for k, n in mix.items()} if total else {},
        "level_mix": level_mix,
        "level_1_2_share": round(strong / total, 4) if total else None,
        "stance_questions": tallied,
        "stances": stances if tallied else None,
    }


# ---------------------------------------------------------------- cost and speed


def cost_metrics(records: list[dict[str, Any]], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    answered = _answered(records)
    calls = tokens = hits = source_requests = 0
    cost: float | None = 0.0
    for r in answered:
        trace = r["answer"].get("trace") or {}
        cls = r.get("classification") or {}
        calls += trace.get("llm_calls", 0) + cls.get("llm_calls", 0)
        source_requests += trace.get("source_requests", 0)
        hits += trace.get("llm_cache_hits", 0) + int(bool(cls.get("cached")))
        tokens += sum(x.get(k, 0) for x in (trace, cls) for k in ("prompt_tokens", "completion_tokens"))
        for c in (trace.get("cost_usd", 0.0), cls.get("cost_usd", 0.0) if cls else 0.0):
            cost = None if cost is None or c is None else cost + c
    walls = [r["wall_seconds"] for r in records if isinstance(r.get("wall_seconds"), (int, float))]
    session_wall = sum(s.get("wall_seconds", 0.0) for s in sessions)
    session_done = sum(s.get("completed", 0) for s in sessions)
    n = len(answered)
    return {
        "questions": len(records),
        "errors": sum(1 for r in records if r.get("error")),
        "llm_calls": calls,
        "llm_calls_per_question": round(calls / n, 2) if n else None,
        "llm_cache_hit_share": round(hits / calls, 4) if calls else None,
        "source_requests_per_question": round(source_requests / n, 2) if n else None,
        "tokens": tokens,
        "tokens_per_question": round(tokens / n, 1) if n else None,
        "cost_usd": round(cost, 6) if cost is not None else None,
        "cost_usd_per_question": round(cost / n, 6) if cost is not None and n else None,
        "wall_p50_seconds": _round(_percentile(walls, 50)),
        "wall_p95_seconds": _round(_percentile(walls, 95)),
        # throughput only from sessions that ended normally (a killed session has no record)
        "questions_per_minute": round(60 * session_done / session_wall, 2)
        if session_wall > 0 and session_done
        else None,
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


# ---------------------------------------------------------------- the whole run


def metrics_from_records(
    records: list[dict[str, Any]],
    config: dict[str, Any] | None = None,
    sessions: list[dict[str, Any]] | None = None,
    *,
    with_bertscore: bool = True,
) -> dict[str, Any]:
    config = config or {}
    settings = config.get("settings") or {}
    answered = _answered(records)
    return {
        "run": {
            "llm": settings.get("llm"),
            "source": settings.get("source"),
            "dataset": Path((config.get("dataset") or {}).get("path", "")).name or None,
            "format": (config.get("dataset") or {}).get("format"),
            "selected": config.get("selected"),
            "finished": len(records),
            "answered": len(answered),
            "errors": len(records) - len(answered),
        },
        "retrieval": retrieval_metrics(answered),
        "yesno": label_metrics(answered),
        "text": text_metrics(answered, with_bertscore),
        "citations": citation_metrics(answered),
        "evidence": evidence_metrics(answered),
        "claims": claim_metrics(answered),
        "cost": cost_metrics(records, sessions or []),
    }


def compute_metrics(run_dir: str | Path, *, with_bertscore: bool = True) -> dict[str, Any]:
    """Metrics of one run directory (``clinfo eval run --out``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    config = read_config(run_dir)
    if config is None:
        raise RunError(f"{run_dir} is not a clinfo run directory (no config.json)")
    records = read_predictions(run_dir / PREDICTIONS)
    return metrics_from_records(records, config, read_sessions(run_dir), with_bertscore=with_bertscore)
