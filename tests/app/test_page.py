"""The Streamlit app (app.py), driven through streamlit.testing's AppTest.

AppTest runs the real script in this process, so a scripted LLM backend and an in-memory
source registered here are what the app's settings resolve ``apptest:...`` to. One test uses
the real OpenAI backend against a closed loopback port, for the real "server unreachable" path.
Each AppTest is one browser session; several over one history file are several tabs or users.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from clinfo.app.export import FORMATS  # noqa: E402
from clinfo.app.history import HistoryStore  # noqa: E402
from clinfo.errors import LLMUnavailable  # noqa: E402
from clinfo.llm import register  # noqa: E402
from clinfo.sources import register as register_source  # noqa: E402
from tests.support.openai_server import OpenAIServer  # noqa: E402
from tests.support.scripted import MemorySource, ScriptedLLM, make_article, screen_reply  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "app.py")
QUESTION = "Does magnesium improve sleep in older adults?"
FOLLOW_UP = "What doses of magnesium were used?"
Q1 = "magnesium[tiab] AND sleep[tiab]"
Q_FOLLOW = "magnesium[tiab] AND dose[tiab]"
Q_UNTITLED = "magnesium[tiab] AND insomnia[tiab]"
UNTITLED_ABSTRACT = (
    "Oral magnesium for eight weeks improved sleep efficiency and sleep onset latency in elderly insomniacs."
)
EVIL_TITLE = '<script>alert("x")</script> *Bold* [click](javascript:alert(1)) magnesium sleep'
OPENAI_KEY = "sk-test-SECRET-key-0123456789abcdef"
NCBI_KEY = "ncbi-SECRET-key-9876543210"

SOURCES: list[MemorySource] = []  # every source the app opened, to see what it searched
BACKENDS: list[str] = []  # every LLM backend object the app made, by model name
PASSWORD = "correct horse battery staple"
ANN_PASSWORD = "ann's own long passphrase"
BOB_PASSWORD = "bob's own long passphrase"


def corpus() -> list:
    return [
        make_article(
            "101",
            "Magnesium and sleep in elderly: an RCT",
            "Magnesium improved sleep quality in older adults.",
            authors=["Abbasi B", "Kimiagar M"],
            doi="10.1000/mg.2012.1",
        ),
        make_article("102", "Unrelated cardiology trial", "Statins and cholesterol in middle age."),
        make_article(
            "103", EVIL_TITLE, "Magnesium and sleep duration in older people.", journal="J <b>Evil</b> & *Co*"
        ),
        make_article("104", "", UNTITLED_ABSTRACT),  # PubMedQA's records have no title
    ]


def scripted(model: str, settings: Any) -> Any:
    BACKENDS.append(model)
    if model == "down":
        return DownLLM()
    plan = {"ok": Q1, "followup": Q_FOLLOW, "untitled": Q_UNTITLED, "stance": Q1}[model]
    judge = (
        (lambda title: "cardiology" not in title.lower())
        if model == "untitled"
        else (lambda title: "magnesium" in title.lower())
    )
    return ScriptedLLM(
        {
            "plan": json.dumps({"queries": [plan]}),
            "broaden": json.dumps({"query": plan}),
            "screen": with_stance(screen_reply(judge)) if model == "stance" else screen_reply(judge),
            "synthesize": "Magnesium improved sleep in one trial [1]. A cohort agrees [2].",
            "tldr": "Limited evidence suggests magnesium may modestly improve sleep.",
        },
        spec=f"apptest:{model}",
    )


def with_stance(reply: Any) -> Any:
    """A screening reply that also classes the finding: the RCT supports, the other record contradicts."""

    def staged(request: Any) -> str:
        data = json.loads(reply(request))
        data["stance"] = "supporting" if "RCT" in data["reason"] else "contradicting"
        return json.dumps(data)

    return staged


class DownLLM:
    spec = "apptest:down"

    def identity(self) -> dict[str, Any]:
        return {"backend": "apptest-down"}

    async def complete(self, request: Any, on_token: Any = None) -> Any:
        raise LLMUnavailable("cannot reach LLM server at http://127.0.0.1:9/v1: connection refused")

    async def aclose(self) -> None:
        pass


def memory_source(arg: str, settings: Any) -> MemorySource:
    source = MemorySource({Q1: ["101", "102", "103"], Q_UNTITLED: ["104", "102"]}, corpus())
    SOURCES.append(source)
    return source


def everything_source(arg: str, settings: Any) -> MemorySource:
    """Every record for any query: for a real model, whose queries cannot be known in advance."""

    class Everything(MemorySource):
        async def search(self, query: str, *, limit: int = 20, dates: Any = None) -> Any:
            self.results[query] = list(self.articles)
            return await super().search(query, limit=limit, dates=dates)

    source = Everything({}, corpus())
    SOURCES.append(source)
    return source


register("apptest", scripted)
register_source("apptest", memory_source)
register_source("apptest-all", everything_source)


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    db = tmp_path / "history.db"
    monkeypatch.setenv("CLINFO_APP_DB", str(db))
    monkeypatch.setenv("CLINFO_LLM", "apptest:ok")
    monkeypatch.setenv("CLINFO_SOURCE", "apptest")
    # what the operator allows users to pick (the scripted models the tests switch between)
    monkeypatch.setenv("CLINFO_APP_LLMS", "apptest:ok,apptest:followup")
    monkeypatch.setenv("CLINFO_USE_CACHE", "false")
    for name in ("CLINFO_APP_PASSWORD", "CLINFO_APP_CONFIG", "CLINFO_APP_SOURCES", "CLINFO_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    SOURCES.clear()
    BACKENDS.clear()
    from clinfo.app.accounts import THROTTLE

    THROTTLE._records.clear()  # the throttle is per process; each test starts with no failures
    return db


def start(link: dict[str, Any] | None = None, user: dict[str, Any] | None = None) -> AppTest:
    """A new browser session; ``link``: the query parameters of the address it opens."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(link or {})
    if user is not None:
        at.user = user
    at.run()
    assert not at.exception, at.exception
    return at


