"""Database URLs: which backend, where, and a form of the URL that is safe to show.

``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling; ``~`` is
expanded) name one SQLite file; ``postgresql://user:password@host:5432/db?sslmode=require``
(or ``postgres://``) a PostgreSQL database, handed to libpq as it is. The password, in the
user info or as a ``password=`` parameter, is a credential: :attr:`DatabaseURL.safe` leaves it
out, and :attr:`DatabaseURL.secrets` lists it for :func:`clinfo.redact.redact` (both from
:mod:`clinfo.urls`, the scrubber of every URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from clinfo.urls import scrub_url, url_secrets

__all__ = ["DatabaseURL", "parse_database_url", "safe_database_url"]

SCHEMES = "sqlite:///path.db or postgresql://user@host/db"


@dataclass(frozen=True)
class DatabaseURL:
    kind: Literal["sqlite", "postgresql"]
    url: str  # as given, credentials included: for the driver only
    path: Path | None  # the SQLite file
    safe: str  # without any password: for messages, logs and configs
    secrets: tuple[str, ...]  # the credentials it holds


def parse_database_url(url: str) -> DatabaseURL:
    """The parts of ``url``; a ValueError (which never quotes the URL) when it is not one we use."""
    text = url.strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"a database URL looks like {SCHEMES}")
    if scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError("a SQLite database URL is sqlite:///relative.db or sqlite:////absolute/path.db")
        path = Path(unquote(rest[1:].split("?", 1)[0])).expanduser()
        return DatabaseURL("sqlite", text, path, f"sqlite:///{rest[1:].split('?', 1)[0]}", ())
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        parts = urlsplit("postgresql://" + rest)
        driver_url = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))
        safe = scrub_url(urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, "")))
        return DatabaseURL("postgresql", driver_url, None, safe, url_secrets(driver_url))
    raise ValueError(f"unknown database URL scheme {scheme[:20]!r}: use {SCHEMES}")


def safe_database_url(url: str) -> str:
    """``url`` without its credentials; for something that is not a database URL, a placeholder."""
    try:
        return parse_database_url(url).safe
    except ValueError:
        return "(an invalid database URL)"
