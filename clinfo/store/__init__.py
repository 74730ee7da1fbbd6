"""Where the state that users share lives: conversations, the NCBI request budget, caches.

``database_url`` unset: SQLite files under the cache directory (nothing to install), and the
request budget in a slot file per host. ``sqlite:///path.db``: conversations and caches in that
one file. ``postgresql://...``: all of it in one PostgreSQL database that several app hosts
share (the ``[postgres]`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.store.database import Database, StoreError, Transaction
from clinfo.store.url import DatabaseURL, parse_database_url, safe_database_url

if TYPE_CHECKING:
    from clinfo.settings import Settings

__all__ = [
    "Database",
    "DatabaseURL",
    "StoreError",
    "Transaction",
    "configured_url",
    "open_database",
    "parse_database_url",
    "safe_database_url",
]


def configured_url(settings: Settings) -> str | None:
    """The operator's ``database_url``, credentials included (for the driver only), or None."""
    secret = settings.database_url
    value = secret.get_secret_value().strip() if secret is not None else ""
    return value or None


def open_database(settings: Settings, default_file: Path, **options: Any) -> Database:
    """The database for one kind of shared state: ``database_url`` when set, else the SQLite
    file ``default_file`` (the place that state always had)."""
    return Database(configured_url(settings) or default_file, **options)
