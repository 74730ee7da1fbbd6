"""``clinfo eval run`` and ``clinfo eval report``: batch evaluation from the command line.

Progress and errors go to stderr; ``report`` prints its table (or ``--json``) on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from clinfo.cli import (
    BASE_URL_OPT,
    DEBUG_OPT,
    LLM_OPT,
    NO_CACHE_OPT,
    NUM_QUERIES_OPT,
    PREFILTER_K_OPT,
    PROMPT_DIR_OPT,
    RESULTS_PER_QUERY_OPT,
    SEARCH_MODE_OPT,
    SOURCE_OPT,
    guarded,
)

eval_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Batch evaluation: run clinfo over question sets, score runs, compare configurations.",
)

FORMAT_HELP = "pubmedqa | pubmedrs | bioasq | jsonl | csv (guessed from the file when omitted)"


@eval_app.command("run")
def run_cmd(
    dataset: Path = typer.Argument(..., help="Question file (PubMedQA JSON, PubMedRS-200 CSV, BioASQ JSON, JSONL or CSV)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (e.g. runs/NAME); the same --out resumes."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    llm: Optional[str] = LLM_OPT,
    source: Optional[str] = SOURCE_OPT,
    search_mode: Optional[str] = SEARCH_MODE_OPT,
    base_url: Optional[str] = BASE_URL_OPT,
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Answer a seeded random sample of N questions."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, max=1024, help="Questions in flight at once."),
    num_queries: Optional[int] = NUM_QUERIES_OPT,
    results_per_query: Optional[int] = RESULTS_PER_QUERY_OPT,
    prefilter_k: Optional[int] = PREFILTER_K_OPT,
    prompt_dir: Optional[Path] = PROMPT_DIR_OPT,
    no_cache: bool = NO_CACHE_OPT,
    retry_errors: bool = typer.Option(True, "--retry-errors/--keep-errors", help="On resume, run failed questions again."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Answer every question of DATASET; one JSON line per question in OUT/predictions.jsonl."""

    def body() -> None:
        from clinfo.eval.runner import run_eval

        result = run_eval(
            dataset,
            out,
            format=format,
            llm=llm,
            source=source,
            search_mode=search_mode,
            limit=limit,
            seed=seed,
            concurrency=concurrency,
            retry_errors=retry_errors,
            progress=not quiet,
            base_url=base_url,
            use_cache=False if no_cache else None,
            num_queries=num_queries,
            results_per_query=results_per_query,
            prefilter_k=prefilter_k,
            prompt_dir=prompt_dir,
        )
        resumed = f", {result.already_done} from earlier sessions" if result.already_done else ""
        typer.echo(
            f"{result.out}: {result.already_done + result.completed}/{result.total} questions done "
            f"({result.completed} now{resumed}; {result.errors} failed) in {result.wall_seconds:.1f} s",
            err=True,
        )

    guarded(body, debug)


@eval_app.command("report")
def report_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directories written by `clinfo eval run`."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON instead of a table."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG plots."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Score RUNS (side by side) and write report.md, metrics.json and plots into each."""

    def body() -> None:
        import json

        from clinfo.eval.report import report_runs, rich_table

        named = report_runs(runs, plots=not no_plots)
        if as_json:
            sys.stdout.write(json.dumps({name: m for name, m in named}, indent=2) + "\n")
            return
        if sys.stdout.isatty():
            from rich.console import Console

            Console(soft_wrap=False).print(rich_table(named))
        else:  # piped or redirected: a Markdown table, whole at any width, ready to paste
            from clinfo.eval.report import markdown_table

            sys.stdout.write(markdown_table(named) + "\n")
        for path in runs:
            typer.echo(f"wrote {Path(path) / 'report.md'}", err=True)

    guarded(body, debug)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
