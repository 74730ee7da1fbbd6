"""Cache of E-utilities responses and LLM completions, with lifetimes and a size cap.

Where: ``cache.sqlite3`` under the cache directory, or the ``database_url`` database (SQLite or
PostgreSQL, shared by every app host). Keys are SHA-256 digests of the full request,
canonicalised as JSON. Anything named like an API key is dropped from the request before
hashing, and only digests are stored, so credentials never reach the database; values are
response bodies only. Callers put the server in the request (the E-utilities base URL; the LLM's
backend, base URL and model), so a test or mirror server's answers are never served as NCBI's.

Each namespace has a lifetime (search results a day, records a week, LLM completions a month,
by default; see the ``cache_ttl_*`` settings); an expired entry is a miss and is fetched again.
Past ``cache_max_mb`` the oldest entries are evicted (expired ones first), checked by each
process at its first write and then after every twentieth of the cap it writes.

A cache that fails (a locked or corrupt file, a database that is down) is turned off for the
rest of its use: :attr:`Cache.problem` says why, once, and the question goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.store import Database, StoreError, configured_url

if TYPE_CHECKING:
    from clinfo.models import Trace

log = logging.getLogger(__name__)

# namespaces, each with its own lifetime
SEARCH = "eutils-search"
RECORDS = "eutils-records"
LLM = "llm"
DEFAULT_TTL = {SEARCH: 86400.0, RECORDS: 7 * 86400.0, LLM: 30 * 86400.0}
DEFAULT_MAX_BYTES = 1024 * 2**20
WARNING_PREFIX = "cache unavailable"
FILE = "cache.sqlite3"  # under the cache directory, when no database_url is set
TIMEOUT = 3.0  # seconds to wait for a lock or a connection before answering without the cache
_SQLITE_PRAGMAS = ("journal_mode = WAL", "synchronous = NORMAL")
_EVICT_TO = 0.9  # evict down to this share of the cap, so the next writes do not evict again at once
_CHECK_AT_MOST = 8 * 2**20  # bytes a process writes between two size checks, whatever the cap

_SECRET_NAMES = {"api_key", "apikey", "authorization", "openai_api_key", "ncbi_api_key"}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS clinfo_cache (namespace TEXT NOT NULL, key TEXT NOT NULL, value {blob} NOT NULL,"
    " created {real} NOT NULL, expires {real} NOT NULL, size BIGINT NOT NULL, PRIMARY KEY (namespace, key))",
    "CREATE INDEX IF NOT EXISTS clinfo_cache_created ON clinfo_cache (created)",
)

# bytes written per database by this process since its last size check (None: not checked yet)
_written: dict[str, int | None] = {}
_written_lock = threading.Lock()


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
    """A namespaced key-value store with lifetimes; safe across threads, processes and hosts.

    ``where``: a SQLite file, or a :class:`~clinfo.store.Database`. ``ttl``: seconds per
    namespace (0: that namespace is not cached). ``clock``: wall-clock seconds (tests inject
    one). ``timeout``: seconds to wait for a lock or a connection before giving up on the cache.
    """

    def __init__(
        self,
        where: Path | str | Database | None,
        enabled: bool = True,
        *,
        ttl: Mapping[str, float] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
        timeout: float = TIMEOUT,
    ) -> None:
        self.enabled = enabled and where is not None
        # a file of clinfo's own may hold the table of the cache before lifetimes (keys without the
        # server): dropped, not served. A database named by the operator is left alone but that table.
        self._schema = _SCHEMA + (("DROP TABLE IF EXISTS entries",) if isinstance(where, (Path, str)) else ())
        if isinstance(where, Database) or where is None:
            self.db = where
        else:
            self.db = Database(where, timeout=timeout, sqlite_pragmas=_SQLITE_PRAGMAS)
        self.path = self.db.path if self.db is not None else None
        self.ttl = {**DEFAULT_TTL, **(ttl or {})}
        self.max_bytes = max(1, int(max_bytes))
        self.clock = clock
        self.problem: str | None = None
        self._ready = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the store
    def get(self, namespace: str, request: Any) -> bytes | None:
        if not self.enabled or self.ttl.get(namespace, 1.0) <= 0:
            return None
        key = cache_key(request)
        try:
            self._prepare()
            rows = self.db.query(  # type: ignore[union-attr]
                "SELECT value FROM clinfo_cache WHERE namespace = ? AND key = ? AND expires > ?",
                (namespace, key, self.clock()),
            )
        except StoreError as exc:
            self._fail(exc)
            return None
        return bytes(rows[0][0]) if rows else None

    def set(self, namespace: str, request: Any, value: bytes | str) -> None:
        lifetime = self.ttl.get(namespace, DEFAULT_TTL[LLM])
        if not self.enabled or lifetime <= 0:
            return
        data = value.encode("utf-8") if isinstance(value, str) else value
        key, now = cache_key(request), self.clock()
        try:
            self._prepare()
            with self.db.transaction() as tx:  # type: ignore[union-attr]
                tx.execute(
                    "INSERT INTO clinfo_cache (namespace, key, value, created, expires, size) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, created = excluded.created,"
                    " expires = excluded.expires, size = excluded.size",
                    (namespace, key, data, now, now + lifetime, len(data)),
                )
            if self._size_check_due(len(data)):
                self.evict()
        except StoreError as exc:
            self._fail(exc)

    def evict(self) -> int:
        """Delete expired entries, then the oldest until the cache is within its cap; returns
        how many entries went."""
        if not self.enabled:
            return 0
        now = self.clock()
        with self.db.transaction(write=True) as tx:  # type: ignore[union-attr]
            gone = tx.execute("DELETE FROM clinfo_cache WHERE expires <= ?", (now,)).rowcount or 0
            total = int(tx.execute("SELECT COALESCE(SUM(size), 0) FROM clinfo_cache").fetchone()[0])
            if total <= self.max_bytes:
                return gone
            excess, freed, cutoff = total - int(self.max_bytes * _EVICT_TO), 0, None
            for created, size in tx.execute("SELECT created, size FROM clinfo_cache ORDER BY created").fetchall():
                freed += int(size)
                cutoff = created
                if freed >= excess:
                    break
            gone += tx.execute("DELETE FROM clinfo_cache WHERE created <= ?", (cutoff,)).rowcount or 0
        log.info("cache %s: %d entries evicted (cap %.1f MB)", self.db.label, gone, self.max_bytes / 2**20)  # type: ignore[union-attr]
        return gone

    def clear(self) -> None:
        if self.db is None or (self.path is not None and not self.path.exists()):
            return
        try:
            self._prepare()
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM clinfo_cache")
        except StoreError as exc:
            self._fail(exc)

    def close(self) -> None:
        """Close the SQLite connection (PostgreSQL's belong to the process's pool). The cache
        stays usable: the next call opens it again."""
        if self.db is not None:
            self.db.close()

    # ------------------------------------------------------------ internals
    def _prepare(self) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                assert self.db is not None
                self.db.ensure_schema("cache", 1, self._schema)
                self._ready = True

    def _size_check_due(self, written: int) -> bool:
        every = max(1, min(_CHECK_AT_MOST, self.max_bytes // 20))
        where = self.db.url.url  # type: ignore[union-attr]
        with _written_lock:
            so_far = _written.get(where)
            if so_far is None or so_far + written >= every:
                _written[where] = 0
                return True
            _written[where] = so_far + written
            return False

    def _fail(self, exc: StoreError) -> None:
        with self._lock:
            if self.problem is None:
                self.problem = f"{WARNING_PREFIX} ({exc}); answered without it"
                log.warning("%s", self.problem)
            self.enabled = False


def note_problem(trace: Trace, cache: Cache) -> None:
    """Put ``cache``'s problem in ``trace``'s warnings, unless one cache warning is there already."""
    if cache.problem and not any(w.startswith(WARNING_PREFIX) for w in trace.warnings):
        trace.warnings.append(cache.problem)


def open_cache(settings: Any, use_cache: bool | None = None) -> Cache:
    """The cache ``settings`` name: in ``database_url`` when set, else ``cache.sqlite3`` under ``cache_dir``."""
    enabled = settings.use_cache if use_cache is None else use_cache
    url = configured_url(settings)
    where = Database(url, timeout=TIMEOUT, sqlite_pragmas=_SQLITE_PRAGMAS) if url else Path(settings.cache_dir) / FILE
    ttl = {SEARCH: settings.cache_ttl_search, RECORDS: settings.cache_ttl_records, LLM: settings.cache_ttl_llm}
    return Cache(where, enabled=enabled, ttl=ttl, max_bytes=int(settings.cache_max_mb * 2**20))
