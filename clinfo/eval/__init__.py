"""Batch evaluation: load question sets, run clinfo over them, score and compare runs.

    from clinfo.eval import load_dataset, run_eval, report_runs
    data = load_dataset("pqal_dev.json")                       # format guessed, or format="pubmedqa"
    run_eval(data, "runs/mini", llm="openai:gpt-4o-mini", limit=50, seed=0, concurrency=8)
    for name, metrics in report_runs(["runs/mini"]): print(name, metrics["yesno"])

The same as ``clinfo eval run`` / ``clinfo eval report``. Metric libraries (ir-measures, rouge-score,
matplotlib, ftfy) come with the ``[eval]`` extra and are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinfo.lazy import lazy_exports

__all__ = [
    "FORMATS",
    "Dataset",
    "DatasetError",
    "EvalItem",
    "load_dataset",
    "run_eval",
    "arun_eval",
    "RunResult",
    "RunError",
    "RunAborted",
    "classify_answer",
    "compute_metrics",
    "metrics_from_records",
    "write_report",
    "report_runs",
    "markdown_table",
]

if TYPE_CHECKING:
    from clinfo.eval.classify import classify_answer
    from clinfo.eval.datasets import FORMATS, Dataset, DatasetError, EvalItem, load_dataset
    from clinfo.eval.metrics import compute_metrics, metrics_from_records
    from clinfo.eval.report import markdown_table, report_runs, write_report
    from clinfo.eval.run_dir import RunError
    from clinfo.eval.runner import RunAborted, RunResult, arun_eval, run_eval

_LAZY = {
    "FORMATS": ".datasets",
    "Dataset": ".datasets",
    "DatasetError": ".datasets",
    "EvalItem": ".datasets",
    "load_dataset": ".datasets",
    "run_eval": ".runner",
    "arun_eval": ".runner",
    "RunResult": ".runner",
    "RunError": ".run_dir",
    "RunAborted": ".runner",
    "classify_answer": ".classify",
    "compute_metrics": ".metrics",
    "metrics_from_records": ".metrics",
    "write_report": ".report",
    "report_runs": ".report",
    "markdown_table": ".report",
}


__getattr__ = lazy_exports("clinfo.eval", _LAZY)
