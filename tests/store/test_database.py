"""The storage layer: one SQL for SQLite and a real PostgreSQL, schemas made once, URLs that keep their secret."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clinfo.errors import ConfigError
from clinfo.eval.datasets import Dataset, EvalItem
from clinfo.eval.run_dir import run_config
from clinfo.redact import redact, secret_values
from clinfo.settings import Settings, load_settings
from clinfo.store import Database, StoreError, open_database, parse_database_url, safe_database_url
from tests.support.common import REPO
from tests.support.postgres import PG_PASSWORD

SCHEMA = ("CREATE TABLE IF NOT EXISTS notes (id {id}, body TEXT NOT NULL, data {blob}, score {real})",)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(tmp_path / "s.db")
    return Database(request.getfixturevalue("postgres_url"))


def test_one_sql_on_both_backends(database: Database) -> None:
    database.ensure_schema("notes", 1, SCHEMA)
    with database.transaction() as tx:
        first = tx.execute(
            "INSERT INTO notes (body, data, score) VALUES (?, ?, ?) RETURNING id", ("a", b"\x00\xff", 0.5)
        )
        (a,) = first.fetchone()
        (b,) = tx.execute("INSERT INTO notes (body) VALUES (?) RETURNING id", ("100% b?",)).fetchone()
    assert b > a
    with database.transaction() as tx:
        rows = tx.execute("SELECT body, data, score FROM notes WHERE body LIKE ? ORDER BY id", ("%",)).fetchall()
    assert [(r[0], bytes(r[1]) if r[1] is not None else None, r[2]) for r in rows] == [
        ("a", b"\x00\xff", 0.5),
        ("100% b?", None, None),
    ]


def test_a_failed_transaction_leaves_nothing(database: Database) -> None:
    database.ensure_schema("notes", 1, SCHEMA)
    with pytest.raises(RuntimeError), database.transaction() as tx:
        tx.execute("INSERT INTO notes (body) VALUES (?)", ("gone",))
        raise RuntimeError("the caller failed half way")
    with database.transaction() as tx:
        assert tx.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == 0


def test_driver_errors_are_one_line_store_errors(database: Database) -> None:
    with pytest.raises(StoreError, match=r"^database .*(no such table|does not exist)"), database.transaction() as tx:
        tx.execute("SELECT * FROM missing_table")


def test_schema_is_made_once_and_a_newer_one_is_refused(database: Database) -> None:
    database.ensure_schema("notes", 1, SCHEMA)
    database.ensure_schema("notes", 1, ("CREATE TABLE never_made (x TEXT)",))  # current: nothing runs
    with database.transaction() as tx:
        tx.execute("UPDATE clinfo_schema SET version = 7 WHERE component = ?", ("notes",))
    with pytest.raises(StoreError, match="newer clinfo"):
        Database(database.url.url if database.kind == "postgresql" else database.path).ensure_schema("notes", 2, SCHEMA)


def test_schema_creation_is_safe_when_processes_start_together(database: Database) -> None:
    # Four processes make the conversation, cache and budget tables of one new database at the
    # same moment: none fails, and each table exists once.
    script = textwrap.dedent(
        """
        import sys
        from clinfo.app.history import HistoryStore, Viewer
        from clinfo.cache import Cache
        from clinfo.store import Database
        where = sys.argv[1]
        store = HistoryStore(where)
        Cache(Database(where)).set("llm", {"q": 1}, "v")
        store.new_conversation(Viewer(session="s"), "q")
        print("ok")
        """
    )
    where = database.url.url if database.kind == "postgresql" else str(database.path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, where], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err.decode()[-1500:] for _, err in outputs]
    with database.transaction() as tx:
        assert tx.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 4
        versions = tx.execute("SELECT component, version FROM clinfo_schema ORDER BY component").fetchall()
        if database.kind == "sqlite":  # a SQLite history keeps its version in the file's header, as it always has
            assert tx.execute("PRAGMA user_version").fetchone()[0] == 2
            assert versions == [("cache", 1)]
        else:
            assert versions == [("cache", 1), ("history", 2)]


# ---------------------------------------------------------------- URLs and their secret


def test_urls_parse_and_their_safe_form_has_no_password() -> None:
    pg = parse_database_url("postgres://ann:p%40ss-word@db.example:5433/clinfo?sslmode=require&password=second-pw")
    assert pg.kind == "postgresql"
    assert pg.safe == "postgresql://ann@db.example:5433/clinfo?sslmode=require"
    assert set(pg.secrets) == {"p@ss-word", "second-pw"}
    lite = parse_database_url("sqlite:////srv/clinfo/state.db")
    assert (lite.kind, lite.path) == ("sqlite", Path("/srv/clinfo/state.db"))
    assert parse_database_url("sqlite:///state.db").path == Path("state.db")
    assert safe_database_url("mysql://u:pw@h/db") == "(an invalid database URL)"
    with pytest.raises(ValueError, match="unknown database URL scheme"):
        parse_database_url("mysql://u:pw@h/db")


def test_the_setting_keeps_its_password_out_of_configs_errors_and_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://clinfo:{PG_PASSWORD}@db.example/clinfo"
    monkeypatch.setenv("CLINFO_DATABASE_URL", url)
    settings = load_settings()
    assert settings.database_url.get_secret_value() == url
    assert settings.public_dict()["database_url"] == "postgresql://clinfo@db.example/clinfo"
    assert PG_PASSWORD not in repr(settings) and PG_PASSWORD not in str(settings.public_dict())
    data = Dataset(path="q.jsonl", format="jsonl", sha256="0" * 64, items=[EvalItem(id="1", question="q?")])
    config = json.dumps(run_config(settings, data, None, 0, 1))  # an eval run's config.json
    assert "@db.example/clinfo" in config and PG_PASSWORD not in config
    assert PG_PASSWORD in secret_values(settings) and PG_PASSWORD in secret_values()  # from the environment too
    assert redact(f"FATAL: password {PG_PASSWORD} rejected", secret_values()) == "FATAL: password [redacted] rejected"
    monkeypatch.setenv("CLINFO_DATABASE_URL", f"postgresq://clinfo:{PG_PASSWORD}@db.example/clinfo")  # a typo
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "database_url" in str(err.value) and PG_PASSWORD not in str(err.value)


def test_an_unreachable_server_is_a_store_error_without_the_password(tmp_path: Path) -> None:
    db = Database(f"postgresql://clinfo:{PG_PASSWORD}@/clinfo?host={tmp_path}&port=1", timeout=1.0)
    with pytest.raises(StoreError) as err, db.transaction() as tx:
        tx.execute("SELECT 1")
    assert str(err.value).startswith(f"database postgresql://clinfo@/clinfo?host={tmp_path}&port=1: ")
    assert PG_PASSWORD not in str(err.value)


def test_open_database_uses_the_setting_else_the_default_file(tmp_path: Path, postgres_url: str) -> None:
    assert open_database(Settings(), tmp_path / "h.db").path == tmp_path / "h.db"
    assert open_database(Settings(database_url=f"sqlite:///{tmp_path}/one.db"), tmp_path / "h.db").path == (
        tmp_path / "one.db"
    )
    assert open_database(Settings(database_url=postgres_url), tmp_path / "h.db").kind == "postgresql"
