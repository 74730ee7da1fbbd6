"""A request budget shared through PostgreSQL by every process on every host that uses the database.

One row per budget holds the time of its last granted start, on the database server's clock
(``clock_timestamp()``): the hosts' own clocks may disagree, the server's is one clock for all.
Taking a start is one atomic ``UPDATE ... WHERE last_start <= now - interval``: of two hosts
asking at once, the row lock lets exactly one through and tells the other how long to wait.
A budget is named by a digest (of the endpoint and of the API key's digest), never by the key.
"""

from __future__ import annotations

import hashlib

from clinfo.store.database import Database

__all__ = ["SharedSlot", "budget_name"]

_SCHEMA = ("CREATE TABLE IF NOT EXISTS clinfo_request_budget (budget TEXT PRIMARY KEY, last_start {real} NOT NULL)",)
# A start is granted when the last one is an interval old. A stamp more than an interval in the
# future (the server's clock was set back) is not believed, as the host slot file does not
# believe one. Not granted: the seconds until it would be, from the last start this statement saw.
_TAKE = """
WITH now AS (SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS t),
taken AS (
    UPDATE clinfo_request_budget b SET last_start = now.t FROM now
    WHERE b.budget = ? AND (b.last_start <= now.t - ? OR b.last_start > now.t + ?)
    RETURNING b.budget
)
SELECT (SELECT COUNT(*) FROM taken),
       (SELECT b.last_start + ? - now.t FROM clinfo_request_budget b, now WHERE b.budget = ?)
"""


def budget_name(endpoint: str, api_key: str | None) -> str:
    """The row of one API key's budget at one endpoint (no key: the keyless budget)."""
    key_digest = hashlib.sha256(api_key.encode()).hexdigest() if api_key else "no key"
    return hashlib.sha256(f"{endpoint}\n{key_digest}".encode()).hexdigest()[:32]


class SharedSlot:
    """The last granted start of one budget, in ``db`` (PostgreSQL)."""

    def __init__(self, db: Database, budget: str) -> None:
        if db.kind != "postgresql":
            raise ValueError("a shared request budget needs a PostgreSQL database")
        self.db = db
        self.budget = budget
        self._ready = False

    def try_take(self, interval: float) -> float:
        """Takes a start now and returns 0.0, or returns the seconds to wait before asking again.
        Raises :class:`~clinfo.store.database.StoreError` when the database cannot be used."""
        if not self._ready:
            self.db.ensure_schema("budget", 1, _SCHEMA)
            with self.db.transaction() as tx:
                tx.execute(
                    "INSERT INTO clinfo_request_budget (budget, last_start) VALUES (?, 0)"
                    " ON CONFLICT (budget) DO NOTHING",
                    (self.budget,),
                )
            self._ready = True
        for _ in range(2):
            with self.db.transaction() as tx:
                taken, wait = tx.execute(_TAKE, (self.budget, interval, interval, interval, self.budget)).fetchone()
            if taken:
                return 0.0
            if wait is None:  # the row is gone (a table emptied by hand): made again on the next call
                self._ready = False
                break
            if wait > 0:
                return float(wait)
            # Another host took the start while this statement waited for the row: its snapshot
            # still held the older stamp. Asking again reads the new one.
        return interval
