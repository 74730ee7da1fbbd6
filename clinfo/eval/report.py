"""Reports: a metrics table (runs side by side), and per run ``report.md``, ``metrics.json`` and plots."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clinfo.appraisal.agreement import STANCES
from clinfo.appraisal.design import DESIGNS
from clinfo.eval.metrics import CURVE_K, compute_metrics
from clinfo.eval.run_dir import PREDICTIONS, read_config, read_predictions

# (section, row label, path into the metrics dict, format)
ROWS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("run", "LLM", ("run", "llm"), "s"),
    ("run", "source", ("run", "source"), "s"),
    ("run", "dataset", ("run", "dataset"), "s"),
    ("run", "finished / selected", ("run",), "finished"),
    ("run", "errors", ("run", "errors"), "d"),
    ("retrieval", "questions with gold PMIDs", ("retrieval", "questions"), "d"),
    ("retrieval", "candidates Recall@5", ("retrieval", "candidates", "recall@5"), ".3f"),
    ("retrieval", "candidates Recall@10", ("retrieval", "candidates", "recall@10"), ".3f"),
    ("retrieval", "candidates MRR", ("retrieval", "candidates", "mrr"), ".3f"),
    ("retrieval", "candidates nDCG@10", ("retrieval", "candidates", "ndcg@10"), ".3f"),
    ("retrieval", "references Recall@10", ("retrieval", "references", "recall@10"), ".3f"),
    ("retrieval", "references MRR", ("retrieval", "references", "mrr"), ".3f"),
    ("retrieval", "references nDCG@10", ("retrieval", "references", "ndcg@10"), ".3f"),
    ("retrieval", "references precision (answers citing any)", ("retrieval", "references", "precision"), ".3f"),
    ("retrieval", "answers citing any", ("retrieval", "references", "precision_questions"), "d"),
    ("yes/no/maybe", "questions with a gold label", ("yesno", "questions"), "d"),
    ("yes/no/maybe", "accuracy", ("yesno", "accuracy"), ".3f"),
    ("yes/no/maybe", "macro-F1", ("yesno", "macro_f1"), ".3f"),
    ("yes/no/maybe", "label unreadable", ("yesno", "unreadable"), "d"),
    ("text", "questions with a gold answer", ("text", "questions"), "d"),
    ("text", "ROUGE-L F1 (TL;DR)", ("text", "rougeL_tldr"), ".3f"),
    ("text", "ROUGE-L F1 (synthesis)", ("text", "rougeL_synthesis"), ".3f"),
    ("text", "BERTScore F1 (TL;DR)", ("text",), "bertscore"),
    ("citations", "valid inline citations", ("citations", "valid_citation_share"), ".3f"),
    ("citations", "references per answer", ("citations", "references_per_answer"), ".2f"),
    ("citations", "answers with citations", ("citations", "answers_with_citations"), ".3f"),
    ("citations", "no-evidence answers", ("citations", "no_evidence_share"), ".3f"),
    ("citations", "retracted or non-evidence records cited (must be 0)", ("citations", "non_evidence_cited"), "d"),
    ("citations", "of which retracted", ("citations", "retracted_cited"), "d"),
    ("citations", "records set aside per answer", ("citations", "set_aside_per_answer"), ".2f"),
    ("claims", "synthesis sentences supported (of those citing)", ("claims", "supported_share"), ".3f"),
    ("claims", "citing sentences checked", ("claims", "sentences_checked"), "d"),
    ("claims", "answers with an unsupported sentence", ("claims", "answers_with_unsupported"), ".3f"),
    ("evidence", "cited references", ("evidence", "cited"), "d"),
    ("evidence", "cited at level 1-2 (reviews, trials)", ("evidence", "level_1_2_share"), ".3f"),
    *[("evidence", f"cited: {kind}", ("evidence", "design_share", kind), ".3f") for kind in (*DESIGNS, "unknown")],
    ("evidence", "yes/no answers with a stance tally", ("evidence", "stance_questions"), "d"),
    *[("evidence", f"stance: {stance}", ("evidence", "stances", stance), "d") for stance in STANCES],
    ("cost", "LLM calls per question", ("cost", "llm_calls_per_question"), ".1f"),
    ("cost", "tokens per question", ("cost", "tokens_per_question"), ".0f"),
    ("cost", "source requests per question", ("cost", "source_requests_per_question"), ".1f"),
    ("cost", "LLM cache hits", ("cost", "llm_cache_hit_share"), ".3f"),
    ("cost", "cost (USD)", ("cost", "cost_usd"), ".4f"),
    ("speed", "wall per question p50 (s)", ("cost", "wall_p50_seconds"), ".2f"),
    ("speed", "wall per question p95 (s)", ("cost", "wall_p95_seconds"), ".2f"),
    ("speed", "questions per minute", ("cost", "questions_per_minute"), ".1f"),
]


def _get(metrics: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _cell(metrics: dict[str, Any], path: tuple[str, ...], fmt: str) -> str:
    value = _get(metrics, path)
    if fmt == "finished":
        return f"{value.get('finished', 0)} / {value.get('selected') or '?'}"
    if fmt == "bertscore":
        if not isinstance(value, dict):
            return "n/a"
        score = value.get("bertscore_tldr")
        return f"{score:.3f}" if score is not None else "n/a"
    if value is None:
        return "n/a"
    if fmt == "s":
        return str(value)
    return format(value, fmt)


def table(named: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    """Header and rows (section, label, one cell per run); rows that are n/a everywhere are left out."""
    header = ["metric", *[name for name, _ in named]]
    rows = []
    for section, label, path, fmt in ROWS:
        cells = [_cell(m, path, fmt) for _, m in named]
        if section != "run" and all(c == "n/a" for c in cells):
            continue
        rows.append((section, label, cells))
    return header, rows


def markdown_table(named: list[tuple[str, dict[str, Any]]]) -> str:
    header, rows = table(named)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([label, *cells]) + " |" for _, label, cells in rows]
    return "\n".join(lines)


def rich_table(named: list[tuple[str, dict[str, Any]]]) -> Any:
    from rich.table import Table

    header, rows = table(named)
    out = Table(show_lines=False)
    out.add_column(header[0])
    for name in header[1:]:
        out.add_column(name, justify="right")
    last = None
    for section, label, cells in rows:
        if last is not None and section != last:
            out.add_section()
        last = section
        out.add_row(label, *cells)
    return out


def _run_markdown(name: str, metrics: dict[str, Any], config: dict[str, Any], plots: list[str]) -> str:
    parts = [f"# clinfo evaluation: {name}", "", markdown_table([(name, metrics)]), ""]
    yesno = metrics.get("yesno")
    if yesno:
        conf = yesno["confusion"]
        parts += ["## Yes/no/maybe confusion (rows: gold, columns: predicted)", ""]
        parts.append("| gold \\ predicted | " + " | ".join(conf["columns_predicted"]) + " |")
        parts.append("|" + "---|" * (len(conf["columns_predicted"]) + 1))
        for gold, row in zip(conf["rows_gold"], conf["matrix"]):
            parts.append(f"| {gold} | " + " | ".join(str(v) for v in row) + " |")
        parts.append("")
    evidence = metrics.get("evidence")
    if evidence and evidence.get("cited"):
        parts += ["## Design mix of cited evidence", "", "| design | cited | share |", "|---|---|---|"]
        for kind, count in evidence["design_mix"].items():
            parts.append(f"| {kind} | {count} | {evidence['design_share'][kind]:.3f} |")
        parts.append("")
    text = metrics.get("text")
    if text and text.get("bertscore_note"):
        parts += [f"BERTScore: {text['bertscore_note']}", ""]
    settings = config.get("settings") or {}
    dataset = config.get("dataset") or {}
    parts += [
        "## Configuration",
        "",
        f"- dataset: `{dataset.get('path')}` ({dataset.get('format')},"
        f" sha256 `{str(dataset.get('sha256'))[:16]}…`, {dataset.get('items')} items)",
        f"- limit {config.get('limit')}, seed {config.get('seed')}, clinfo {config.get('clinfo_version')}",
        f"- llm `{settings.get('llm')}`, source `{settings.get('source')}`, prefilter_k {settings.get('prefilter_k')}, "
        f"num_queries {settings.get('num_queries')}, results_per_query {settings.get('results_per_query')}",
        "- full settings in `config.json`; every number above in `metrics.json`",
        "",
    ]
    if plots:
        parts += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(parts)


def _plots(run_dir: Path, metrics: dict[str, Any], walls: list[float]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(run_dir / name, dpi=110)
        plt.close(fig)
        written.append(name)

    retrieval = metrics.get("retrieval")
    if retrieval:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for what in ("candidates", "references"):
            curve = retrieval[what].get("recall_curve")
            if curve:
                ax.plot(CURVE_K, [v or 0.0 for v in curve], marker=".", label=what)
        ax.set(xlabel="k", ylabel="Recall@k", ylim=(0, 1.02), xticks=[1, 5, 10, 15, 20], title="Recall of gold PMIDs")
        ax.legend()
        save(fig, "recall_at_k.png")
    yesno = metrics.get("yesno")
    if yesno:
        conf = yesno["confusion"]
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        ax.imshow(conf["matrix"], cmap="Blues")
        ax.set_xticks(range(len(conf["columns_predicted"])), conf["columns_predicted"])
        ax.set_yticks(range(len(conf["rows_gold"])), conf["rows_gold"])
        top = max(max(row) for row in conf["matrix"]) or 1
        for i, row in enumerate(conf["matrix"]):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
        ax.set(xlabel="predicted", ylabel="gold", title=f"accuracy {yesno['accuracy']:.2f}")
        save(fig, "confusion.png")
    evidence = metrics.get("evidence")
    if evidence and evidence.get("cited"):
        mix = evidence["design_mix"]
        fig, ax = plt.subplots(figsize=(5, 0.6 + 0.3 * len(mix)))
        ax.barh(list(mix)[::-1], list(mix.values())[::-1])
        ax.set(xlabel="cited references", title="Design mix of cited evidence")
        save(fig, "design_mix.png")
    if walls:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(walls, bins=min(30, max(5, len(walls) // 3)))
        ax.set(xlabel="seconds per question", ylabel="questions", title="Wall time per question")
        save(fig, "wall_time.png")
    return written


def write_report(run_dir: str | Path, metrics: dict[str, Any] | None = None, *, plots: bool = True) -> dict[str, Any]:
    """Writes ``metrics.json``, ``report.md`` and the plots into ``run_dir``; returns the metrics."""
    run_dir = Path(run_dir)
    metrics = metrics if metrics is not None else compute_metrics(run_dir)
    config = read_config(run_dir) or {}
    walls = [
        r["wall_seconds"]
        for r in read_predictions(run_dir / PREDICTIONS)
        if isinstance(r.get("wall_seconds"), (int, float))
    ]
    written = _plots(run_dir, metrics, walls) if plots else []
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (run_dir / "report.md").write_text(_run_markdown(run_dir.name, metrics, config, written), encoding="utf-8")
    return metrics


def run_names(run_dirs: list[Path]) -> list[str]:
    """Short unique names for columns: the directory name, or more of the path when names repeat."""
    names = [p.name or str(p) for p in run_dirs]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in run_dirs]


def report_runs(
    run_dirs: list[str | Path], *, plots: bool = True, on_run: Callable[[Path], None] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Scores each run, writes its report files, and returns ``(name, metrics)`` pairs for a side-by-side table."""
    paths = [Path(p) for p in run_dirs]
    named = []
    for name, path in zip(run_names(paths), paths):
        if on_run is not None:
            on_run(path)
        named.append((name, write_report(path, plots=plots)))
    return named
