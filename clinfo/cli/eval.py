"""``clinfo eval run`` and ``clinfo eval report``: batch evaluation from the command line.

Progress and errors go to stderr; ``report`` prints its table (or ``--json``) on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from clinfo.cli.common import DEBUG_OPT, guarded, sub_app
from clinfo.cli.options import PipelineOptions, pipeline_options

app = sub_app("Batch evaluation: run clinfo over question sets, score runs, compare configurations.")

FORMAT_HELP = "pubmedqa | pubmedrs | bioasq | jsonl | csv (guessed from the file when omitted)"


@app.command("run")
@pipeline_options
def run_cmd(
    dataset: Path = typer.Argument(
        ..., help="Question file (PubMedQA JSON, PubMedRS-200 CSV, BioASQ JSON, JSONL or CSV)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (e.g. runs/NAME); the same --out resumes."),
    format: str | None = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    opts: PipelineOptions = PipelineOptions(),
    limit: int | None = typer.Option(
        None, "--limit", "-n", min=1, help="Answer a seeded random sample of N questions."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the --limit sample."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, max=1024, help="Questions in flight at once."),
    retry_errors: bool = typer.Option(
        True, "--retry-errors/--keep-errors", help="On resume, run failed questions again."
    ),
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
            limit=limit,
            seed=seed,
            concurrency=concurrency,
            retry_errors=retry_errors,
            progress=not quiet,
            **opts.overrides(),
        )
        resumed = f", {result.already_done} from earlier sessions" if result.already_done else ""
        typer.echo(
            f"{result.out}: {result.already_done + result.completed}/{result.total} questions done "
            f"({result.completed} now{resumed}; {result.errors} failed) in {result.wall_seconds:.1f} s",
            err=True,
        )

    guarded(body, debug)


@app.command("report")
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
