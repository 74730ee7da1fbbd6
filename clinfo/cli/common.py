"""What every command shares: exit codes, the one-line error, the guard around a command body.

Command modules import this (and :mod:`clinfo.cli.options`); nothing here imports a command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

EXIT_ERROR = 1
EXIT_BUG = 2  # an exception clinfo did not expect: a bug of ours
EXIT_INTERRUPTED = 130

DEBUG_OPT = typer.Option(False, "--debug", help="Show tracebacks.")


def sub_app(help: str) -> typer.Typer:
    """A command group (``clinfo index``, ``clinfo eval``) configured like the root."""
    return typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, help=help)


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
        raise typer.Exit(0) from None  # a closed reader is a normal end, not an error to chain
    except Exception as exc:  # a bug of ours: still one line, and how to see more
        if debug:
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_BUG)
