"""The Streamlit page: access, conversations, sidebar settings, the chat, live progress, answers, exports.

Every piece of outside text (titles, abstracts, LLM output, error messages from servers) goes
through :mod:`clinfo.app.view`'s escaping before a Markdown-rendering element; nothing here
uses ``unsafe_allow_html``. Errors become one ``st.error`` line, never a traceback.

Each browser session (a tab) has its own conversation and its own engine (one ``ClinfoAI``,
rebuilt only when the run settings change); :mod:`clinfo.app.history` decides which earlier
conversations a viewer may reopen. Access: Streamlit's own auth when ``[auth]`` is configured
in secrets.toml, else accounts from the operator's config and/or a shared password from
``$CLINFO_APP_PASSWORD`` (anonymous entry only) when set, else open (see :func:`access`).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import secrets as _secrets
from typing import TYPE_CHECKING, Any

import streamlit as st

from clinfo.app import export, view
from clinfo.app.history import Conversation, HistoryStore, Turn, Viewer, found_articles, open_history
from clinfo.app.worker import FOLLOWUP_LABELS, BackgroundQuestion, Engine, error_message, settings_key, warm_up
from clinfo.appraisal.design import DESIGNS
from clinfo.errors import ClinfoError
from clinfo.redact import key_status, secret_values
from clinfo.render import (
    DISCLAIMER,
    linked_text,
    marked_synthesis,
    md_escape,
    references_markdown,
    study_filter_line,
)

if TYPE_CHECKING:
    from clinfo.models import Answer
    from clinfo.pipeline import Event
    from clinfo.settings import Settings

SEARCH_MODE_LABELS = {
    "auto": "auto (hybrid where the corpus has vectors)",
    "bm25": "BM25 (words)",
    "dense": "dense (meaning)",
    "hybrid": "hybrid (BM25 + dense)",
}
ENV_PASSWORD = "CLINFO_APP_PASSWORD"
CONVERSATIONS_SHOWN = 30
# session_state keys (none is a widget key, so the browser cannot set them)
_SESSION = "clinfo_session"  # this browser session's random id
_CONVERSATION = "clinfo_conversation"  # link token of the open conversation; None: a new one
_OPENED = "clinfo_opened"  # ids of conversations this session opened by their link
_ENGINE = "clinfo_engine"
_GATE = "clinfo_gate_name"  # present once the password was given: the name entered ("" for none)
_LINK = "c"  # query parameter with the open conversation's token


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
    viewer = access()
    if viewer is None:  # the gate is showing; nothing else is
        return
    st.info(DISCLAIMER, icon="⚕️")
    warm_up()  # the pipeline loads while the first question is typed
    base = load_settings()  # a bad CLINFO_* value stops here, as one line
    secrets = secret_values(base)
    store = open_history(base, secrets)  # database_url, else CLINFO_APP_DB, else the cache dir's file
    conversation = open_conversation(store, viewer)
    conversations_box = st.sidebar.container()  # filled last, so it lists a conversation just started
    choices = sidebar(base)

    turns = store.turns(conversation.id) if conversation else []
    for i, turn in enumerate(turns):
        show_turn(turn, latest=i == len(turns) - 1)

    question = st.chat_input("Ask a clinical question")
    if question:
        conversation = ask(question, base, choices, store, viewer, conversation, turns, secrets)
    with conversations_box:
        conversation_controls(store, viewer, conversation)


# ---------------------------------------------------------------- who is looking
def access() -> Viewer | None:
    """The viewer, or None while a sign-in or password gate is shown instead of the page.

    Identities: Streamlit's OIDC sign-in (keyed by issuer and subject, the pair the provider
    guarantees unique and stable), or an account from the operator's config (name + password,
    checked against its scrypt hash). The shared password admits anonymous visitors only."""
    from clinfo.app.accounts import load_accounts

    session = st.session_state.setdefault(_SESSION, _secrets.token_hex(16))
    try:
        user = st.user.to_dict()
    except Exception:  # no script context or an auth setup error: treat as no auth
        user = {}
    if "is_logged_in" in user:  # Streamlit reports it only when [auth] is configured
        if not user["is_logged_in"]:
            st.write("Sign in to use clinfo.")
            st.button("Sign in", key="login", on_click=_login)
            problem = st.session_state.pop("login_problem", None)
            if problem:
                st.error(md_escape(problem))
            return None
        st.sidebar.button("Sign out", key="logout", on_click=st.logout)
        subject, issuer = user.get("sub"), user.get("iss")
        if not subject:  # without a subject there is no stable identity: anonymous, said plainly
            st.sidebar.caption("Your sign-in gave no subject identifier: conversations are kept for this tab only.")
            return Viewer(session=session)
        name = str(user.get("email") or user.get("name") or subject)
        return Viewer(session=session, user=user_key("oidc", f"{issuer or ''}|{subject}"), name=name)

    accounts = load_accounts()
    password = os.environ.get(ENV_PASSWORD, "")
    if not password and not accounts:
        return Viewer(session=session)
    if _GATE not in st.session_state:
        password_gate(password, accounts, session)
        return None
    name = st.session_state[_GATE]
    st.sidebar.button("Leave", key="leave", on_click=_leave)
    return Viewer(session=session, user=user_key("account", name) if name else None, name=name or None)


def _login() -> None:
    # a callback runs outside main()'s guard: a misconfigured [auth] (or no Authlib) must read
    # as one line, not a traceback
    try:
        st.login()
    except Exception as exc:
        st.session_state["login_problem"] = error_message(exc, secret_values())


def user_key(kind: str, who: str) -> str:
    """``oidc:<issuer>|<subject>`` / ``account:ann``: kinds kept apart, so an account name never
    matches a signed-in identity."""
    return f"{kind}:{' '.join(who.split()) if kind == 'oidc' else ' '.join(who.split()).casefold()}"


def shown_user(viewer: Viewer) -> str | None:
    return viewer.name


def password_gate(password: str, accounts: dict[str, str], session: str) -> None:
    from clinfo.app.accounts import THROTTLE, normal_name, verify_password

    # a form: nothing is sent until "Enter"; clear_on_submit empties the password field after
    with st.form("gate", clear_on_submit=True):
        if accounts:
            hint = "your account" + (" (empty: enter anonymously with the shared password)" if password else "")
            name = st.text_input(f"User name: {hint}", key="gate_name")
        else:
            name = ""
        given = st.text_input("Password", type="password", key="gate_password")
        entered = st.form_submit_button("Enter")
    if not entered:
        return
    name = normal_name(name)
    keys = [("session", session), ("all",)] + ([("name", name)] if name else [])
    wait = THROTTLE.wait(*keys)
    if wait > 0:  # checked before the password, so a locked key learns nothing from a guess
        st.error(f"Too many failed attempts: try again in {int(wait) + 1} s.")
        return
    if name:
        stored = accounts.get(name)
        ok = verify_password(given, stored) if stored else _verify_nothing(given)
    else:
        ok = bool(password) and hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8"))
    if not ok:
        THROTTLE.failed(*keys)
        st.error("Wrong user name or password." if accounts else "Wrong password.")
        return
    THROTTLE.succeeded(*keys)
    st.session_state[_GATE] = name
    st.rerun()


def _verify_nothing(given: str) -> bool:
    # an unknown name costs the same scrypt work as a known one: timing does not list accounts
    from clinfo.app.accounts import hash_password

    hash_password(given)
    return False


def _leave() -> None:
    # a new session id too: the next person at this tab must not see the anonymous chats of this one
    for key in (_GATE, _CONVERSATION, _OPENED, _ENGINE, _SESSION):
        st.session_state.pop(key, None)
    st.query_params.pop(_LINK, None)


# ---------------------------------------------------------------- conversations
def open_conversation(store: HistoryStore, viewer: Viewer) -> Conversation | None:
    """This session's open conversation; on a session's first run, the one its address names."""
    if _CONVERSATION not in st.session_state:
        st.session_state[_CONVERSATION] = st.query_params.get(_LINK) or None
    token = st.session_state[_CONVERSATION]
    conversation = store.conversation(viewer, token) if token else None
    if conversation is None:
        if token:  # deleted, or not this viewer's: start a new one and say so
            st.warning("That conversation is not available here; this is a new one.")
        _select(None)
    else:
        _remember(conversation)
    return conversation


def _remember(conversation: Conversation) -> None:
    st.session_state[_CONVERSATION] = conversation.token
    opened = st.session_state.setdefault(_OPENED, [])
    if conversation.id not in opened:
        opened.append(conversation.id)
    st.query_params[_LINK] = conversation.token


def _select(token: str | None) -> None:
    st.session_state[_CONVERSATION] = token
    if token:
        st.query_params[_LINK] = token
    else:
        st.query_params.pop(_LINK, None)


def conversation_controls(store: HistoryStore, viewer: Viewer, current: Conversation | None) -> None:
    st.header("Conversations")
    st.button(
        "New conversation",
        key="new_conversation",
        on_click=_select,
        args=(None,),
        disabled=current is None,
        icon=":material/add:",
    )
    opened = st.session_state.get(_OPENED, [])
    conversations = store.conversations(viewer, opened)
    for c in conversations[:CONVERSATIONS_SHOWN]:
        is_current = current is not None and c.id == current.id
        st.button(
            f"{md_escape(c.title or 'untitled', one_line=True)} · {c.turns}",
            key=f"open-{c.id}",
            on_click=_select,
            args=(c.token,),
            type="primary" if is_current else "secondary",  # the open one stands out
            help=f"started {c.created[:16].replace('T', ' ')} UTC,"
            f" {c.turns} {'question' if c.turns == 1 else 'questions'}",
        )
    if len(conversations) > CONVERSATIONS_SHOWN:
        st.caption(f"and {len(conversations) - CONVERSATIONS_SHOWN} older ones")
    who = shown_user(viewer)
    if who:
        st.caption(md_escape(f"Signed in as {who}: your conversations are kept for your next visit."))
    else:
        st.caption(
            "Anonymous: this list holds the conversations of this browser tab; a conversation's address reopens it."
            " Clearing deletes those this tab started and takes the others (opened by their address, after a reload"
            " too) off the list."
        )
    st.button(
        "Clear my history",
        key="clear_history",
        on_click=_clear,
        args=(store, viewer),
        disabled=not conversations,
    )
    problem = st.session_state.pop("history_problem", None)
    if problem:
        st.error(md_escape(problem))


def _clear(store: HistoryStore, viewer: Viewer) -> None:
    # callbacks run before the script, outside main()'s guard: a failure here must not surface
    # as a traceback, so it is carried into the run as a message
    try:
        store.clear(viewer)
    except ClinfoError as exc:
        st.session_state["history_problem"] = error_message(exc, store.secrets)
        return
    st.session_state[_OPENED] = []
    _select(None)


# ---------------------------------------------------------------- sidebar
def shown_defaults(base: Settings) -> Settings:
    """What the sidebar starts from: the environment's settings with their preset applied (the
    embedded model's ``small`` preset screens 5 articles, not 16), as the CLI would run them."""
    from clinfo.settings import Settings

    return Settings.resolve(base)


