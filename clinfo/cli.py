"""Command line: clinfo ask | search | index | eval."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Cited answers to clinical questions from PubMed.")


def main() -> None:
    app()
