"""``clinfo hash-password``: the line an operator pastes under ``[accounts]`` in the app config."""

from __future__ import annotations

import sys

import typer

from clinfo.cli.common import fail


def hash_password(
    name: str = typer.Argument(..., help="the account's user name"),
) -> None:
    """Print `name = "scrypt$..."` for the app config's [accounts] table (password read without echo,
    or from stdin when piped)."""
    from clinfo.app.accounts import hash_password as make_hash
    from clinfo.app.accounts import normal_name

    if not normal_name(name) or any(c in name for c in '"\\\n'):
        fail("the user name must be non-empty and contain no quotes, backslashes or line breaks")
    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        fail("the password must be at least 8 characters")
    typer.echo(f'"{normal_name(name)}" = "{make_hash(password)}"')