def sidebar(base: Settings) -> dict[str, Any]:
    """The run's configuration, with the same defaults as the CLI (settings, environment, preset).

    LLMs and sources are chosen from the operator's lists (:mod:`clinfo.app.allowed`): nothing a
    user types becomes a URL, a model path or a file path on the server."""
    from clinfo.app.allowed import load_allowed

    base = shown_defaults(base)
    allowed = load_allowed(base)  # a bad operator file stops here, as one line
    sb = st.sidebar
    sb.header("Settings")

    llm_labels = [c.label for c in allowed.llms]
    llm_default = next((i for i, c in enumerate(allowed.llms) if c.spec == base.llm), 0)
    llm_choice = allowed.llm(
        sb.selectbox("LLM", llm_labels, index=llm_default, key="llm", help="the models this app's operator allows")
    )
    source_labels = [c.label for c in allowed.sources]
    source_default = next((i for i, c in enumerate(allowed.sources) if c.spec == base.source), 0)
    source_choice = allowed.source(sb.selectbox("Literature source", source_labels, index=source_default, key="source"))
    llm, source = llm_choice.spec, source_choice.spec
    # the operator's URL for this model, else the environment's (what the CLI would use)
    base_url = llm_choice.base_url or base.base_url
    modes = list(SEARCH_MODE_LABELS)
    search_mode = sb.selectbox(
        "Search mode",
        modes,
        index=modes.index(base.search_mode),
        format_func=SEARCH_MODE_LABELS.get,
        key="search_mode",
        help="how a local corpus ranks (CLINFO_SEARCH_MODE); PubMed ranks by itself: auto or BM25 there",
    )

    end = sb.date_input(
        "Published on or before",
        value=base.restriction_date,
        key="restriction_date",
        format="YYYY-MM-DD",
        help="empty: no limit (CLINFO_RESTRICTION_DATE)",
    )
    years = sb.number_input(
        "Only the last N years (0 = all)",
        min_value=0,
        max_value=200,
        value=int(base.date_window_years or 0),
        step=1,
        key="date_window_years",
    )
    designs = sb.multiselect(
        "Only these study designs",
        list(DESIGNS),
        default=list(base.designs or []),
        key="designs",
        placeholder="every design",
        help="decided by code from PubMed's publication types and MeSH, or the abstract where NLM has not indexed"
        " the record; PubMed is searched with publication-type and text-word filters (CLINFO_DESIGNS)",
    )
    humans_only = sb.checkbox(
        "Human studies only",
        value=base.humans_only,
        key="humans_only",
        help="leaves out records MeSH tags as animal-only, and animal or in-vitro designs (CLINFO_HUMANS_ONLY)",
    )
    prefilter_k = sb.slider(
        "Articles screened per question",
        min_value=1,
        max_value=max(50, base.prefilter_k),
        value=base.prefilter_k,
        key="prefilter_k",
        help="the best N retrieved are judged for relevance, by the LLM or by retrieval scores (CLINFO_PREFILTER_K)",
    )
    results_per_query = sb.number_input(
        "Results per PubMed query",
        min_value=1,
        max_value=500,
        value=base.results_per_query,
        step=1,
        key="results_per_query",
    )
    followups = sb.radio(
        "Follow-up questions",
        list(FOLLOWUP_LABELS),
        format_func=FOLLOWUP_LABELS.get,
        key="followups",
        help="the articles already found are screened again against the new question",
    )
    for line in key_status(base):
        sb.caption(line)

    if years and end is None:  # "the last N years" with no end date means up to today
        end = dt.date.today()
    return {
        "llm": llm,
        "source": source,
        "search_mode": search_mode,
        "base_url": base_url,
        "restriction_date": end if isinstance(end, dt.date) else None,
        "date_window_years": int(years) or None,
        "designs": list(designs) or None,
        "humans_only": bool(humans_only),
        "prefilter_k": int(prefilter_k),
        "results_per_query": int(results_per_query),
        "followups": followups,
    }


