"""``clinfo ask``: one question, its cited answer streamed to stdout (Markdown, or JSON with --json)."""

from __future__ import annotations

import sys

import typer

from clinfo.cli.common import DEBUG_OPT, guarded
from clinfo.cli.options import PipelineOptions, pipeline_options, setting_help


@pipeline_options
def ask(
    question: str = typer.Argument(..., help="The clinical question."),
    opts: PipelineOptions = PipelineOptions(),
    as_json: bool = typer.Option(False, "--json", help="Print the whole Answer as JSON."),
    restriction_date: str | None = typer.Option(None, "--restriction-date", help=setting_help("restriction_date")),
    ignore: list[str] = typer.Option([], "--ignore", help="PMID to exclude (repeatable)."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer only when complete."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Answer QUESTION with a cited synthesis (Markdown on stdout; --json for the full Answer)."""

    def body() -> None:
        from clinfo import ClinfoAI
        from clinfo.cli.progress import StageProgress
        from clinfo.render import answer_markdown

        clinfo = ClinfoAI(**opts.overrides())
        stream = not (as_json or no_stream)
        out = sys.stdout
        with StageProgress(enabled=not quiet) as progress:
            started = False
            streamed: list[str] = []

            def on_token(chunk: str) -> None:
                nonlocal started
                if not started:  # nothing reaches stdout before there is an answer to show
                    progress.stop()  # the spinner must not interleave with the streamed answer
                    out.write(f"## {' '.join(question.split())}\n\n")
                    started = True
                streamed.append(chunk)
                out.write(chunk)
                out.flush()

            answer = clinfo.forward(
                question,
                restriction_date=restriction_date,
                ignore=ignore or None,
                on_event=progress.on_event,
                on_token=on_token if stream else None,
            )
        if as_json:
            out.write(answer.to_json() + "\n")
        elif stream:  # the synthesis is out already: the rest of the answer below it
            if answer.synthesis.strip() != "".join(streamed).strip():  # rewritten by the claim recheck
                out.write(f"\n\n\n**Revised after the claim check:**\n\n{answer.synthesis}")
            rest = ("tldr", "agreement", "claims", "references", "set_aside", "trace")
            out.write("\n\n\n" + answer_markdown(answer, sections=rest) + "\n")
        else:
            out.write(answer_markdown(answer) + "\n")
        out.flush()

    guarded(body, debug)
