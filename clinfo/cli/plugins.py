"""``clinfo plugins``: the LLM backends and sources this installation offers, and the package each comes from."""

from __future__ import annotations

import json

import typer

from clinfo.cli.common import DEBUG_OPT, guarded


def plugins(
    as_json: bool = typer.Option(False, "--json", help='One JSON object: {"llms": {prefix: package}, "sources": ...}.'),
    debug: bool = DEBUG_OPT,
) -> None:
    """List the LLM backends (--llm) and sources (--source) installed, and the package each comes from.

    A plug-in is a package with entry points in the groups clinfo.llms and clinfo.sources (README: Writing a
    plug-in); one that fails to load is named in a warning on stderr and left out.
    """

    def body() -> None:
        from clinfo.llm.registry import providers as llms
        from clinfo.sources.registry import providers as sources

        found = {"llms": llms(), "sources": sources()}
        if as_json:
            typer.echo(json.dumps(found))
            return
        titles = {"llms": "LLM backends (--llm PREFIX[:MODEL])", "sources": "Sources (--source PREFIX[:ARGUMENT])"}
        for group, names in found.items():
            typer.echo(titles[group])
            width = max(map(len, names), default=0)
            for name, package in names.items():
                typer.echo(f"  {name:<{width}}  {package}")

    guarded(body, debug)
