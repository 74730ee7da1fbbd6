"""The ``clinfo`` command: the root app, and the one place that attaches every command.

Command modules import only :mod:`clinfo.cli.common` and :mod:`clinfo.cli.options` (and the
library); this module imports them, so no command module imports its importer.
"""

from __future__ import annotations

import gc

import typer

from clinfo.cli import accounts, ask, index, plugins, search
from clinfo.cli import eval as evaluation  # not the builtin

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


app.command("ask")(ask.ask)
app.add_typer(index.app, name="index")
app.command("search")(search.search)
app.add_typer(evaluation.app, name="eval")
app.command("hash-password")(accounts.hash_password)
app.command("plugins")(plugins.plugins)


def main() -> None:
    try:
        app()
    finally:
        # The process ends here. Its objects go with it, so the collector's last passes over all
        # of them at exit (about 0.1 s with the pipeline loaded) are skipped.
        gc.freeze()