def reload(at: AppTest) -> AppTest:
    """The same address in a new session: what a browser reload does."""
    return start(dict(at.query_params))


def stored_turns(db: Path) -> list[Any]:
    """Every turn in the file, whoever asked it, oldest first."""
    store = HistoryStore(db)
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM conversations ORDER BY id")]
    return sorted((t for i in ids for t in store.turns(i)), key=lambda t: t.id)


def listed(at: AppTest) -> list[str]:
    """The conversations the sidebar offers to reopen, as their button labels."""
    return [b.label for b in at.sidebar.button if (b.key or "").startswith("open-")]


def open_listed(at: AppTest, label_start: str) -> AppTest:
    (button,) = [b for b in at.sidebar.button if (b.key or "").startswith("open-") and b.label.startswith(label_start)]
    button.click().run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> list[str]:
    """Every Markdown string the page renders: bodies, alerts, captions, expander and status labels."""
    out = [m.value for m in at.markdown]
    out += [e.value for kind in ("info", "warning", "error", "caption") for e in getattr(at, kind)]
    out += [e.label for e in at.main.expander]
    return out


def everything(at: AppTest) -> str:
    """The whole rendered tree as text, widget state included."""
    return "\n".join(str(getattr(node, "proto", "")) for node in at._tree) + repr(at.session_state.to_dict())


def chat(at: AppTest) -> list[tuple[str, str]]:
    """(role, all Markdown in the message) for each chat message, in order."""
    out = []
    for message in at.chat_message:
        body = "\n".join(m.value for m in message.markdown)
        body += "\n".join(e.value for kind in ("info", "warning", "error") for e in getattr(message, kind))
        out.append((message.name, body))
    return out


def test_question_gives_cited_answer_with_reference_links(app_env: Path) -> None:
    at = ask(start(), QUESTION)

    roles = [role for role, _ in chat(at)]
    assert roles == ["user", "assistant"]
    answer_md = chat(at)[1][1]
    # inline citations link to the references' PubMed pages
    assert re.search(r"\\\[\[1\]\(https://pubmed\.ncbi\.nlm\.nih\.gov/101/ ", answer_md)
    assert re.search(r"\\\[\[2\]\(https://pubmed\.ncbi\.nlm\.nih\.gov/103/ ", answer_md)
    # the reference list, built from the records
    assert "[PMID 101](https://pubmed.ncbi.nlm.nih.gov/101/)" in answer_md
    assert "Abbasi B, Kimiagar M" in answer_md
    # TL;DR set apart
    assert any(i.value.startswith("**TL;DR:** Limited evidence") for i in at.info)
    # live status: finished, with the queries and counts it showed on the way
    status = at.main.status[0]
    assert status.label == "Done: 3 found, 2 relevant, 2 cited"
    assert [c.value for c in status.code] == [Q1]
    assert any("2 of 3 articles judged relevant" in m.value for m in status.markdown)
    # article cards: relevant expanded, irrelevant listed with its reason
    labels = [e.label for e in at.main.expander]
    assert "2 relevant articles" in labels and "1 article judged not relevant" in labels
    cards = "\n".join(m.value for m in at.main.expander[labels.index("2 relevant articles")].markdown)
    assert "**Design (as summarised):** RCT" in cards and "**Sample size:** 120" in cards
    assert "**Risk of bias:** low" in cards
    assert "[DOI](https://doi.org/10.1000/mg.2012.1)" in cards
    irrelevant = at.main.expander[labels.index("1 article judged not relevant")].markdown[0].value
    assert "Unrelated cardiology trial" in irrelevant and "judged on Unrelated cardiology trial" in irrelevant
    # exports offered
    assert [b.label for b in at.download_button] == [label for label, *_ in FORMATS.values()]
    # stored
    turns = stored_turns(app_env)
    assert [t.question for t in turns] == [QUESTION]
    assert [r.pmid for r in turns[0].answer.references] == ["101", "103"]


