"""The Streamlit page: sidebar settings, the chat with its history, live progress, answers, exports.

Every piece of outside text (titles, abstracts, LLM output, error messages from servers) goes
through :mod:`clinfo.app.view`'s escaping before a Markdown-rendering element; nothing here
uses ``unsafe_allow_html``. Errors become one ``st.error`` line, never a traceback.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import streamlit as st

from clinfo.app import export, view
from clinfo.app.history import HistoryStore, Turn, default_db_path, found_articles
from clinfo.app.redact import key_status, secret_values
from clinfo.app.runner import FOLLOWUP_LABELS, QuestionRun, error_message
from clinfo.app.view import md_escape
from clinfo.errors import ClinfoError

if TYPE_CHECKING:
    from clinfo.models import Answer
    from clinfo.pipeline import Event
    from clinfo.settings import Settings

SOURCE_LABELS = {"pubmed": "PubMed (live, E-utilities)", "demo": "Demo corpus (offline)", "local": "Local index file"}
# backends that cannot run without a model name
_NEEDS_MODEL = {"openai", "vllm", "vllm-offline"}


def main() -> None:
    st.set_page_config(page_title="clinfo", page_icon="🩺", layout="centered")
    try:
        _page()
    except Exception as exc:  # Streamlit's stop/rerun signals are BaseExceptions and pass through
        st.error(md_escape(error_message(exc, secret_values())))


def _page() -> None:
    from clinfo.settings import load_settings

    st.title("clinfo")
    st.caption("Cited answers to clinical questions from the biomedical literature.")
    st.info(view.DISCLAIMER, icon="⚕️")
    base = load_settings()  # a bad CLINFO_* value stops here, as one line
    secrets = secret_values(base)
    store = HistoryStore(default_db_path(base), secrets)
    choices = sidebar(base)
    history_box = st.sidebar.container()

    turns = store.turns()
    for i, turn in enumerate(turns):
        show_turn(turn, latest=i == len(turns) - 1)

    question = st.chat_input("Ask a clinical question")
    if question:
        ask(question, base, choices, store, turns, secrets)
    with history_box:  # filled last, so the count includes the question just answered
        history_controls(store)


# ---------------------------------------------------------------- sidebar
def sidebar(base: "Settings") -> dict[str, Any]:
    """The run's configuration, with the same defaults as the CLI (settings and environment)."""
    from clinfo.llm.registry import backends, parse_spec

    sb = st.sidebar
    sb.header("Settings")

    try:
        prefix, model = parse_spec(base.llm)
    except ClinfoError:
        prefix, model = "openai", ""
    options = backends()
    if prefix not in options:
        options.append(prefix)
    backend = sb.selectbox("LLM backend", options, index=options.index(prefix), key="llm_backend", help="CLINFO_LLM sets the default")
    model = sb.text_input("Model", value=model, key="llm_model", help="e.g. gpt-4o-mini; empty for a backend's default model")
    base_url = sb.text_input(
        "Base URL", value=base.base_url or base.openai_base_url or "", key="base_url",
        placeholder="http://127.0.0.1:8080/v1", help="OpenAI-compatible server (CLINFO_BASE_URL / OPENAI_BASE_URL)",
    )
    model = model.strip()
    llm = f"{backend}:{model}" if model else (f"{backend}:" if backend in _NEEDS_MODEL else backend)

    kinds = list(SOURCE_LABELS)
    labels = dict(SOURCE_LABELS)
    path = ""
    if base.source in ("pubmed", "demo"):
        kind = base.source
    elif base.source.startswith("local:"):
        kind, path = "local", base.source[6:]
    else:  # a plug-in source named by CLINFO_SOURCE
        kind = base.source
        kinds.append(kind)
        labels[kind] = f"{kind} (CLINFO_SOURCE)"
    kind = sb.selectbox("Literature source", kinds, index=kinds.index(kind), format_func=labels.get, key="source_kind")
    if kind == "local":
        path = sb.text_input("Local index path", value=path, key="source_path", placeholder="/path/to/corpus.db")
        source = f"local:{path.strip()}"
    else:
        source = kind

    end = sb.date_input(
        "Published on or before", value=base.restriction_date, key="restriction_date", format="YYYY-MM-DD",
        help="empty: no limit (CLINFO_RESTRICTION_DATE)",
    )
    years = sb.number_input(
        "Only the last N years (0 = all)", min_value=0, max_value=200, value=int(base.date_window_years or 0), step=1,
        key="date_window_years",
    )
    prefilter_k = sb.slider(
        "Articles screened by the LLM", min_value=1, max_value=max(50, base.prefilter_k), value=base.prefilter_k,
        key="prefilter_k", help="the best N by BM25 are judged and summarised (CLINFO_PREFILTER_K)",
    )
    results_per_query = sb.number_input(
        "Results per PubMed query", min_value=1, max_value=500, value=base.results_per_query, step=1, key="results_per_query",
    )
    followups = sb.radio(
        "Follow-up questions", list(FOLLOWUP_LABELS), format_func=FOLLOWUP_LABELS.get, key="followups",
        help="the articles already found are screened again against the new question",
    )
    for line in key_status(base):
        sb.caption(line)

    if years and end is None:  # "the last N years" with no end date means up to today
        end = dt.date.today()
    return {
        "llm": llm,
        "source": source,
        "base_url": base_url.strip() or None,
        "restriction_date": end if isinstance(end, dt.date) else None,
        "date_window_years": int(years) or None,
        "prefilter_k": int(prefilter_k),
        "results_per_query": int(results_per_query),
        "followups": followups,
    }


