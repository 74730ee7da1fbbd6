"""On-disk cache of E-utilities responses and LLM completions (one SQLite file, WAL mode).

Keys are SHA-256 digests of the full request, canonicalised as JSON. Anything named like an
API key is dropped from the request before hashing, and only digests are stored, so credentials
never reach the file; values are response bodies only.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_SECRET_NAMES = {"api_key", "apikey", "authorization", "openai_api_key", "ncbi_api_key"}


def _scrub(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if str(k).lower() not in _SECRET_NAMES}
    if isinstance(obj, (list, tuple)):
        return [_scrub(v) for v in obj]
    return obj


def cache_key(request: Any) -> str:
    canonical = json.dumps(_scrub(request), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Cache:
    """A small namespaced key-value store; safe across threads and processes."""

    def __init__(self, path: Path | str | None, enabled: bool = True) -> None:
        self.enabled = enabled and path is not None
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS entries (namespace TEXT NOT NULL, key TEXT NOT NULL,"
                " value BLOB NOT NULL, created REAL NOT NULL, PRIMARY KEY (namespace, key))"
            )
            self._conn = conn
        return self._conn

    def get(self, namespace: str, request: Any) -> bytes | None:
        if not self.enabled:
            return None
        key = cache_key(request)
        with self._lock:
            row = (
                self._connect()
                .execute("SELECT value FROM entries WHERE namespace=? AND key=?", (namespace, key))
                .fetchone()
            )
        return bytes(row[0]) if row else None

    def set(self, namespace: str, request: Any, value: bytes | str) -> None:
        if not self.enabled:
            return
        data = value.encode("utf-8") if isinstance(value, str) else value
        key = cache_key(request)
        with self._lock:
            self._connect().execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", (namespace, key, data, time.time())
            )

    def clear(self) -> None:
        if self.path and self.path.exists():
            with self._lock:
                self._connect().execute("DELETE FROM entries")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def open_cache(settings: Any, use_cache: bool | None = None) -> Cache:
    enabled = settings.use_cache if use_cache is None else use_cache
    return Cache(Path(settings.cache_dir) / "cache.sqlite3", enabled=enabled)