def run_settings(base: Settings, choices: dict[str, Any]) -> Settings:
    # only what the user changed counts as set: the rest stays free for the chosen backend's
    # preset (switching to the embedded model then screens 5 articles, as the CLI does)
    from clinfo.settings import Settings

    shown = shown_defaults(base)
    start = {**{k: getattr(shown, k, None) for k in choices}, "base_url": shown.base_url}
    fields = {k: v for k, v in choices.items() if k != "followups" and v != start.get(k)}
    settings = Settings.resolve(base, **fields)
    # resolve skips None; here None means the user cleared what the environment set
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


def show_agreement(answer: Answer) -> None:
    """A yes/no question's tally above the answer: its line, and a small chart of the articles that
    support, contradict or are mixed, by design (none when stances were not judged)."""
    from clinfo.render import AGREEMENT_LABEL

    if answer.agreement is None:
        return
    spec = view.agreement_chart(answer.agreement)
    if spec is not None:
        st.vega_lite_chart(spec=spec)
    st.caption(f"**{AGREEMENT_LABEL}:** {md_escape(answer.agreement.summary, one_line=True)}")


def show_answer(answer: Answer, key: str, expanded: bool) -> None:
    from clinfo.render import trace_line

    show_agreement(answer)
    if answer.no_evidence:
        st.warning(md_escape(answer.synthesis))
    else:
        if answer.tldr:
            st.info(f"**TL;DR:** {md_escape(answer.tldr, one_line=True)}")
        st.markdown(linked_text(marked_synthesis(answer), answer.references))
        show_claims(answer)
        if answer.references:
            st.markdown("**References**  \n" + references_markdown(answer, escape=True))
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
    if answer.set_aside:
        with st.expander(f"{len(answer.set_aside)} set aside (not evidence: retracted, notices, letters...)"):
            for item in answer.set_aside:
                st.markdown(view.set_aside_md(item))
    if answer.queries or answer.trace.warnings:
        with st.expander("Searches and warnings"):
            if answer.trace.study_filter is not None:
                st.caption(study_filter_line(answer, escape=True))
            for q in answer.queries:
                st.code(q.query, language=None)
                st.caption(md_escape(f"{q.hits} hits" + (f" · {q.note}" if q.note else "")))
            for warning in answer.trace.warnings:
                st.caption(md_escape(warning))
    export_buttons(answer, key)