def history_controls(store: HistoryStore) -> None:
    st.divider()
    count = len(store)
    st.caption(f"History: {count} {'question' if count == 1 else 'questions'}, kept in {md_escape(str(store.path))}")
    st.button("Clear history", key="clear_history", on_click=_clear, args=(store,), disabled=count == 0)
    problem = st.session_state.pop("history_problem", None)
    if problem:
        st.error(md_escape(problem))


def _clear(store: HistoryStore) -> None:
    # callbacks run before the script, outside main()'s guard: a failure here must not surface
    # as a traceback, so it is carried into the run as a message
    try:
        store.clear()
    except ClinfoError as exc:
        st.session_state["history_problem"] = error_message(exc, store.secrets)


def run_settings(base: "Settings", choices: dict[str, Any]) -> "Settings":
    fields = {k: v for k, v in choices.items() if k != "followups"}
    settings = base.with_overrides(**fields)
    # with_overrides skips None; here None means the user cleared what the environment set
    cleared = {k: None for k, v in fields.items() if v is None}
    return settings.model_copy(update=cleared) if cleared else settings


# ---------------------------------------------------------------- answers
def show_turn(turn: Turn, latest: bool) -> None:
    with st.chat_message("user"):
        st.markdown(md_escape(turn.question))
    with st.chat_message("assistant"):
        if turn.answer is None:
            st.error(md_escape(turn.error or "no answer"))
        else:
            show_answer(turn.answer, key=f"turn{turn.id}", expanded=latest)


def show_answer(answer: "Answer", key: str, expanded: bool) -> None:
    from clinfo.render import trace_line

    if answer.no_evidence:
        st.warning(md_escape(answer.synthesis))
    else:
        if answer.tldr:
            st.info(f"**TL;DR:** {md_escape(answer.tldr, one_line=True)}")
        st.markdown(view.linked_text(answer.synthesis, answer.references))
        if answer.references:
            st.markdown("**References**  \n" + view.references_md(answer))
    st.caption(md_escape(trace_line(answer)))

    numbers = {r.pmid: r.n for r in answer.references}
    if answer.article_summaries:
        n = len(answer.article_summaries)
        with st.expander(f"{n} relevant {'article' if n == 1 else 'articles'}", expanded=expanded):
            for summary in answer.article_summaries:
                with st.container(border=True):
                    st.markdown(view.card_md(summary, numbers.get(summary.pmid)))
    if answer.irrelevant_articles:
        n = len(answer.irrelevant_articles)
        with st.expander(f"{n} {'article' if n == 1 else 'articles'} judged not relevant"):
            for summary in answer.irrelevant_articles:
                st.markdown(view.irrelevant_md(summary))
    if answer.queries or answer.trace.warnings:
        with st.expander("Searches and warnings"):
            for q in answer.queries:
                st.code(q.query, language=None)
                st.caption(md_escape(f"{q.hits} hits" + (f" · {q.note}" if q.note else "")))
            for warning in answer.trace.warnings:
                st.caption(md_escape(warning))
    export_buttons(answer, key)


