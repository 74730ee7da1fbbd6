"""Database URLs: which backend, where, and a form of the URL that is safe to show.

``sqlite:///relative.db`` and ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling; ``~`` is
expanded) name one SQLite file; ``postgresql://user:password@host:5432/db?sslmode=require``
(or ``postgres://``) a PostgreSQL database, handed to libpq as it is. The password, in the
user info or as a ``password=`` parameter, is a credential: :attr:`DatabaseURL.safe` leaves it
out, and :attr:`DatabaseURL.secrets` lists it for :func:`clinfo.redact.redact`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["DatabaseURL", "parse_database_url", "safe_database_url"]

SCHEMES = "sqlite:///path.db or postgresql://user@host/db"
# libpq parameters whose values are credentials
_SECRET_PARAMS = {"password", "sslpassword"}


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
        secrets: list[str] = []
        if parts.password:
            secrets.append(unquote(parts.password))
        query = parse_qsl(parts.query, keep_blank_values=True)
        secrets += [v for k, v in query if k.lower() in _SECRET_PARAMS and v]
        user = f"{parts.username}@" if parts.username else ""
        host = parts.netloc.rpartition("@")[2]
        shown = [(k, v) for k, v in query if k.lower() not in _SECRET_PARAMS]
        safe = urlunsplit(("postgresql", user + host, parts.path, urlencode(shown, safe="/"), ""))
        driver_url = urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))
        return DatabaseURL("postgresql", driver_url, None, safe, tuple(secrets))
    raise ValueError(f"unknown database URL scheme {scheme[:20]!r}: use {SCHEMES}")


def safe_database_url(url: str) -> str:
    """``url`` without its credentials; for something that is not a database URL, a placeholder."""
    try:
        return parse_database_url(url).safe
    except ValueError:
        return "(an invalid database URL)"
