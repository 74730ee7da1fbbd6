"""Metrics against hand-computed values on a tiny run; report files; `clinfo eval report`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from clinfo.cli import app
from clinfo.eval import compute_metrics, metrics_from_records, write_report
from clinfo.eval.metrics import inline_citations


def summary(pmid: str, rank: int, relevant: bool) -> dict[str, Any]:
    return {"article": {"pmid": pmid, "title": f"T{pmid}"}, "relevant": relevant, "rank": rank}


def record(
    rid: str,
    *,
    gold: list[str],
    candidates: list[tuple[str, int, bool]],
    refs: list[str],
    synthesis: str,
    tldr: str = "",
    gold_answer: str | None = None,
    gold_label: str | None = None,
    predicted: str | None = None,
    no_evidence: bool = False,
    calls: int = 5,
    wall: float = 1.0,
) -> dict[str, Any]:
    return {
        "id": rid,
        "question": f"question {rid}",
        "task": "yesno",
        "gold_answer": gold_answer,
        "gold_label": gold_label,
        "gold_pmids": gold,
        "answer": {
            "synthesis": synthesis,
            "tldr": tldr,
            "no_evidence": no_evidence,
            "references": [{"n": i + 1, "pmid": p} for i, p in enumerate(refs)],
            "article_summaries": [summary(p, r, True) for p, r, rel in candidates if rel],
            "irrelevant_articles": [summary(p, r, False) for p, r, rel in candidates if not rel],
            "trace": {
                "llm_calls": calls,
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "cost_usd": 0.01,
                "llm_cache_hits": 1,
                "invalid_citations_removed": 1,
            },
        },
        "predicted_label": predicted,
        "classification": {
            "llm_calls": 1,
            "prompt_tokens": 10,
            "completion_tokens": 2,
            "cost_usd": 0.001,
            "cached": False,
        },
        "error": None,
        "wall_seconds": wall,
    }


RECORDS = [
    # gold A, B; screened in rank order A, X, B (X judged relevant too, ranked by rank not relevance)
    record(
        "r1",
        gold=["A", "B"],
        candidates=[("B", 2, True), ("A", 0, True), ("X", 1, False)],
        refs=["B"],
        synthesis="A finding [1]. Another [1, 2].",
        tldr="magnesium improves sleep quality",
        gold_answer="magnesium improves sleep",
        gold_label="yes",
        predicted="yes",
        wall=1.0,
    ),
    record(
        "r2",
        gold=["C"],
        candidates=[("Y", 0, False), ("C", 1, False)],
        refs=[],
        synthesis="No relevant evidence found.",
        gold_label="no",
        predicted="yes",
        no_evidence=True,
        wall=2.0,
    ),
    record(
        "r3",
        gold=["D"],
        candidates=[],
        refs=["E", "F"],
        synthesis="Both agree [1-2].",
        tldr="same words here",
        gold_answer="same words here",
        gold_label="maybe",
        predicted=None,
        wall=3.0,
    ),
    {
        "id": "r4",
        "question": "q",
        "task": "yesno",
        "gold_label": "yes",
        "gold_pmids": ["Z"],
        "answer": None,
        "predicted_label": None,
        "error": "LLMError: boom",
        "wall_seconds": 10.0,
    },
]
SESSIONS = [{"wall_seconds": 30.0, "completed": 3}, {"wall_seconds": 30.0, "completed": 1}]


def ndcg(gains: list[int], n_relevant: int) -> float:
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sum(1 / math.log2(i + 2) for i in range(n_relevant))
    return dcg / ideal


@pytest.fixture(scope="module")
def metrics() -> dict[str, Any]:
    return metrics_from_records(RECORDS, {"settings": {"llm": "scripted:x"}, "selected": 4}, SESSIONS)


def test_retrieval_over_candidates_and_references(metrics: dict[str, Any]) -> None:
    r = metrics["retrieval"]
    assert r["questions"] == 3  # the failed question is not scored
    cand = r["candidates"]
    assert cand["recall@5"] == pytest.approx((1 + 1 + 0) / 3, abs=1e-4)
    assert cand["mrr"] == pytest.approx((1 + 1 / 2 + 0) / 3, abs=1e-4)
    assert cand["ndcg@10"] == pytest.approx((ndcg([1, 0, 1], 2) + ndcg([0, 1], 1) + 0) / 3, abs=1e-4)
    assert cand["recall_curve"][0] == pytest.approx(0.5 / 3, abs=1e-4)  # Recall@1: only A of {A, B}
    refs = r["references"]
    assert refs["recall@10"] == pytest.approx(0.5 / 3, abs=1e-4)
    assert refs["mrr"] == pytest.approx(1 / 3, abs=1e-4)
    assert refs["ndcg@10"] == pytest.approx(ndcg([1], 2) / 3, abs=1e-4)
    # precision of what was cited: r1 cites only gold (1), r3 cites two non-gold (0), r2 cites nothing
    assert refs["precision"] == pytest.approx(0.5) and refs["precision_questions"] == 2


def test_yes_no_maybe(metrics: dict[str, Any]) -> None:
    y = metrics["yesno"]
    assert y["questions"] == 3 and y["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    # F1: yes 2*1/(2+1+0) = 2/3; no 0; maybe 0 -> macro 2/9
    assert y["macro_f1"] == pytest.approx(2 / 9, abs=1e-4)
    assert y["unreadable"] == 1
    assert y["confusion"]["matrix"] == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]


def test_text_citations_cost(metrics: dict[str, Any]) -> None:
    t = metrics["text"]
    # "magnesium improves sleep" vs "magnesium improves sleep quality": P 3/4, R 1 -> F 6/7; identical -> 1
    assert t["questions"] == 2 and t["rougeL_tldr"] == pytest.approx((6 / 7 + 1) / 2, abs=1e-4)
    assert t["bertscore_tldr"] is None and t["bertscore_note"].startswith("n/a")
    c = metrics["citations"]
    assert c["inline_citations"] == 5 and c["valid_citation_share"] == pytest.approx(4 / 5)  # [1, 2] with one reference
    assert c["references_per_answer"] == pytest.approx(1.0)
    assert c["answers_with_citations"] == pytest.approx(2 / 3, abs=1e-4)
    assert c["no_evidence_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert c["invalid_citations_removed"] == 3
    k = metrics["cost"]
    assert k["errors"] == 1 and k["llm_calls"] == 3 * (5 + 1) and k["llm_calls_per_question"] == 6
    assert k["tokens"] == 3 * 132 and k["cost_usd"] == pytest.approx(3 * 0.011)
    assert k["wall_p50_seconds"] == pytest.approx(2.5) and k["wall_p95_seconds"] == pytest.approx(8.95)
    assert k["questions_per_minute"] == pytest.approx(4.0)
    assert metrics["run"] == {
        "llm": "scripted:x",
        "source": None,
        "dataset": None,
        "format": None,
        "selected": 4,
        "finished": 4,
        "answered": 3,
        "errors": 1,
    }


def test_unknown_price_makes_cost_unknown() -> None:
    rec = json.loads(json.dumps(RECORDS[0]))
    rec["answer"]["trace"]["cost_usd"] = None
    assert metrics_from_records([rec])["cost"]["cost_usd"] is None


@pytest.mark.parametrize(
    "text, numbers", [("a [1] b [2, 3] c [4-6]", [1, 2, 3, 4, 5, 6]), ("95% CI [1.2, 3.4] [x]", []), ("[7][1]", [7, 1])]
)
def test_inline_citations(text: str, numbers: list[int]) -> None:
    assert inline_citations(text) == numbers


def make_run(path: Path, records: list[dict[str, Any]], llm: str) -> Path:
    path.mkdir(parents=True)
    config = {
        "settings": {"llm": llm, "source": "demo"},
        "dataset": {"path": "/x/qs.jsonl", "format": "jsonl", "sha256": "0" * 64, "items": 4},
        "selected": 4,
    }
    (path / "config.json").write_text(json.dumps(config))
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"id": "r5", "quest')
    (path / "sessions.jsonl").write_text("".join(json.dumps(s) + "\n" for s in SESSIONS))
    return path


def test_report_files_are_written(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runA", RECORDS, "scripted:a")
    metrics = write_report(run)
    assert metrics["run"]["finished"] == 4  # the partial last line is not a record
    assert json.loads((run / "metrics.json").read_text()) == metrics
    report = (run / "report.md").read_text()
    assert "| candidates MRR | 0.500 |" in report and "| accuracy | 0.333 |" in report
    assert "| maybe | 0 | 0 | 0 | 1 |" in report  # confusion row
    for name in ("recall_at_k.png", "confusion.png", "wall_time.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in report
    assert compute_metrics(run) == metrics


def test_cli_report_compares_runs_side_by_side(tmp_path: Path) -> None:
    a = make_run(tmp_path / "runA", RECORDS, "scripted:a")
    b = make_run(tmp_path / "runB", RECORDS[:1], "scripted:b")
    result = CliRunner().invoke(app, ["eval", "report", str(a), str(b), "--json", "--no-plots"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["runA"]["yesno"]["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert data["runB"]["yesno"]["accuracy"] == 1.0
    assert (b / "report.md").exists() and not (b / "confusion.png").exists()

    result = CliRunner().invoke(app, ["eval", "report", str(a), str(b)])
    assert result.exit_code == 0
    row = next(line for line in result.stdout.splitlines() if "accuracy" in line)
    assert "0.333" in row and "1.000" in row


def test_cli_report_on_a_missing_run_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "report", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: run directory {tmp_path / 'nope'} does not exist"


def test_reading_a_finished_run_never_imports_the_runner(tmp_path: Path) -> None:
    # metrics and reports read the run directory only: the runner (and the pipeline it loads) stays out
    run = make_run(tmp_path / "runA", RECORDS, "scripted:a")
    code = (
        "import sys, clinfo.eval.metrics, clinfo.eval.report\n"
        "assert 'clinfo.eval.runner' not in sys.modules, 'imported by import'\n"
        f"m = clinfo.eval.report.write_report({str(run)!r}, plots=False)\n"
        "assert 'clinfo.eval.runner' not in sys.modules, 'imported by reading a run'\n"
        "print(m['yesno']['accuracy'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(1 / 3, abs=1e-4)
