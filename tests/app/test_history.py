"""The app's SQLite conversation history: conversations, who sees them, and the v1 migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clinfo.app.history import (
    ENV_DB,
    SCHEMA_VERSION,
    HistoryError,
    HistoryStore,
    Viewer,
    default_db_path,
    found_articles,
    public_config,
)
from clinfo.models import Answer, ArticleSummary, Reference
from clinfo.settings import load_settings
from tests.support.scripted import make_article

KEY = "sk-test-SECRET-0123456789"
TAB1 = Viewer(session="tab-1")
TAB2 = Viewer(session="tab-2")
ANN = Viewer(session="tab-3", user="name:ann")
ANN_ELSEWHERE = Viewer(session="tab-4", user="name:ann")
BOB = Viewer(session="tab-5", user="name:bob")


def answer(question: str, relevant: list[str], irrelevant: list[str] = ()) -> Answer:
    def summary(pmid: str, ok: bool) -> ArticleSummary:
        return ArticleSummary(
            article=make_article(pmid, f"Title {pmid}"), relevant=ok, score=8 if ok else 1, reason="r"
        )

    return Answer(
        question=question,
        synthesis="Text [1].",
        tldr="Short.",
        references=[
            Reference(n=i, pmid=p, citation=f"C {p}", url=f"https://pubmed.ncbi.nlm.nih.gov/{p}/")
            for i, p in enumerate(relevant, 1)
        ],
        article_summaries=[summary(p, True) for p in relevant],
        irrelevant_articles=[summary(p, False) for p in irrelevant],
    )


def test_turns_round_trip_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "h.db"
    store = HistoryStore(path)
    conv = store.new_conversation(TAB1, "Q1?")
    a = answer("Q1?", ["1", "2"], ["3"])
    first = store.add(conv.id, "Q1?", answer=a, config={"llm": "openai:gpt-4o-mini", "prefilter_k": 8})
    second = store.add(conv.id, "Q2?", error="cannot reach LLM server")
    assert second > first

    again = HistoryStore(path)  # a new store on the same file: a restart
    turns = again.turns(conv.id)
    assert [t.question for t in turns] == ["Q1?", "Q2?"]
    assert turns[0].answer == a and turns[0].error is None
    assert turns[0].config == {"llm": "openai:gpt-4o-mini", "prefilter_k": 8}
    assert turns[1].answer is None and turns[1].error == "cannot reach LLM server"
    assert turns[0].created.endswith("+00:00")
    (listed,) = again.conversations(TAB1)
    assert (listed.id, listed.title, listed.turns, listed.token) == (conv.id, "Q1?", 2, conv.token)
    assert len(store) == 2


def test_anonymous_sessions_see_only_their_own_conversations(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    mine = store.new_conversation(TAB1, "mine?")
    theirs = store.new_conversation(TAB2, "theirs?")
    store.add(mine.id, "mine?", error="e")
    store.add(theirs.id, "theirs?", error="e")
    assert [c.title for c in store.conversations(TAB1)] == ["mine?"]
    assert [c.title for c in store.conversations(TAB2)] == ["theirs?"]
    # a known user sees none of the anonymous ones
    assert store.conversations(ANN) == []


def test_known_user_sees_own_conversations_from_any_session_newest_first(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    older = store.new_conversation(ANN, "older?")
    newer = store.new_conversation(ANN_ELSEWHERE, "newer?")
    bobs = store.new_conversation(BOB, "bob's?")
    store.add(older.id, "older?", error="e")
    store.add(newer.id, "newer?", error="e")
    store.add(bobs.id, "bob's?", error="e")
    assert [c.title for c in store.conversations(ANN)] == ["newer?", "older?"]
    store.add(older.id, "older again?", error="e")  # the latest activity comes first
    assert [c.title for c in store.conversations(ANN_ELSEWHERE)] == ["older?", "newer?"]
    assert [c.title for c in store.conversations(BOB)] == ["bob's?"]
    assert store.conversations(Viewer(session="tab-3")) == []  # same tab, no name: not Ann's


def test_link_token_opens_only_what_the_viewer_may_see(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    anon = store.new_conversation(TAB1, "anon?")
    anns = store.new_conversation(ANN, "ann's?")
    # the link of an anonymous conversation is its capability: another anonymous tab may open it
    assert store.conversation(TAB2, anon.token).id == anon.id
    assert store.conversation(ANN, anon.token) is None
    assert store.conversation(ANN_ELSEWHERE, anns.token).id == anns.id
    assert store.conversation(BOB, anns.token) is None
    assert store.conversation(TAB1, anns.token) is None
    assert store.conversation(TAB1, "no-such-token") is None
    # once opened, it is listed in that tab too
    assert [c.id for c in store.conversations(TAB2, opened=[anon.id])] == [anon.id]
    assert store.conversations(TAB2, opened=[anns.id]) == []  # opened cannot reach a user's


def test_clear_removes_only_the_viewers_conversations_and_their_text(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = HistoryStore(path)
    mine = store.new_conversation(ANN, "A very distinctive question about zinc?")
    store.add(mine.id, "A very distinctive question about zinc?", answer=answer("zinc", ["1"]))
    other = store.new_conversation(BOB, "bob?")
    store.add(other.id, "bob?", error="e")
    store.clear(ANN_ELSEWHERE)
    assert store.conversations(ANN) == [] and store.turns(mine.id) == []
    assert b"distinctive question" not in path.read_bytes()  # not merely unlinked pages
    assert [t.question for t in store.turns(other.id)] == ["bob?"]
    assert len(store) == 1


def test_keys_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = HistoryStore(path, secrets=[KEY])
    conv = store.new_conversation(TAB1, f"my key is {KEY}, why?")
    store.add(conv.id, f"my key is {KEY}, why?", error=f"server said: Incorrect API key provided: {KEY}")
    store.add(
        conv.id,
        "q",
        answer=answer(f"q {KEY}", ["1"]),
        config={"llm": "x", "openai_api_key": KEY, "base_url": f"http://user:{KEY}@127.0.0.1:8080/v1?k=1"},
    )
    assert KEY.encode() not in path.read_bytes()
    turns = store.turns(conv.id)
    assert turns[0].question == "my key is [redacted], why?"
    assert turns[0].error == "server said: Incorrect API key provided: [redacted]"
    assert turns[1].answer.question == "q [redacted]"
    assert turns[1].config == {"llm": "x", "base_url": "http://127.0.0.1:8080/v1"}
    assert store.conversations(TAB1)[0].title == "my key is [redacted], why?"


def test_long_question_titles_are_cut(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    conv = store.new_conversation(TAB1, "word " * 40)
    assert len(conv.title) == 80 and conv.title.endswith("…")


def test_public_config_is_an_allow_list() -> None:
    import datetime as dt

    config = public_config(
        {
            "llm": "a",
            "search_mode": "hybrid",
            "ncbi_api_key": "x",
            "restriction_date": dt.date(2020, 1, 2),
            "followups": "merge",
            "cache_dir": "/p",
        }
    )
    assert config == {"llm": "a", "search_mode": "hybrid", "restriction_date": "2020-01-02", "followups": "merge"}


def test_turn_needs_exactly_one_of_answer_or_error(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    conv = store.new_conversation(TAB1, "q")
    with pytest.raises(ValueError):
        store.add(conv.id, "q")
    with pytest.raises(ValueError):
        store.add(conv.id, "q", answer=answer("q", []), error="e")


def test_default_path_under_cache_dir_or_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings()
    assert default_db_path(settings) == Path(settings.cache_dir) / "app_history.db"
    monkeypatch.setenv(ENV_DB, str(tmp_path / "mine.db"))
    assert default_db_path(settings) == tmp_path / "mine.db"


def test_unreadable_file_is_a_one_line_history_error(tmp_path: Path) -> None:
    bad = tmp_path / "h.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError, match=r"conversation history .*h\.db: file is not a database"):
        HistoryStore(bad)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(HistoryError, match="newer clinfo"):
        HistoryStore(path)


def test_unparseable_answer_keeps_the_turn(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = HistoryStore(path)
    conv = store.new_conversation(TAB1, "q")
    store.add(conv.id, "q", answer=answer("q", ["1"]))
    with sqlite3.connect(path) as conn:
        conn.execute('UPDATE turns SET answer_json = \'{"not": "an answer"}\'')
    (turn,) = store.turns(conv.id)
    assert turn.answer is None and "another version" in (turn.error or "")


# the schema version 1 wrote, verbatim: one table of turns that every tab shared
V1_SCHEMA = """
CREATE TABLE turns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created     TEXT NOT NULL,
    question    TEXT NOT NULL,
    answer_json TEXT,
    error       TEXT,
    config_json TEXT NOT NULL DEFAULT '{}'
);
PRAGMA user_version = 1;
"""


def v1_file(path: Path, rows: list[tuple[str, str | None, str | None]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
        for i, (question, answer_json, error) in enumerate(rows):
            conn.execute(
                "INSERT INTO turns (created, question, answer_json, error, config_json) VALUES (?, ?, ?, ?, ?)",
                (f"2026-11-0{i + 1}T10:00:00+00:00", question, answer_json, error, '{"llm": "local"}'),
            )


def test_v1_file_becomes_one_conversation_without_losing_turns(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    a = answer("Does zinc help?", ["1"], ["2"])
    v1_file(path, [("Does zinc help?", a.to_json(indent=None), None), ("And dose?", None, "server down")])

    store = HistoryStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # every anonymous tab sees it, as every tab did in version 1; known users do not
    (conv,) = store.conversations(TAB1)
    assert store.conversations(TAB2)[0].id == conv.id
    assert store.conversations(ANN) == []
    assert (conv.title, conv.turns, conv.created) == ("Does zinc help?", 2, "2026-11-01T10:00:00+00:00")
    turns = store.turns(conv.id)
    assert [(t.question, t.error) for t in turns] == [("Does zinc help?", None), ("And dose?", "server down")]
    assert turns[0].answer == a and turns[0].config == {"llm": "local"}
    # the migrated file works as a version 2 one, and opening it again changes nothing
    new = store.new_conversation(TAB1, "new?")
    store.add(new.id, "new?", error="e")
    assert [c.title for c in HistoryStore(path).conversations(TAB1)] == ["new?", "Does zinc help?"]
    assert len(HistoryStore(path)) == 3


def test_empty_v1_file_migrates_to_no_conversation(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    v1_file(path, [])
    store = HistoryStore(path)
    assert store.conversations(TAB1) == [] and len(store) == 0


def test_found_articles_recent_first_relevant_first_once_each(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    conv = store.new_conversation(TAB1, "q1")
    store.add(conv.id, "q1", answer=answer("q1", ["1", "2"], ["3"]))
    store.add(conv.id, "q2", error="failed")
    store.add(conv.id, "q3", answer=answer("q3", ["4", "1"], ["5", "2"]))
    assert [a.pmid for a in found_articles(store.turns(conv.id))] == ["4", "1", "5", "2", "3"]
