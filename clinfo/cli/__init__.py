"""Command line: ``clinfo ask | search | index | eval``.

The answer goes to stdout (Markdown, or JSON with --json); progress and errors go to stderr.
Errors are one line and a non-zero exit; --debug shows the traceback.

Layout: :mod:`.root` builds the app and attaches the commands (:mod:`.ask`, :mod:`.search`,
:mod:`.index`, :mod:`.eval`); those import only :mod:`.common` (exit codes, ``fail``,
``guarded``) and :mod:`.options` (options shared by several commands, and their mapping to
``Settings``).
"""

from clinfo.cli.root import app, main

__all__ = ["app", "main"]