def export_buttons(answer: "Answer", key: str) -> None:
    columns = st.columns(len(export.FORMATS))
    for column, (fmt, (label, _ext, mime, make)) in zip(columns, export.FORMATS.items()):
        needs_refs = fmt in ("bibtex", "ris")
        column.download_button(
            label,
            data=make(answer),
            file_name=export.file_name(answer, fmt),
            mime=mime,
            key=f"{key}-{fmt}",
            on_click="ignore",  # a download must not rerun the script
            disabled=needs_refs and not answer.references,
            icon=":material/download:",
        )


# ---------------------------------------------------------------- a new question
def ask(question: str, base: "Settings", choices: dict[str, Any], store: HistoryStore, turns: list[Turn], secrets: list[str]) -> None:
    with st.chat_message("user"):
        st.markdown(md_escape(question))
    with st.chat_message("assistant"):
        try:
            settings = run_settings(base, choices)
        except ClinfoError as exc:
            fail(st, question, error_message(exc, secrets), store, choices)
            return
        status = st.status("Planning PubMed queries…", expanded=True)
        body = st.empty()
        run = QuestionRun(
            settings, question, known=found_articles(turns), followups=choices["followups"], secrets=secrets
        ).start()
        live = _Live(status, settings.source)
        answer: Answer | None = None
        error: str | None = None
        try:
            for batch in run.batches():
                for kind, payload in batch:
                    if kind == "event":
                        live.event(payload)
                    elif kind == "token":
                        live.text += payload
                    elif kind == "note":
                        status.caption(md_escape(payload))
                    elif kind == "answer":
                        answer = payload
                    elif kind == "error":
                        error = payload
                if live.text and answer is None and error is None:
                    body.markdown(md_escape(live.text) + " ▌")
        finally:
            run.cancel()  # a no-op when done; stops the worker when Streamlit stops this script
        if answer is None:
            status.update(label="Failed", state="error", expanded=False)
            fail(body, question, error or "no answer", store, choices)
            return
        relevant = len(answer.article_summaries)
        cited = sum(r.cited for r in answer.references)
        status.update(
            label=f"Done: {answer.trace.articles_found} found, {relevant} relevant, {cited} cited",
            state="complete",
            expanded=False,
        )
        turn_id = store.add(question, answer=answer, config={**choices, "llm": settings.llm, "source": settings.source})
        with body.container():
            show_answer(answer, key=f"turn{turn_id}", expanded=True)


def fail(where: Any, question: str, message: str, store: HistoryStore, choices: dict[str, Any]) -> None:
    where.error(md_escape(message))
    store.add(question, error=message, config=choices)


class _Live:
    """Writes the pipeline's progress into the status element (script thread only)."""

    def __init__(self, status: Any, source: str) -> None:
        self.status = status
        self.where = "PubMed" if source == "pubmed" else source.split(":", 1)[0]
        self.progress: Any = None
        self.text = ""

    def label(self, text: str) -> None:
        # expanded is repeated: an update without it lets the frontend collapse the status
        self.status.update(label=text, expanded=True)

    def event(self, event: "Event") -> None:
        s, data = self.status, event.data
        if event.stage == "plan":
            n = len(data.get("queries", []))
            s.markdown(f"**{n} PubMed {'query' if n == 1 else 'queries'} written**")
            for q in data.get("queries", []):
                s.code(q, language=None)
            self.label(f"Searching {self.where}…")
        elif event.stage == "search":
            s.markdown(f"**{md_escape(event.message)}**")
            self.label("Fetching records…")
        elif event.stage in ("fetch", "prefilter"):
            s.markdown(md_escape(event.message))
            if event.stage == "prefilter":
                self.label("Screening articles…")
                self.progress = s.progress(0.0, text="Screening…")
        elif event.stage == "screen" and "done" in data:
            total = max(int(data.get("total") or 1), 1)
            text = f"Screened {data['done']} of {total}"
            if self.progress is None:
                self.progress = s.progress(0.0, text=text)
            self.progress.progress(min(int(data["done"]) / total, 1.0), text=text)
        elif event.stage == "screen":
            s.markdown(f"**{md_escape(event.message)}**")
        elif event.stage == "synthesize":
            self.label("Writing the synthesis…")
