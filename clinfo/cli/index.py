"""``clinfo index build|upgrade|embed|import-vectors|info``: build and inspect a local PubMed mirror.

Summaries go to stdout; progress, warnings and errors go to stderr. Errors are one line and a
non-zero exit code.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from clinfo.cli.common import DEBUG_OPT, guarded, sub_app

app = sub_app(
    "Build and inspect a local PubMed mirror (SQLite records, Tantivy lexical index, optional dense vectors)."
)


@app.command("build")
def build_cmd(
    paths: list[Path] = typer.Argument(
        ..., help="PubMed XML (.xml, .xml.gz), JSON Lines (.jsonl[.gz]) files or directories."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Corpus file to create or extend (SQLite; the lexical index goes in OUT.tantivy/)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0, help="Parser processes (default: one per CPU; 0: none)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Ingest files into a corpus; re-running skips files already ingested and resumes interrupted ones."""

    def body() -> None:
        from clinfo.corpus.build import build_index

        summary = build_index(paths, out, progress=not quiet, workers=workers)
        typer.echo(summary.line())

    guarded(body, debug)


# help= rather than a docstring: typer lists a docstring's line breaks verbatim in `clinfo index --help`
@app.command(
    "upgrade",
    help="Convert an older corpus in place (v1: lexical index built from its records;"
    " v2: records compressed, ~0.37x the bytes).",
)
def upgrade_cmd(
    corpus: Path = typer.Argument(
        ..., help="Corpus built by an older clinfo (schema v1: SQLite FTS5; v2: uncompressed records)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = DEBUG_OPT,
) -> None:
    def body() -> None:
        from clinfo.corpus.upgrade import upgrade_corpus

        n = upgrade_corpus(corpus, progress=not quiet)
        typer.echo(f"{corpus}: lexical index holds {n:,} articles")

    guarded(body, debug)


@app.command("embed")
def embed_cmd(
    corpus: Path = typer.Argument(..., help="Corpus built by 'clinfo index build'."),
    model: str | None = typer.Option(
        None, "--model", help="sentence-transformers model name or path (default: all-MiniLM-L6-v2, offline)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, max=4096, help="Texts per encoder batch."),
    max_tokens: int | None = typer.Option(
        None,
        "--max-tokens",
        min=16,
        max=8192,
        help="Cut each article at this many tokens (default: 128 for all-MiniLM-L6-v2, the length it was trained"
        " on, 1.6x faster than its 256-token limit at R@10 -0.004; other models: their own limit).",
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


@app.command("import-vectors")
def import_vectors_cmd(
    corpus: Path = typer.Argument(..., help="Corpus built by 'clinfo index build'."),
    vectors: list[Path] = typer.Option([], "--vectors", help="A float .npy matrix, one row per article (repeatable)."),
    pmids: list[Path] = typer.Option(
        [], "--pmids", help="JSON list of the PMIDs of its rows, in order (one per --vectors)."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        help="The model that made the vectors (its query side encodes questions). Default: all-MiniLM-L6-v2.",
    ),
    query_model: str | None = typer.Option(
        None, "--query-model", help="Separate query encoder of an asymmetric model (MedCPT: ncbi/MedCPT-Query-Encoder)."
    ),
    index: bool = typer.Option(
        True, "--index/--no-index", help="Build or update the dense index afterwards (--no-index: import more first)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = DEBUG_OPT,
) -> None:
    """Import precomputed vectors (MedCPT's PubMed chunk layout: .npy + PMID JSON); re-importing a chunk is a no-op.

    Without --vectors, (re)builds the dense index of the model's vector set only.
    """

    def body() -> None:
        from clinfo.corpus.dense import dense_dir
        from clinfo.corpus.encoders import canonical_name
        from clinfo.corpus.faiss_index import build_dense_index
        from clinfo.corpus.vector_import import import_vectors
        from clinfo.errors import InvalidArgument

        if len(vectors) != len(pmids):
            raise InvalidArgument(
                f"give one --pmids per --vectors (got {len(vectors)} --vectors and {len(pmids)} --pmids)"
            )
        name = canonical_name(model)
        folder = dense_dir(corpus, name)
        if vectors:
            summary = import_vectors(
                corpus, list(zip(vectors, pmids)), model=name, query_model=query_model, folder=folder
            )
            typer.echo(summary.line())
        elif not index:
            raise InvalidArgument(
                "nothing to do: give --vectors/--pmids pairs, or leave out --no-index to build the index"
            )
        if index:
            from clinfo.corpus.store import open_corpus

            open_corpus(corpus).close()  # a missing corpus is the error to report, not a missing vector set
            typer.echo(build_dense_index(folder, progress=not quiet).line())

    guarded(body, debug)


@app.command("info")
def info_cmd(corpus: Path = typer.Argument(..., help="Corpus file."), debug: bool = DEBUG_OPT) -> None:
    """Counts and build metadata of a corpus, as JSON."""

    def body() -> None:
        from clinfo.corpus.store import corpus_info

        typer.echo(json.dumps(corpus_info(corpus), indent=2))

    guarded(body, debug)
