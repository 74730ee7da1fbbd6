"""One NCBI request budget per API key across hosts, through a real PostgreSQL.

Two "hosts" are two processes with separate cache directories (so no slot file is shared) and
one ``CLINFO_DATABASE_URL``; the loopback E-utilities server records when each request arrives.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from clinfo.settings import Settings
from clinfo.sources.pubmed import _database_slot
from clinfo.sources.rate_limit import SpacedRate
from clinfo.store import Database
from clinfo.store.budget import SharedSlot, budget_name
from tests.support.eutils import EUtilsServer
from tests.support.postgres import PG_PASSWORD
from tests.support.rate import busiest_second, start_asking

KEY = "ncbi-key-0123456789abcdef"


def test_hosts_sharing_a_database_share_one_keys_budget(
    eutils_server: EUtilsServer, postgres_url: str, tmp_path: Path
) -> None:
    terms = eutils_server.sample_terms(8)
    procs = []
    for host, part in (("a", terms[:4]), ("b", terms[4:])):
        env = {
            "CLINFO_CACHE_DIR": str(tmp_path / f"host-{host}"),  # nothing on disk in common
            "CLINFO_DATABASE_URL": postgres_url,
            "NCBI_API_KEY": KEY,  # 10 requests/s for the key, wherever it is used
        }
        procs.append(start_asking(eutils_server.base_url, part, env))
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["4", "4"]
    times = [r.time for r in eutils_server.requests]
    assert len(times) >= 16  # each host alone would have sent its 8 inside a second
    assert busiest_second(times) <= 10
    assert not list(tmp_path.glob("host-*/rate/*.slot"))  # the database held the budget, not a file
    with Database(postgres_url).transaction() as tx:
        rows = tx.execute("SELECT budget FROM clinfo_request_budget").fetchall()
    assert rows == [(budget_name(eutils_server.base_url, KEY),)]


def test_a_start_taken_on_one_host_makes_the_other_wait(postgres_url: str) -> None:
    budget = budget_name("https://eutils.example/", KEY)
    host_a, host_b = SharedSlot(Database(postgres_url), budget), SharedSlot(Database(postgres_url), budget)
    assert host_a.try_take(0.5) == 0.0
    assert 0.3 < host_b.try_take(0.5) <= 0.5  # the rest of the interval, on the server's clock
    assert host_a.try_take(0.5) > 0  # the one that took it waits too
    other_key = SharedSlot(Database(postgres_url), budget_name("https://eutils.example/", "another-key-0123"))
    assert other_key.try_take(0.5) == 0.0  # another key, another budget
    with Database(postgres_url).transaction() as tx:
        rows = tx.execute("SELECT budget FROM clinfo_request_budget ORDER BY budget").fetchall()
    assert len(rows) == 2 and all(KEY not in r[0] for r in rows)  # digests, never the key


def test_a_stamp_from_the_future_is_not_believed(postgres_url: str) -> None:
    slot = SharedSlot(Database(postgres_url), budget_name("https://eutils.example/", None))
    assert slot.try_take(0.5) == 0.0
    with Database(postgres_url).transaction() as tx:  # the server's clock was set back an hour
        tx.execute("UPDATE clinfo_request_budget SET last_start = last_start + 3600")
    assert slot.try_take(0.5) == 0.0


def test_only_a_postgres_url_shares_the_budget_beyond_the_host(postgres_url: str, tmp_path: Path) -> None:
    assert _database_slot(Settings()) is None
    assert _database_slot(Settings(database_url=f"sqlite:///{tmp_path}/x.db")) is None
    slot = _database_slot(Settings(database_url=postgres_url, ncbi_api_key=KEY, eutils_base_url="https://e.example/"))
    assert slot is not None and slot.budget == budget_name("https://e.example/", KEY)


def test_a_database_that_is_down_leaves_the_hosts_budget(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    down = Database(f"postgresql://clinfo:{PG_PASSWORD}@/clinfo?host={tmp_path}&port=1", timeout=1.0)
    rate = SpacedRate(2.0, tmp_path / "rate" / "x.slot", shared=SharedSlot(down, "b"))
    assert rate.try_acquire() == 0.0  # granted by the host's slot file
    assert 0 < rate.try_acquire() <= rate.interval
    assert (tmp_path / "rate" / "x.slot").exists()
    assert "shared request budget unavailable" in caplog.text and PG_PASSWORD not in caplog.text
