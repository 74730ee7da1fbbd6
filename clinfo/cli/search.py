"""``clinfo search``: ranked PMIDs for a query from any source (a table, or JSON Lines).

Results go to stdout (a table, or JSON Lines with ``--json``/``--stdin``); warnings and errors go
to stderr. Errors are one line and a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

import typer

from clinfo.cli.common import DEBUG_OPT, fail, guarded
from clinfo.cli.options import SOURCE_OPT, setting_help, settings_overrides

if TYPE_CHECKING:
    from clinfo.settings import Settings
    from clinfo.sources.base import Source


def search(
    query: str | None = typer.Argument(None, help="PubMed query or plain text (omit with --stdin)."),
    source: str | None = SOURCE_OPT,
    k: int = typer.Option(10, "-k", "--limit", min=1, max=10_000, help="Results to return."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per result: pmid, score, title."),
    mode: str | None = typer.Option(None, "--mode", help=setting_help("search_mode")),
    stdin: bool = typer.Option(False, "--stdin", help="Read one query per line; print one JSON line per query."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Search a literature source and print ranked PMIDs."""

    def body() -> None:
        from clinfo.corpus.hybrid import MODES
        from clinfo.errors import ConfigError, InvalidQuestion
        from clinfo.settings import load_settings

        if stdin == (query is not None):
            raise InvalidQuestion("give a QUERY or --stdin, not both and not neither")
        if mode is not None and mode not in MODES:
            raise ConfigError(f"unknown --mode {mode!r}; use one of {', '.join(MODES)}")
        # a bad CLINFO_* value is one line, not a validation dump
        settings = load_settings(**settings_overrides(source=source, search_mode=mode))
        asyncio.run(_run_search(query, settings, k, as_json, stdin))

    guarded(body, debug)


async def _run_search(query: str | None, settings: Settings, k: int, as_json: bool, stdin: bool) -> None:
    from clinfo.sources import create_source

    src = create_source(settings.source, settings)
    try:
        if stdin:
            failed = await _search_lines(src, k)
            if failed:
                fail(f"{failed} quer{'y' if failed == 1 else 'ies'} failed (see the error field of their lines)")
            return
        assert query is not None
        result = await src.search(query, limit=k)
        for w in result.warnings:
            typer.echo(f"warning: {w}", err=True)
        articles = {a.pmid: a for a in await src.fetch(result.pmids)} if result.pmids else {}
        scores: list[Any] = list(result.scores) or [None] * len(result.pmids)
        if as_json:
            for pmid, score in zip(result.pmids, scores):
                a = articles.get(pmid)
                typer.echo(
                    json.dumps({"pmid": pmid, "score": score, "title": a.title if a else None}, ensure_ascii=False)
                )
        else:
            _print_table(result, scores, articles)
    finally:
        await src.aclose()


async def _search_lines(src: Source, k: int) -> int:
    from clinfo.errors import ClinfoError

    failed = 0
    out = sys.stdout
    for line in sys.stdin:
        q = line.strip()
        if not q:
            continue
        record: dict[str, Any] = {"query": q}
        try:
            result = await src.search(q, limit=k)
        except ClinfoError as exc:
            # One bad query must not end a batch of thousands: report it on its own line.
            failed += 1
            record.update(results=[], error=str(exc))
        else:
            scores: list[Any] = list(result.scores) or [None] * len(result.pmids)
            record["results"] = [{"pmid": p, "score": s} for p, s in zip(result.pmids, scores)]
            record["count"] = result.count
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    return failed


def _print_table(result: Any, scores: list[Any], articles: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result.count:,} hits", title_justify="left", expand=False)
    table.add_column("#", justify="right")
    table.add_column("PMID")
    table.add_column("score", justify="right")
    table.add_column("year", justify="right")
    table.add_column("title", overflow="fold")
    for i, (pmid, score) in enumerate(zip(result.pmids, scores), 1):
        a = articles.get(pmid)
        table.add_row(
            str(i),
            pmid,
            "" if score is None else f"{score:.3f}",
            str(a.year or "") if a else "",
            (a.title or "(no title)") if a else "",
        )
    console.print(table)
