"""``clinfo index build|embed|info`` and ``clinfo search``.

Results go to stdout (a table, or JSON Lines with ``--json``/``--stdin``); progress, warnings and
errors go to stderr. Errors are one line and a non-zero exit code.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from clinfo.cli import DEBUG_OPT, SOURCE_OPT, fail, guarded

if TYPE_CHECKING:
    from clinfo.settings import Settings
    from clinfo.sources.base import Source

index_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Build and inspect a local PubMed mirror (SQLite records, Tantivy lexical index, optional dense vectors).",
)


@index_app.command("build")
def build_cmd(
    paths: list[Path] = typer.Argument(..., help="PubMed XML (.xml, .xml.gz), JSON Lines (.jsonl[.gz]) files or directories."),
    out: Path = typer.Option(..., "--out", "-o", help="Corpus file to create or extend (SQLite; the lexical index goes in OUT.tantivy/)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Parser processes (default: one per CPU; 0: none)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Ingest files into a corpus; re-running skips files already ingested and resumes interrupted ones."""

    def body() -> None:
        from clinfo.corpus.build import build_index

        summary = build_index(paths, out, progress=not quiet, workers=workers)
        typer.echo(summary.line())

    guarded(body, debug)


@index_app.command("upgrade")
def upgrade_cmd(
    corpus: Path = typer.Argument(..., help="Corpus built by an older clinfo (schema v1, SQLite FTS5)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Convert an older corpus in place: drop its FTS5 index, build the lexical index from its records."""

    def body() -> None:
        from clinfo.corpus.build import upgrade_corpus

        n = upgrade_corpus(corpus, progress=not quiet)
        typer.echo(f"{corpus}: lexical index holds {n:,} articles")

    guarded(body, debug)


@index_app.command("embed")
def embed_cmd(
    corpus: Path = typer.Argument(..., help="Corpus built by 'clinfo index build'."),
    model: Optional[str] = typer.Option(None, "--model", help="sentence-transformers model name or path (default: all-MiniLM-L6-v2, offline)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, max=4096, help="Texts per encoder batch."),
    max_tokens: Optional[int] = typer.Option(
        None, "--max-tokens", min=16, max=8192,
        help="Cut each article at this many tokens (default: the model's limit; 128 measured 1.6x faster, R@10 -0.004).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Encode the articles that have no dense vector yet and update the dense index; resumes if interrupted."""

    def body() -> None:
        from clinfo.corpus.dense import embed_index

        summary = embed_index(corpus, model=model, batch_size=batch_size, progress=not quiet, max_tokens=max_tokens)
        typer.echo(summary.line())

    guarded(body, debug)


@index_app.command("import-vectors")
def import_vectors_cmd(
    corpus: Path = typer.Argument(..., help="Corpus built by 'clinfo index build'."),
    vectors: list[Path] = typer.Option([], "--vectors", help="A float .npy matrix, one row per article (repeatable)."),
    pmids: list[Path] = typer.Option([], "--pmids", help="JSON list of the PMIDs of its rows, in order (one per --vectors)."),
    model: Optional[str] = typer.Option(
        None, "--model", help="The model that made the vectors (its query side encodes questions). Default: all-MiniLM-L6-v2."
    ),
    query_model: Optional[str] = typer.Option(
        None, "--query-model", help="Separate query encoder of an asymmetric model (MedCPT: ncbi/MedCPT-Query-Encoder)."
    ),
    index: bool = typer.Option(True, "--index/--no-index", help="Build or update the dense index afterwards (--no-index: import more first)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Import precomputed vectors (MedCPT's PubMed chunk layout: .npy + PMID JSON); re-importing a chunk is a no-op.

    Without --vectors, (re)builds the dense index of the model's vector set only.
    """

    def body() -> None:
        from clinfo.corpus.dense import build_dense_index, dense_dir
        from clinfo.corpus.encoders import canonical_name
        from clinfo.corpus.vectors import import_vectors
        from clinfo.errors import InvalidArgument

        if len(vectors) != len(pmids):
            raise InvalidArgument(f"give one --pmids per --vectors (got {len(vectors)} --vectors and {len(pmids)} --pmids)")
        name = canonical_name(model)
        folder = dense_dir(corpus, name)
        if vectors:
            summary = import_vectors(corpus, list(zip(vectors, pmids)), model=name, query_model=query_model, folder=folder)
            typer.echo(summary.line())
        elif not index:
            raise InvalidArgument("nothing to do: give --vectors/--pmids pairs, or leave out --no-index to build the index")
        if index:
            from clinfo.corpus.store import open_corpus

            open_corpus(corpus).close()  # a missing corpus is the error to report, not a missing vector set
            typer.echo(build_dense_index(folder, progress=not quiet).line())

    guarded(body, debug)


@index_app.command("info")
def info_cmd(corpus: Path = typer.Argument(..., help="Corpus file."), debug: bool = DEBUG_OPT) -> None:
    """Counts and build metadata of a corpus, as JSON."""

    def body() -> None:
        from clinfo.corpus.store import corpus_info

        typer.echo(json.dumps(corpus_info(corpus), indent=2))

    guarded(body, debug)


def _open_source(spec: str | None, mode: str | None, settings: "Settings") -> "Source":
    from clinfo.corpus.hybrid import MODES
    from clinfo.errors import ConfigError
    from clinfo.sources import create_source

    if mode is not None and mode not in MODES:
        raise ConfigError(f"unknown --mode {mode!r}; use one of {', '.join(MODES)}")
    if mode is not None:
        settings = settings.with_overrides(search_mode=mode)
    return create_source((spec or settings.source).strip(), settings)


def search_cmd(
    query: Optional[str] = typer.Argument(None, help="PubMed query or plain text (omit with --stdin)."),
    source: Optional[str] = SOURCE_OPT,
    k: int = typer.Option(10, "-k", "--limit", min=1, max=10_000, help="Results to return."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per result: pmid, score, title."),
    mode: Optional[str] = typer.Option(
        None, "--mode", help="auto | bm25 | dense | hybrid (local corpora; default: the search_mode setting, auto)."
    ),
    stdin: bool = typer.Option(False, "--stdin", help="Read one query per line; print one JSON line per query."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Search a literature source and print ranked PMIDs."""

    def body() -> None:
        from clinfo.errors import InvalidQuestion
        from clinfo.settings import load_settings

        if stdin == (query is not None):
            raise InvalidQuestion("give a QUERY or --stdin, not both and not neither")
        settings = load_settings()  # a bad CLINFO_* value is one line, not a validation dump
        asyncio.run(_run_search(query, settings, source, mode, k, as_json, stdin))

    guarded(body, debug)


async def _run_search(query: str | None, settings: "Settings", spec: str | None, mode: str | None, k: int, as_json: bool, stdin: bool) -> None:
    src = _open_source(spec, mode, settings)
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
                typer.echo(json.dumps({"pmid": pmid, "score": score, "title": a.title if a else None}, ensure_ascii=False))
        else:
            _print_table(result, scores, articles)
    finally:
        await src.aclose()


async def _search_lines(src: "Source", k: int) -> int:
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
            str(i), pmid, "" if score is None else f"{score:.3f}", str(a.year or "") if a else "", (a.title or "(no title)") if a else ""
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Attach ``index`` and ``search`` to the main CLI."""
    app.add_typer(index_app, name="index")
    app.command("search")(search_cmd)
