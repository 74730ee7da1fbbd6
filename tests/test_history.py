"""The app's SQLite conversation history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clinfo.app.history import ENV_DB, HistoryError, HistoryStore, default_db_path, found_articles, public_config
from clinfo.models import Answer, ArticleSummary, Reference
from clinfo.settings import load_settings
from tests.support.scripted import make_article

KEY = "sk-test-SECRET-0123456789"


def answer(question: str, relevant: list[str], irrelevant: list[str] = ()) -> Answer:
    def summary(pmid: str, ok: bool) -> ArticleSummary:
        return ArticleSummary(article=make_article(pmid, f"Title {pmid}"), relevant=ok, score=8 if ok else 1, reason="r")

    return Answer(
        question=question,
        synthesis="Text [1].",
        tldr="Short.",
        references=[Reference(n=i, pmid=p, citation=f"C {p}", url=f"https://pubmed.ncbi.nlm.nih.gov/{p}/") for i, p in enumerate(relevant, 1)],
        article_summaries=[summary(p, True) for p in relevant],
        irrelevant_articles=[summary(p, False) for p in irrelevant],
    )


def test_turns_round_trip_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "h.db"
    store = HistoryStore(path)
    a = answer("Q1?", ["1", "2"], ["3"])
    first = store.add("Q1?", answer=a, config={"llm": "openai:gpt-4o-mini", "prefilter_k": 8})
    second = store.add("Q2?", error="cannot reach LLM server")
    assert second > first

    turns = HistoryStore(path).turns()  # a new store on the same file: a restart
    assert [t.question for t in turns] == ["Q1?", "Q2?"]
    assert turns[0].answer == a and turns[0].error is None
    assert turns[0].config == {"llm": "openai:gpt-4o-mini", "prefilter_k": 8}
    assert turns[1].answer is None and turns[1].error == "cannot reach LLM server"
    assert turns[0].created.endswith("+00:00")
    assert len(store) == 2


def test_clear_removes_turns_and_their_text(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = HistoryStore(path)
    store.add("A very distinctive question about zinc?", answer=answer("zinc", ["1"]))
    store.clear()
    assert store.turns() == [] and len(store) == 0
    assert b"distinctive question" not in path.read_bytes()  # not merely unlinked pages
    store.add("after?", error="e")
    assert [t.question for t in store.turns()] == ["after?"]


def test_keys_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = HistoryStore(path, secrets=[KEY])
    store.add(f"my key is {KEY}, why?", error=f"server said: Incorrect API key provided: {KEY}")
    store.add(
        "q",
        answer=answer(f"q {KEY}", ["1"]),
        config={"llm": "x", "openai_api_key": KEY, "base_url": f"http://user:{KEY}@127.0.0.1:8080/v1?k=1"},
    )
    assert KEY.encode() not in path.read_bytes()
    turns = store.turns()
    assert turns[0].question == "my key is [redacted], why?"
    assert turns[0].error == "server said: Incorrect API key provided: [redacted]"
    assert turns[1].answer.question == "q [redacted]"
    assert turns[1].config == {"llm": "x", "base_url": "http://127.0.0.1:8080/v1"}


def test_public_config_is_an_allow_list() -> None:
    import datetime as dt

    config = public_config({"llm": "a", "ncbi_api_key": "x", "restriction_date": dt.date(2020, 1, 2), "followups": "merge", "cache_dir": "/p"})
    assert config == {"llm": "a", "restriction_date": "2020-01-02", "followups": "merge"}


def test_turn_needs_exactly_one_of_answer_or_error(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    with pytest.raises(ValueError):
        store.add("q")
    with pytest.raises(ValueError):
        store.add("q", answer=answer("q", []), error="e")


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
    store.add("q", answer=answer("q", ["1"]))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE turns SET answer_json = '{\"not\": \"an answer\"}'")
    (turn,) = store.turns()
    assert turn.answer is None and "another version" in (turn.error or "")


def test_found_articles_recent_first_relevant_first_once_each(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.db")
    store.add("q1", answer=answer("q1", ["1", "2"], ["3"]))
    store.add("q2", error="failed")
    store.add("q3", answer=answer("q3", ["4", "1"], ["5", "2"]))
    assert [a.pmid for a in found_articles(store.turns())] == ["4", "1", "5", "2", "3"]
