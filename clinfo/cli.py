"""Command line: clinfo ask | search | index | eval.

The answer goes to stdout (Markdown, or JSON with --json); progress and errors go to stderr.
Errors are one line and a non-zero exit; --debug shows the traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Cited answers to clinical questions from PubMed. Supports experts; does not diagnose.",
)

@app.callback()
def _root() -> None:
    """Cited answers to clinical questions from PubMed.

    clinfo supports clinicians and researchers; it does not diagnose and does not replace clinical judgement.
    """


EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_ERROR) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def guarded(func: Callable[[], Any], debug: bool = False) -> Any:
    """Runs a command body; turns every failure into one line on stderr and an exit code."""
    from clinfo.errors import ClinfoError

    try:
        return func()
    except typer.Exit:
        raise
    except ClinfoError as exc:
        if debug:
            raise
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `clinfo ask ... | head`
        sys.stderr.close()
        raise typer.Exit(0)
    except Exception as exc:  # a bug of ours: still one line, and how to see more
        if debug:
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", 2)


LLM_OPT = typer.Option(None, "--llm", help="LLM spec: openai:<model>, vllm:<model>, local[:file.gguf] (env CLINFO_LLM)")
SOURCE_OPT = typer.Option(None, "--source", help="pubmed, demo or local:/path/corpus.db (env CLINFO_SOURCE)")
SEARCH_MODE_OPT = typer.Option(
    None, "--search-mode", help="Local corpora: auto (hybrid where vectors exist, else bm25) | bm25 | dense | hybrid (env CLINFO_SEARCH_MODE)"
)
# options every command that runs the pipeline shares (ask, eval run)
BASE_URL_OPT = typer.Option(None, "--base-url", help="LLM server base URL (overrides OPENAI_BASE_URL)")
NUM_QUERIES_OPT = typer.Option(None, "--num-queries", help="PubMed queries written per question.")
RESULTS_PER_QUERY_OPT = typer.Option(None, "--results-per-query", help="Results kept per query.")
PREFILTER_K_OPT = typer.Option(None, "--prefilter-k", help="Articles screened by the LLM per question.")
PROMPT_DIR_OPT = typer.Option(None, "--prompt-dir", help="Directory of prompt overrides.")
NO_CACHE_OPT = typer.Option(False, "--no-cache", help="Bypass the on-disk cache.")
DEBUG_OPT = typer.Option(False, "--debug", help="Show tracebacks.")


@app.command()
def ask(
    question: str = typer.Argument(..., help="The clinical question."),
    llm: Optional[str] = LLM_OPT,
    source: Optional[str] = SOURCE_OPT,
    search_mode: Optional[str] = SEARCH_MODE_OPT,
    base_url: Optional[str] = BASE_URL_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print the whole Answer as JSON."),
    no_cache: bool = NO_CACHE_OPT,
    restriction_date: Optional[str] = typer.Option(None, "--restriction-date", help="Only literature up to this date (YYYY-MM-DD)."),
    ignore: list[str] = typer.Option([], "--ignore", help="PMID to exclude (repeatable)."),
    num_queries: Optional[int] = NUM_QUERIES_OPT,
    results_per_query: Optional[int] = RESULTS_PER_QUERY_OPT,
    prefilter_k: Optional[int] = PREFILTER_K_OPT,
    prompt_dir: Optional[Path] = PROMPT_DIR_OPT,
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer only when complete."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Answer QUESTION with a cited synthesis (Markdown on stdout; --json for the full Answer)."""

    def body() -> None:
        from clinfo.pipeline import ClinfoAI
        from clinfo.progress import StageProgress
        from clinfo.render import answer_markdown, references_markdown, trace_line

        clinfo = ClinfoAI(
            llm=llm,
            source=source,
            search_mode=search_mode,
            base_url=base_url,
            use_cache=False if no_cache else None,
            num_queries=num_queries,
            results_per_query=results_per_query,
            prefilter_k=prefilter_k,
            prompt_dir=prompt_dir,
        )
        stream = not (as_json or no_stream)
        out = sys.stdout
        with StageProgress(enabled=not quiet) as progress:

            started = False

            def on_token(chunk: str) -> None:
                nonlocal started
                if not started:  # nothing reaches stdout before there is an answer to show
                    progress.stop()  # the spinner must not interleave with the streamed answer
                    out.write(f"## {' '.join(question.split())}\n\n")
                    started = True
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
        elif stream:
            parts = ["", f"**TL;DR:** {answer.tldr}"]
            if answer.references:
                parts.append("### References\n\n" + references_markdown(answer))
            parts.append(f"_{trace_line(answer)}_")
            out.write("\n" + "\n\n".join(parts) + "\n")
        else:
            out.write(answer_markdown(answer) + "\n")
        out.flush()

    guarded(body, debug)


def main() -> None:
    app()


def _register_subcommands() -> None:
    # each area owns its commands and attaches them here
    from clinfo import cli_eval, cli_index

    cli_index.register(app)
    cli_eval.register(app)


_register_subcommands()