def show_claims(answer: Answer) -> None:
    """Each sentence that cites an article opens to the sentence of the cited abstract it rests on;
    those no cited abstract supports carry the synthesis's ⚠k mark."""
    if not answer.claims:
        return
    st.caption(view.claims_caption(answer))
    unsupported = 0
    for check in answer.claims:
        mark = None
        if not check.supported:
            unsupported += 1
            mark = unsupported
        icon = ":material/check_circle:" if check.supported else ":material/warning:"
        with st.expander(view.claim_label(check, mark), icon=icon):
            st.markdown(view.claim_md(check, answer.references))


def export_buttons(answer: Answer, key: str) -> None:
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
def engine_for(settings: Settings) -> Engine:
    """This session's engine, rebuilt only when the run settings changed."""
    held = st.session_state.get(_ENGINE)
    if held is None or held.key != settings_key(settings):
        held = Engine(settings)  # an unknown backend or a missing key fails here, as one line
        st.session_state[_ENGINE] = held
    return held


def ask(
    question: str,
    base: Settings,
    choices: dict[str, Any],
    store: HistoryStore,
    viewer: Viewer,
    conversation: Conversation | None,
    turns: list[Turn],
    secrets: list[str],
) -> Conversation:
    """Runs the question, shows and stores its answer; returns the conversation it went into."""
    if conversation is None:
        conversation = store.new_conversation(viewer, question)
        _remember(conversation)
    with st.chat_message("user"):
        st.markdown(md_escape(question))
    with st.chat_message("assistant"):
        try:
            engine = engine_for(run_settings(base, choices))
        except ClinfoError as exc:
            fail(st, question, error_message(exc, secrets), store, conversation, choices)
            return conversation
        settings = engine.settings
        status = st.status("Planning PubMed queries…", expanded=True)
        body = st.empty()
        run = BackgroundQuestion(
            engine, question, known=found_articles(turns), followups=choices["followups"], secrets=secrets
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
            fail(body, question, error or "no answer", store, conversation, choices)
            return conversation
        relevant = len(answer.article_summaries)
        cited = sum(r.cited for r in answer.references)
        status.update(
            label=f"Done: {answer.trace.articles_found} found, {relevant} relevant, {cited} cited",
            state="complete",
            expanded=False,
        )
        config = {**choices, "llm": settings.llm, "source": settings.source, "prefilter_k": settings.prefilter_k}
        with body.container():
            # shown, then stored: a history that fails must not hide an answer already paid for
            show_answer(answer, key=f"new-{conversation.id}-{len(turns)}", expanded=True)
            save_turn(st, store, conversation, question, answer=answer, config=config)
    return conversation


def fail(
    where: Any, question: str, message: str, store: HistoryStore, conversation: Conversation, choices: dict[str, Any]
) -> None:
    where.error(md_escape(message))
    save_turn(st, store, conversation, question, error=message, config=choices)  # st: an st.empty holds one element


def save_turn(where: Any, store: HistoryStore, conversation: Conversation, question: str, **turn: Any) -> None:
    """Stores a turn already shown; a history failure is one line under it, never in its place."""
    try:
        store.add(conversation.id, question, **turn)
    except Exception as exc:  # the database is locked, full, unreachable: the answer stays on screen
        where.warning(md_escape(f"Not saved to your history: {error_message(exc, store.secrets)}"))


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

    def event(self, event: Event) -> None:
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