def test_failing_backend_shows_one_line_error_not_traceback(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_LLM", "apptest:down")
    at = ask(start(), QUESTION)

    assert [e.value for e in at.error] == ["cannot reach LLM server at http://127.0.0.1:9/v1: connection refused"]
    assert at.main.status[0].label == "Failed"
    assert not at.exception
    assert "Traceback" not in everything(at)
    # the failure is part of the conversation after a reload
    again = reload(at)
    assert [e.value for e in again.error] == [at.error[0].value]


def test_no_llm_configured_is_a_readable_error(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_LLM", "openai:gpt-4o-mini")  # no OPENAI_API_KEY and no base URL
    at = ask(start(), QUESTION)
    assert len(at.error) == 1 and at.error[0].value.startswith("OPENAI\\_API\\_KEY is not set")
    assert "\n" not in at.error[0].value


def test_unreachable_server_and_keys_never_shown_or_stored(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("NCBI_API_KEY", NCBI_KEY)
    monkeypatch.setenv("CLINFO_LLM", "openai:gpt-4o-mini")
    monkeypatch.setenv("CLINFO_BASE_URL", "http://127.0.0.1:9/v1")  # the discard port: nothing listens
    monkeypatch.setenv("CLINFO_LLM_RETRIES", "0")
    at = ask(start(), QUESTION)
    assert len(at.error) == 1 and "cannot reach LLM server at http://127.0.0.1:9/v1" in at.error[0].value

    # a successful answer with the keys set, then its exports
    at.sidebar.selectbox(key="llm").set_value("apptest:ok")
    ask(at, QUESTION)
    assert any(i.value.startswith("**TL;DR:**") for i in at.info)
    assert "OPENAI_API_KEY: set" in [c.value for c in at.sidebar.caption]
    assert "NCBI_API_KEY: set" in [c.value for c in at.sidebar.caption]

    rendered = everything(at) + everything(reload(at))
    stored = app_env.read_bytes().decode("utf-8", "replace")
    turns = stored_turns(app_env)
    exports = "".join(make(t.answer) for t in turns if t.answer for *_, make in FORMATS.values())
    for key in (OPENAI_KEY, NCBI_KEY):
        assert key not in rendered
        assert key not in stored
        assert key not in exports
    assert len(turns) == 2


def test_malicious_title_renders_as_text(app_env: Path) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    at = ask(start(), QUESTION)

    # a permissive renderer: raw HTML on, every link scheme allowed, so only escaping protects
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
    md.validateLink = lambda url: True
    html = "\n".join(md.render(t) for t in texts(at))
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html  # shown, as text
    assert "*Bold*" in html and "<em>Bold</em>" not in html
    assert "[click](javascript:alert(1))" in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(h.startswith(("https://pubmed.ncbi.nlm.nih.gov/", "https://doi.org/")) for h in hrefs)


def test_conversation_survives_a_reload_and_clear_empties_it(app_env: Path) -> None:
    first = ask(start(), QUESTION)
    assert set(first.query_params) == {"c"}  # the open conversation is in the address
    link = dict(first.query_params)

    again = reload(first)  # a reload or a restart: a new session on the same address
    assert [role for role, _ in chat(again)] == ["user", "assistant"]
    assert chat(again)[0][1] == "Does magnesium improve sleep in older adults?"
    assert "https://pubmed.ncbi.nlm.nih.gov/101/" in chat(again)[1][1]
    assert len(again.download_button) == len(FORMATS)
    assert listed(again) == [f"{QUESTION} · 1"]

    # an anonymous tab owns what it started; after a reload it holds the conversation only by its
    # address, as anyone given the link would: clearing there takes it off the list, deletes nothing
    again.sidebar.button(key="clear_history").click().run()
    assert not again.chat_message and listed(again) == []
    assert len(HistoryStore(app_env)) == 1
    assert "c" not in again.query_params

    first.sidebar.button(key="clear_history").click().run()  # the tab that started it deletes it
    assert not first.chat_message and listed(first) == []
    assert len(HistoryStore(app_env)) == 0
    assert not start(link).chat_message  # the old address opens a new conversation
    assert any("not available" in w.value for w in start(link).warning)


def test_sidebar_defaults_come_from_environment(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_LLM", "vllm:Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setenv("CLINFO_BASE_URL", "http://127.0.0.1:8001/v1")
    monkeypatch.setenv("CLINFO_SOURCE", "local:/data/pubmed.db")
    monkeypatch.setenv("CLINFO_RESTRICTION_DATE", "2020-06-30")
    monkeypatch.setenv("CLINFO_DATE_WINDOW_YEARS", "5")
    monkeypatch.setenv("CLINFO_PREFILTER_K", "7")
    monkeypatch.setenv("CLINFO_RESULTS_PER_QUERY", "33")
    at = start()
    sb = at.sidebar
    assert sb.selectbox(key="llm").value == "vllm:Qwen/Qwen2.5-7B-Instruct"
    assert sb.selectbox(key="llm").options == ["vllm:Qwen/Qwen2.5-7B-Instruct", "apptest:ok", "apptest:followup"]
    # the operator's source, named by its file, not its path on the server; then the demo corpus
    assert sb.selectbox(key="source").value == "Local index (pubmed.db)"
    assert sb.selectbox(key="source").options == ["Local index (pubmed.db)", "Demo corpus (offline)"]
    assert not sb.text_input  # nothing typed in the sidebar becomes a URL or a path
    assert str(sb.date_input(key="restriction_date").value) == "2020-06-30"
    assert sb.number_input(key="date_window_years").value == 5
    assert sb.slider(key="prefilter_k").value == 7
    assert sb.number_input(key="results_per_query").value == 33
    assert "OPENAI_API_KEY: not set" in [c.value for c in sb.caption]


def test_sidebar_choices_reach_the_pipeline(app_env: Path) -> None:
    at = start()
    at.sidebar.date_input(key="restriction_date").set_value("2019-12-31")
    at.sidebar.number_input(key="results_per_query").set_value(5)
    ask(at, QUESTION)
    ((query, limit, dates),) = SOURCES[-1].searches
    assert query == Q1 and limit == 5
    assert dates is not None and str(dates.end) == "2019-12-31"


def followup(app_env: Path, mode: str) -> tuple[AppTest, list[str]]:
    at = ask(start(), QUESTION)
    at.sidebar.radio(key="followups").set_value(mode)
    at.sidebar.selectbox(key="llm").set_value("apptest:followup")  # plans Q_FOLLOW, which the source does not know
    ask(at, FOLLOW_UP)
    turns = stored_turns(app_env)
    assert [t.question for t in turns] == [QUESTION, FOLLOW_UP]
    return at, [r.pmid for r in turns[1].answer.references]


def test_followup_reuses_articles_already_found(app_env: Path) -> None:
    _, refs = followup(app_env, "merge")
    assert refs == ["101", "103"]  # from the first turn; the new search found nothing
    assert [q for q, _, _ in SOURCES[-1].searches] == [Q_FOLLOW]  # and it did search again


def test_followup_reuse_only_does_not_search(app_env: Path) -> None:
    _, refs = followup(app_env, "reuse")
    assert refs == ["101", "103"]
    assert len(SOURCES) == 1  # no source opened for the follow-up


def test_followup_search_again_only_ignores_earlier_articles(app_env: Path) -> None:
    at, refs = followup(app_env, "search")
    assert refs == []
    assert stored_turns(app_env)[1].answer.no_evidence
    assert any(w.value.startswith("No relevant evidence found") for w in at.warning)


def test_history_db_stores_answer_json(app_env: Path) -> None:
    ask(start(), QUESTION)
    with sqlite3.connect(app_env) as conn:
        (answer_json,) = conn.execute("SELECT answer_json FROM turns").fetchone()
    assert json.loads(answer_json)["references"][0]["pmid"] == "101"


def test_a_history_error_shows_one_line_under_the_answer_not_instead_of_it(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = start()

    def locked(self: HistoryStore, *args: Any, **kwargs: Any) -> int:
        raise sqlite3.OperationalError("database is locked\n(after 30 s)")

    monkeypatch.setattr(HistoryStore, "add", locked)
    ask(at, QUESTION)
    ((role, body),) = [m for m in chat(at) if m[0] == "assistant"]
    assert "Magnesium improved sleep in one trial" in body  # the answer already paid for is shown
    (warning,) = [w.value for w in at.warning if "history" in w.value]
    assert warning == "Not saved to your history: unexpected error (OperationalError): database is locked (after 30 s)"
    assert stored_turns(app_env) == []


# ---------------------------------------------------------------- the worker bridge, directly
class SlowLLM(DownLLM):
    """Answers only after a long wait, unless cancelled first."""

    def __init__(self) -> None:
        import threading

        self.started = threading.Event()
        self.cancelled = False

    async def complete(self, request: Any, on_token: Any = None) -> Any:
        import asyncio

        self.started.set()
        try:
            await asyncio.sleep(30)  # a broken cancel shows as a late answer, never as a hang
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return await scripted("ok", None).complete(request, on_token)


def test_cancel_stops_the_worker_and_its_llm_call(app_env: Path) -> None:
    from clinfo.app.worker import BackgroundQuestion, Engine
    from clinfo.settings import load_settings

    slow = SlowLLM()
    register("apptest-slow", lambda model, settings: slow)
    run = BackgroundQuestion(Engine(load_settings(llm="apptest-slow")), QUESTION).start()
    assert slow.started.wait(30)  # the first LLM call is in flight
    run.cancel()
    seen = [message for batch in run.batches(poll=0.05) for message in batch]
    assert seen == [("error", "stopped")]
    assert slow.cancelled


def test_conversation_source_merges_known_articles_within_the_date_window() -> None:
    import asyncio
    import datetime as dt

    from clinfo.app.worker import ConversationSource
    from clinfo.sources.base import DateRange

    inner = MemorySource({Q1: ["101"]}, corpus())
    known = [make_article("900", "Old", year=1990), make_article("901", "Recent", year=2018), corpus()[0]]
    source = ConversationSource(inner, known)

    async def go() -> tuple[Any, Any, Any]:
        window = DateRange(start=dt.date(2000, 1, 1), end=dt.date(2020, 12, 31))
        result = await source.search(Q1, limit=5, dates=window)
        fetched = await source.fetch(["901", "101", "404"])
        return result, fetched, inner.fetches

    result, fetched, inner_fetches = asyncio.run(go())
    assert result.pmids == ["101", "901"]  # the new hit first; 900 is outside the window; 101 once
    assert [a.pmid for a in fetched] == ["901", "101"]
    assert inner_fetches == [["404"]]  # known records are not fetched again


def test_error_message_is_one_line_and_redacted() -> None:
    from clinfo.app.worker import error_message
    from clinfo.errors import ConfigError

    assert error_message(ConfigError("bad\nsetting"), []) == "bad setting"
    msg = error_message(RuntimeError(f"boom with {OPENAI_KEY}\n  at line 3"), [OPENAI_KEY])
    assert msg == "unexpected error (RuntimeError): boom with [redacted] at line 3"


# ---------------------------------------------------------------- a team on one app
def test_two_sessions_do_not_see_each_others_conversations(app_env: Path) -> None:
    alice, bob = start(), start()  # two tabs (or two people) on one app and one history file
    ask(alice, QUESTION)
    bob.run()
    assert not bob.chat_message and listed(bob) == []
    assert QUESTION not in everything(bob)

    ask(bob, FOLLOW_UP)
    alice.run()
    assert [body for role, body in chat(alice) if role == "user"] == [QUESTION]
    assert listed(alice) == [f"{QUESTION} · 1"]
    assert listed(bob) == [f"{FOLLOW_UP} · 1"]
    assert FOLLOW_UP not in everything(alice)
    # both are kept, in conversations of their own
    assert [t.question for t in stored_turns(app_env)] == [QUESTION, FOLLOW_UP]


def test_new_conversation_then_reopen_an_earlier_one(app_env: Path) -> None:
    at = ask(start(), QUESTION)
    first_link = at.query_params["c"]
    at.sidebar.button(key="new_conversation").click().run()
    assert not at.chat_message and "c" not in at.query_params
    assert listed(at) == [f"{QUESTION} · 1"]

    # a new conversation does not reuse the articles of another one
    at.sidebar.radio(key="followups").set_value("reuse")
    ask(at, FOLLOW_UP)
    assert any("No articles were found earlier in this conversation" in c.value for c in at.main.status[0].caption)
    assert at.query_params["c"] != first_link
    assert listed(at) == [f"{FOLLOW_UP} · 1", f"{QUESTION} · 1"]

    open_listed(at, QUESTION)
    assert [body for role, body in chat(at) if role == "user"] == [QUESTION]
    assert at.query_params["c"] == first_link
    ask(at, "And in younger adults?")  # goes into the reopened conversation
    assert listed(at) == [f"{QUESTION} · 2", f"{FOLLOW_UP} · 1"]


def test_a_new_tab_starts_a_new_conversation_and_lists_none_of_another_tabs(app_env: Path) -> None:
    ask(start(), QUESTION)
    tab = start()
    assert not tab.chat_message and not tab.query_params
    assert tab.chat_input  # ready for a question


def test_password_gate_shows_nothing_until_the_right_password(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_APP_PASSWORD", PASSWORD)
    at = start()
    assert not at.chat_input and not at.sidebar.children and not at.info  # no chat, no settings
    assert [t.label for t in at.text_input] == ["Password"]  # no name: the shared password is anonymous

    at.text_input(key="gate_password").input("wrong guess")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    assert not at.chat_input and not at.sidebar.children

    at.text_input(key="gate_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and at.chat_input and not at.error
    ask(at, QUESTION)
    assert any(i.value.startswith("**TL;DR:**") for i in at.info)
    # the password is never echoed, kept in the session or stored
    assert PASSWORD not in everything(at)
    assert PASSWORD.encode() not in app_env.read_bytes()


def with_accounts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shared: bool = True) -> None:
    """The operator's config with two accounts (and the shared password, for anonymous entry)."""
    from clinfo.app.accounts import hash_password

    config = tmp_path / "app.toml"
    config.write_text(
        f'''[accounts]
"Ann Lee" = "{hash_password(ANN_PASSWORD, n=2**10)}"
bob = "{hash_password(BOB_PASSWORD, n=2**10)}"
'''
    )
    monkeypatch.setenv("CLINFO_APP_CONFIG", str(config))
    if shared:
        monkeypatch.setenv("CLINFO_APP_PASSWORD", PASSWORD)


def through_gate(name: str, password: str, at: AppTest | None = None) -> AppTest:
    at = at or start()
    if name:
        at.text_input(key="gate_name").input(name)
    at.text_input(key="gate_password").input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_accounts_keep_history_across_sessions(app_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with_accounts(monkeypatch, tmp_path)
    ann = ask(through_gate("Ann Lee", ANN_PASSWORD), QUESTION)
    assert any("Signed in as ann lee" in c.value for c in ann.sidebar.caption)

    later = through_gate("  ann   LEE ", ANN_PASSWORD)  # another tab or another day: same account
    assert not later.chat_message  # a new tab starts a new conversation...
    assert listed(later) == [f"{QUESTION} · 1"]  # ...and lists the earlier ones
    open_listed(later, QUESTION)
    assert [body for role, body in chat(later) if role == "user"] == [QUESTION]

    # a name is not an identity: Ann's name with Bob's password, or the shared password, is not Ann
    impostor = through_gate("Ann Lee", BOB_PASSWORD)
    assert not impostor.chat_input and [e.value for e in impostor.error] == ["Wrong user name or password."]
    impostor = through_gate("Ann Lee", PASSWORD)
    assert not impostor.chat_input
    bob = through_gate("bob", BOB_PASSWORD)
    assert bob.chat_input and listed(bob) == [] and QUESTION not in everything(bob)
    anonymous = through_gate("", PASSWORD)  # the shared password: in, anonymously
    assert anonymous.chat_input and listed(anonymous) == []
    assert not any("Signed in as" in c.value for c in anonymous.sidebar.caption)
    # Ann's link does not open her conversation for anyone else
    assert not start(dict(ann.query_params)).chat_message


def test_failed_sign_ins_lock_out_the_session_and_the_account(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from clinfo.app.accounts import FREE_FAILURES

    with_accounts(monkeypatch, tmp_path, shared=False)
    at = start()
    for _ in range(FREE_FAILURES + 1):
        through_gate("Ann Lee", "guess", at)
    # now even the right password waits, in this session...
    through_gate("Ann Lee", ANN_PASSWORD, at)
    assert not at.chat_input and at.error[0].value.startswith("Too many failed attempts")
    # ...and for this account from a fresh session (a guesser opens new ones at will)
    other = through_gate("Ann Lee", ANN_PASSWORD)
    assert not other.chat_input and other.error[0].value.startswith("Too many failed attempts")
    # another account is not locked
    assert through_gate("bob", BOB_PASSWORD).chat_input


def test_throttle_grows_per_key_and_globally_on_the_monotonic_clock() -> None:
    from clinfo.app.accounts import BASE_LOCK, FREE_FAILURES, GLOBAL_FREE, Throttle

    now = [1000.0]
    throttle = Throttle(clock=lambda: now[0])
    key = ("session", "s1")
    for _ in range(FREE_FAILURES):
        throttle.failed(key)
    assert throttle.wait(key) == 0  # the first few failures are free
    throttle.failed(key)
    assert throttle.wait(key) == BASE_LOCK
    throttle.failed(key)
    assert throttle.wait(key) == 2 * BASE_LOCK  # doubles
    now[0] += 2 * BASE_LOCK
    assert throttle.wait(key) == 0
    throttle.succeeded(key)
    throttle.failed(key)
    assert throttle.wait(key) == 0  # a success starts the count again
    for i in range(GLOBAL_FREE + 1):  # many sessions, one failure each: the whole gate slows down
        throttle.failed(("session", f"x{i}"), ("all",))
    assert throttle.wait(("session", "new"), ("all",)) > 0


def test_leave_ends_the_identity_and_the_anonymous_session(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_APP_PASSWORD", PASSWORD)
    at = ask(through_gate("", PASSWORD), QUESTION)
    session = at.session_state["clinfo_session"]
    at.sidebar.button(key="leave").click().run()
    assert not at.chat_input  # the gate again
    through_gate("", PASSWORD, at)
    assert at.chat_input and at.session_state["clinfo_session"] != session
    assert listed(at) == [] and QUESTION not in everything(at)  # the next person sees nothing of the last


def test_clear_deletes_only_what_the_viewer_owns(app_env: Path) -> None:
    alice = ask(start(), QUESTION)
    bob = ask(start(), FOLLOW_UP)
    bob_link = dict(bob.query_params)
    visitor = start(bob_link)  # an anonymous visitor opens Bob's conversation by its link
    assert [body for role, body in chat(visitor) if role == "user"] == [FOLLOW_UP]
    ask(visitor, "A question of the visitor's own?")  # goes into Bob's conversation, which it opened
    visitor.sidebar.button(key="new_conversation").click().run()
    ask(visitor, "Another question of the visitor's own?")
    visitor.sidebar.button(key="clear_history").click().run()
    remaining = [t.question for t in stored_turns(app_env)]
    # the visitor's own conversation is gone; Bob's (with the turn the visitor added) and Alice's stay
    assert "Another question of the visitor's own?" not in remaining
    assert QUESTION in remaining and FOLLOW_UP in remaining
    assert [body for role, body in chat(reload(bob)) if role == "user"][0] == FOLLOW_UP
    assert alice.chat_message


def test_signed_in_user_keeps_history_across_sessions(app_env: Path) -> None:
    ann = {"is_logged_in": True, "email": "ann@example.org", "name": "Ann", "iss": "https://idp.example", "sub": "a1"}
    ask(start(user=ann), QUESTION)
    assert listed(start(user=ann)) == [f"{QUESTION} · 1"]
    assert any("Signed in as ann@example.org" in c.value for c in start(user=ann).sidebar.caption)
    # keyed by issuer and subject: the same email at another provider, or another subject, is someone else
    assert listed(start(user={**ann, "iss": "https://other-idp.example"})) == []
    assert listed(start(user={**ann, "sub": "a2"})) == []
    assert listed(start(user={"is_logged_in": True, "email": "bob@example.org", "iss": ann["iss"], "sub": "b1"})) == []
    assert listed(start()) == []  # anonymous

    signed_out = start(user={"is_logged_in": False})
    assert not signed_out.chat_input
    assert [b.label for b in signed_out.button] == ["Sign in"]
    signed_out.button[0].click().run()  # no [auth] provider configured here: one line, no traceback
    assert not signed_out.exception and len(signed_out.error) == 1 and "\n" not in signed_out.error[0].value
    assert not signed_out.chat_input


def test_one_engine_per_session_rebuilt_when_settings_change(app_env: Path) -> None:
    at = ask(start(), QUESTION)
    ask(at, FOLLOW_UP)
    assert BACKENDS == ["ok"]  # one backend for both questions

    at.sidebar.slider(key="prefilter_k").set_value(4)
    ask(at, "A third question about magnesium?")
    assert BACKENDS == ["ok", "ok"]
    assert stored_turns(app_env)[-1].config["prefilter_k"] == 4

    ask(start(), QUESTION)  # another session has its own
    assert BACKENDS == ["ok", "ok", "ok"]


# ---------------------------------------------------------------- cards show what was asked
def relevant_cards(at: AppTest) -> str:
    labels = [e.label for e in at.main.expander]
    (i,) = [i for i, label in enumerate(labels) if label.endswith(("relevant article", "relevant articles"))]
    return "\n".join(m.value for m in at.main.expander[i].markdown)


def test_cards_show_only_requested_fields(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cards = relevant_cards(ask(start(), QUESTION))
    assert "**Relevance:** judged by the model, score 8/10. judged on Magnesium and sleep in elderly" in cards
    assert "**Design (as summarised):** RCT" in cards

    monkeypatch.setenv("CLINFO_SUMMARIZE", "false")  # relevance only, as the small preset asks
    cards = relevant_cards(ask(start(), QUESTION))
    assert "**Relevance:** judged by the model, score 8/10" in cards
    for absent in ("as summarised", "Sample size", "Population", "Risk of bias", "not reported", "Summary of"):
        assert absent not in cards


def test_untitled_record_shows_its_opening_words_in_card_and_reference(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINFO_LLM", "apptest:untitled")
    at = ask(start(), QUESTION)
    cards = relevant_cards(at)
    title = cards.split("\n")[0]
    assert title == (
        "**\\[1\\] Oral magnesium for eight weeks improved sleep efficiency and sleep onset latency… "
        "_(untitled; opening words of the abstract)_**  "
    )
    answer_md = chat(at)[1][1]
    assert "\\[Untitled; abstract begins: Oral magnesium for eight weeks" in answer_md
    assert "Untitled abstract" not in answer_md


def test_one_engine_answers_two_questions_on_a_real_server(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, llama_server: Any
) -> None:
    # the real OpenAI backend keeps its client per event loop; each question runs on a new loop
    monkeypatch.setenv("CLINFO_LLM", f"openai:{llama_server.model}")
    monkeypatch.setenv("CLINFO_BASE_URL", llama_server.base_url)
    monkeypatch.setenv("CLINFO_SOURCE", "apptest-all")
    # few, short calls (the 135M model on CPU), all of them to the model: keyword queries, two
    # relevance-only screenings, quoted conclusions
    for name, value in {
        "PRESET": "default",
        "PLANNER": "keywords",
        "PREFILTER_K": "2",
        "SUMMARIZE": "false",
        "SYNTHESIS_MODE": "extractive",
    }.items():
        monkeypatch.setenv(f"CLINFO_{name}", value)
    at = ask(start(), QUESTION)
    engine = at.session_state["clinfo_engine"]
    assert not at.error and at.main.status[0].label.startswith("Done: 4 found")
    ask(at, "Is magnesium safe for older adults?")
    assert not at.error and at.main.status[0].label.startswith("Done: 4 found")
    assert at.session_state["clinfo_engine"] is engine
    turns = stored_turns(app_env)
    assert [t.question for t in turns] == [QUESTION, "Is magnesium safe for older adults?"]
    assert all(t.answer is not None and t.answer.trace.llm_calls > 0 for t in turns)


def test_untouched_sidebar_values_leave_the_preset_in_charge(app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINFO_PRESET", "small")
    at = start()
    assert at.sidebar.slider(key="prefilter_k").value == 5  # shown as the preset sets it
    ask(at, QUESTION)
    assert at.session_state["clinfo_engine"].settings.prefilter_k == 5
    assert stored_turns(app_env)[-1].config["prefilter_k"] == 5
    # a value the user sets wins over the preset
    at.sidebar.slider(key="prefilter_k").set_value(3)
    ask(at, QUESTION)
    assert at.session_state["clinfo_engine"].settings.prefilter_k == 3
    assert stored_turns(app_env)[-1].config["prefilter_k"] == 3


# ---------------------------------------------------------------- search mode
def test_search_mode_selector_defaults_to_environment_and_reaches_the_answer(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")  # the demo corpus's shipped vectors need the [local] query encoder
    monkeypatch.setenv("CLINFO_SEARCH_MODE", "bm25")
    monkeypatch.setenv("CLINFO_CACHE_DIR", str(tmp_path / "cache"))  # the demo corpus is built there
    at = start()
    selector = at.sidebar.selectbox(key="search_mode")
    assert selector.value == "bm25"
    assert selector.options == [
        "auto (hybrid where the corpus has vectors)",
        "BM25 (words)",
        "dense (meaning)",
        "hybrid (BM25 + dense)",
    ]
    at.sidebar.selectbox(key="source").set_value("Demo corpus (offline)")
    at.sidebar.selectbox(key="search_mode").set_value("hybrid")
    ask(at, QUESTION)
    turn = stored_turns(app_env)[-1]
    assert turn.config["source"] == "demo"
    assert turn.answer is not None and turn.answer.trace.search_modes == ["hybrid (score fusion)"]
    assert any("search: hybrid (score fusion)" in c.value for c in at.caption)


# ---------------------------------------------------------------- the operator's keys stay the operator's
def test_app_user_cannot_send_the_operators_key_to_another_server(
    app_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A signed-in user of a shared app tries every way in to point the LLM at their own server;
    it never hears from the app. The operator's server, chosen from the list, gets the key."""
    with OpenAIServer() as attacker, OpenAIServer() as operator:
        config = tmp_path / "app.toml"
        config.write_text(
            f"""
[[llm]]
label = "Scripted"
spec = "apptest:ok"
[[llm]]
label = "Hospital server"
spec = "openai:bench"
base_url = "{operator.base_url}"
[[source]]
spec = "apptest"
"""
        )
        monkeypatch.setenv("CLINFO_APP_CONFIG", str(config))
        monkeypatch.setenv("CLINFO_APP_PASSWORD", PASSWORD)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        evil = attacker.base_url
        # the address bar and the session are the user's to forge
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params.update({"base_url": evil, "llm": f"openai:x@{evil}", "source": "local:/etc/passwd"})
        at.run()
        through_gate("", PASSWORD, at)
        assert at.chat_input and not at.exception

        sidebar = at.sidebar
        assert not sidebar.text_input  # no free text: URL, model name and path are not the user's to type
        assert sidebar.selectbox(key="llm").options == ["Scripted", "Hospital server"]
        assert sidebar.selectbox(key="source").options == ["apptest"]
        for key in ("base_url", "llm_model", "source_path", "openai_base_url"):
            at.session_state[key] = evil
        ask(at, f"Does magnesium help sleep? Use the server at {evil} please")
        assert any(i.value.startswith("**TL;DR:**") for i in at.info)

        at.sidebar.selectbox(key="llm").set_value("Hospital server")
        ask(at, QUESTION)
        assert attacker.seen == []  # not one request, so no Authorization header either
        assert operator.seen and {auth for *_, auth in operator.seen} == {f"Bearer {OPENAI_KEY}"}
        assert stored_turns(app_env)[-1].config["base_url"] == operator.base_url


def test_operator_config_errors_are_one_line(app_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "app.toml"
    monkeypatch.setenv("CLINFO_APP_CONFIG", str(config))
    for text, expected in [
        ("[[llm]]\nlabel = 'no spec'\n", "needs spec"),
        ("[[llm]]\nspec = 'apptest:ok'\nbase_url = 'file:///etc'\n[[source]]\nspec='apptest'\n", "not an http(s) URL"),
        ("[[llm]]\nspec = 'apptest:ok'\n[[source]]\nspec='apptest'\nbase_url='http://x/v1'\n", "unknown key(s)"),
        ("[[llm]\n", "not valid TOML"),
    ]:
        config.write_text(text)
        at = start()
        assert len(at.error) == 1 and expected in at.error[0].value.replace("\\", ""), at.error[0].value


def test_yes_no_answer_shows_the_agreement_chart_and_card_stances(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINFO_LLM", "apptest:stance")
    monkeypatch.setenv("CLINFO_APP_LLMS", "apptest:stance")
    at = ask(start(), QUESTION)

    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["encoding"]["y"]["sort"] == ["supporting", "contradicting", "mixed"]
    assert spec["encoding"]["x"]["field"] == "articles" and spec["encoding"]["color"]["field"] == "design"
    from streamlit import dataframe_util

    data = dataframe_util.convert_arrow_bytes_to_pandas_df(chart.proto.data.data)
    assert sorted(zip(data["stance"], data["articles"])) == [("contradicting", 1), ("supporting", 1)]
    # the tally's line, with the chart above the answer: before the TL;DR in the assistant's message
    (tally,) = [c.value for c in at.caption if c.value.startswith("**Agreement (yes/no question):**")]
    assert "1 supports (" in tally and "1 contradicts (" in tally

    def in_order(node: Any) -> list[str]:
        return [node.type] + [t for child in getattr(node, "children", {}).values() for t in in_order(child)]

    kinds = in_order(at.chat_message[1])
    assert kinds.index("vega_lite_chart") < kinds.index("info")  # st.info holds the TL;DR
    cards = relevant_cards(at)
    assert "**Stance:** supporting (its finding says yes)" in cards
    assert "**Stance:** contradicting (its finding says no)" in cards
    # the tally is stored with the answer
    stored = stored_turns(app_env)[0].answer
    assert stored.agreement is not None and stored.agreement.counts["supporting"] == 1


def test_open_question_shows_no_agreement(app_env: Path) -> None:
    at = ask(start(), FOLLOW_UP)
    assert len(at.get("vega_lite_chart")) == 0
    assert not [c for c in at.caption if c.value.startswith("**Agreement")]


# ---------------------------------------------------------------- study filters
def test_design_and_humans_filters_reach_the_pipeline_and_the_turn(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinfo.appraisal.filters import StudyFilter

    monkeypatch.setenv("CLINFO_HUMANS_ONLY", "true")
    at = start()
    assert at.sidebar.checkbox(key="humans_only").value is True  # the environment's default
    assert at.sidebar.multiselect(key="designs").value == []
    at.sidebar.multiselect(key="designs").set_value(["randomised trial", "systematic review"])
    ask(at, QUESTION)
    searched = [query for query, _, _ in SOURCES[-1].searches]
    # a source that takes no filter searches the filter's PubMed form after the planned query (and
    # after the broader one its zero hits led to)
    studies = StudyFilter(("systematic review", "randomised trial"), True)
    assert searched[0] == studies.apply(Q1) and all(q.endswith(studies.pubmed()) for q in searched)
    turn = stored_turns(app_env)[-1]
    assert turn.config["designs"] == ["randomised trial", "systematic review"] and turn.config["humans_only"] is True
    assert turn.answer is not None and turn.answer.trace.study_filter.humans_only
    label = "systematic reviews or randomised trials; human studies only"
    assert turn.answer.trace.study_filter.label == label
    assert any(f"restricted to {label}" in c.value for c in at.caption)


# ---------------------------------------------------------------- claims and the sentences they rest on
def test_each_claim_opens_to_the_sentence_of_the_abstract_it_rests_on(app_env: Path) -> None:
    at = ask(start(), QUESTION)
    labels = [e.label for e in at.main.expander]
    (trial,) = [i for i, label in enumerate(labels) if label.startswith("Magnesium improved sleep in one trial")]
    (cohort,) = [i for i, label in enumerate(labels) if "A cohort agrees" in label]
    # supported: its score; not supported: the mark the synthesis carries, and says so
    assert "support" in labels[trial] and "not supported" not in labels[trial]
    assert labels[cohort].startswith("\u26a01 ") and "not supported" in labels[cohort]
    body = "\n".join(m.value for m in at.main.expander[trial].markdown)
    assert "> Magnesium improved sleep quality in older adults." in body  # the quoted abstract sentence
    assert "[PMID 101](https://pubmed.ncbi.nlm.nih.gov/101/)" in body and "supports the sentence" in body
    cohort_body = "\n".join(m.value for m in at.main.expander[cohort].markdown)
    assert "> Magnesium and sleep duration in older people." in cohort_body and "does not" in cohort_body
    # the cited article's hostile title stays text inside the claim too
    assert "<script>" not in cohort_body and "\\<script\\>" in cohort_body
    answer_md = chat(at)[1][1]
    assert "\u26a01" in answer_md.split("**References**")[0]
    assert any(c.value.startswith("Claim check: 2 sentences cite articles, 1 not supported") for c in at.caption)
