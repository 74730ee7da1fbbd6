"""Conversations in a real PostgreSQL: the behaviour of the SQLite file, shared by app processes on several hosts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from clinfo.app.history import HistoryStore, Viewer, open_history
from clinfo.settings import Settings
from clinfo.store import Database
from tests.app.test_history import answer
from tests.support.common import REPO
from tests.support.postgres import PG_PASSWORD

KEY = "sk-test-SECRET-0123456789"
ANN = Viewer(session="tab-1", user="oidc:https://login.example.org|ann-0001")
ANN_ELSEWHERE = Viewer(session="tab-2", user="oidc:https://login.example.org|ann-0001")
BOB = Viewer(session="tab-3", user="oidc:https://login.example.org|bob-0002")
TAB = Viewer(session="tab-4")


def test_the_store_behaves_on_postgres_as_on_sqlite(postgres_url: str) -> None:
    store = HistoryStore(postgres_url, secrets=[KEY])
    assert store.path is None and store.db.kind == "postgresql"
    mine = store.new_conversation(ANN, "Does zinc help?")
    a = answer("Does zinc help?", ["1", "2"], ["3"])
    first = store.add(mine.id, "Does zinc help?", answer=a, config={"llm": "x", "base_url": f"http://u:{KEY}@h/v1"})
    second = store.add(mine.id, f"and my key {KEY}?", error="server down")
    assert second > first
    anon = store.new_conversation(TAB, "anon?")
    store.add(anon.id, "anon?", error="e")

    again = HistoryStore(postgres_url)  # a restart
    turns = again.turns(mine.id)
    assert turns[0].answer == a and turns[0].config == {"llm": "x", "base_url": "http://h/v1"}
    assert (turns[1].question, turns[1].error) == ("and my key [redacted]?", "server down")
    assert [(c.title, c.turns) for c in again.conversations(ANN_ELSEWHERE)] == [("Does zinc help?", 2)]
    assert again.conversations(BOB) == [] and again.conversation(BOB, mine.token) is None
    assert [c.id for c in again.conversations(TAB)] == [anon.id]
    assert again.conversation(Viewer(session="tab-9"), anon.token).id == anon.id  # the link is the capability
    assert len(again) == 3
    again.clear(ANN)
    assert again.conversations(ANN) == [] and again.turns(mine.id) == [] and len(again) == 1
    with Database(postgres_url).transaction() as tx:
        stored = json.dumps(
            tx.execute("SELECT * FROM turns").fetchall() + tx.execute("SELECT * FROM conversations").fetchall()
        )
    assert KEY not in stored


def test_two_app_processes_see_one_users_conversations(postgres_url: str, tmp_path: Path) -> None:
    # Two app hosts: own cache directories, one CLINFO_DATABASE_URL. Ann starts a conversation on
    # the first; signed in on the second (another browser session), she finds it there.
    script = textwrap.dedent(
        """
        import json, sys
        from clinfo.app.history import Viewer, open_history
        from clinfo.settings import load_settings
        store = open_history(load_settings())
        action, session, user = sys.argv[1:4]
        viewer = Viewer(session=session, user=user or None)
        if action == "ask":
            conversation = store.new_conversation(viewer, "Does magnesium help sleep?")
            store.add(conversation.id, "Does magnesium help sleep?", error="stopped")
        print(json.dumps([[c.title, c.turns] for c in store.conversations(viewer)]))
        """
    )

    def host(name: str, *args: str) -> list[list[object]]:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "CLINFO_CACHE_DIR": str(tmp_path / name),
            "CLINFO_DATABASE_URL": postgres_url,
        }
        done = subprocess.run(
            [sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    assert host("a", "ask", "s-1", ANN.user) == [["Does magnesium help sleep?", 1]]
    assert host("b", "list", "s-2", ANN.user) == [["Does magnesium help sleep?", 1]]
    assert host("b", "list", "s-3", BOB.user) == []  # another user sees nothing of hers
    assert host("b", "list", "s-1", "") == []  # nor does an anonymous session, even with her tab's id
    assert not list(tmp_path.glob("*/app_history.db"))  # nothing went to a host's own file


def test_open_history_prefers_the_database_url(postgres_url: str, tmp_path: Path) -> None:
    assert open_history(Settings(cache_dir=tmp_path)).path == tmp_path / "app_history.db"
    assert open_history(Settings(cache_dir=tmp_path, database_url=postgres_url)).db.kind == "postgresql"
    shared = open_history(Settings(cache_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/state.db"))
    assert shared.path == tmp_path / "state.db"


def test_an_unreachable_database_is_a_history_error_without_its_password(tmp_path: Path) -> None:
    import pytest

    from clinfo.app.history import HistoryError

    with pytest.raises(HistoryError) as err:
        HistoryStore(Database(f"postgresql://app:{PG_PASSWORD}@/clinfo?host={tmp_path}&port=1", timeout=1.0))
    assert str(err.value).startswith("conversation history postgresql://app@/clinfo?host=")
    assert PG_PASSWORD not in str(err.value)
