"""The app's conversation history, in a database, so a reload or a restart keeps the chat.

The file holds conversations, each with its turns. A turn stores the question, the Answer as
JSON (or the one-line error when the run failed) and the public part of the run's configuration.
Keys are never stored: settings go in through an allow-list, and every text is passed through
:func:`clinfo.redact.redact` first.

Who sees what is decided here, by :class:`Viewer`:

* a known user (signed in through Streamlit's auth, or named at the password gate) sees every
  conversation of that user, from any tab, across restarts;
* an anonymous viewer sees the conversations started in its own browser session, plus any it
  opened by its link (each conversation has an unguessable token, kept in the page's address,
  so a reload reopens it), plus the one conversation a version-1 file is migrated into (version 1
  had a single conversation that every tab shared, so nothing new is exposed).

The database is ``database_url`` when set (PostgreSQL: one history for several app hosts), else
the SQLite file ``$CLINFO_APP_DB``, else ``app_history.db`` under the cache directory
(:func:`open_history`). :class:`clinfo.store.Database` gives each operation its own transaction,
on either backend, with the same SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets as _secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.errors import ClinfoError
from clinfo.redact import redact
from clinfo.store import Database, StoreError, Transaction, configured_url
from clinfo.urls import scrub_url

if TYPE_CHECKING:
    from clinfo.models import Answer, Article
    from clinfo.settings import Settings

ENV_DB = "CLINFO_APP_DB"
SCHEMA_VERSION = 2
TITLE_CHARS = 80
# what a turn records about its configuration: enough to know how an answer was made, no secrets
PUBLIC_CONFIG = (
    "llm",
    "source",
    "search_mode",
    "base_url",
    "restriction_date",
    "date_window_years",
    "prefilter_k",
    "results_per_query",
    "num_queries",
    "designs",
    "humans_only",
    "followups",
)

# {id}: each backend's auto-numbered key (clinfo.store.Database.ddl); "user" is quoted, being
# a reserved word in PostgreSQL
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS conversations (
    id       {id},
    token    TEXT NOT NULL UNIQUE,
    "user"   TEXT,
    session  TEXT,
    created  TEXT NOT NULL,
    title    TEXT NOT NULL DEFAULT ''
)""",
    """CREATE TABLE IF NOT EXISTS turns (
    id              {id},
    conversation_id BIGINT NOT NULL REFERENCES conversations(id),
    created         TEXT NOT NULL,
    question        TEXT NOT NULL,
    answer_json     TEXT,
    error           TEXT,
    config_json     TEXT NOT NULL DEFAULT '{{}}'
)""",
    'CREATE INDEX IF NOT EXISTS conversations_owner ON conversations("user", session)',
    "CREATE INDEX IF NOT EXISTS turns_conversation ON turns(conversation_id, id)",
)


_PRAGMAS = ("secure_delete = ON",)


class HistoryError(ClinfoError):
    """The history database cannot be opened, read or written."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking: ``user`` when known (namespaced, e.g. ``auth:ann@x.org``), and the browser
    session's random id, which is all an anonymous viewer has."""

    session: str
    user: str | None = None
    name: str | None = None  # what the page shows ("Signed in as ..."); never used to match rows


@dataclass
class Conversation:
    id: int
    token: str
    user: str | None
    created: str
    title: str
    turns: int = 0


@dataclass
class Turn:
    id: int
    created: str
    question: str
    answer: Answer | None
    error: str | None
    config: dict[str, Any]


def default_db_path(settings: Settings) -> Path:
    override = os.environ.get(ENV_DB, "").strip()
    return Path(override).expanduser() if override else Path(settings.cache_dir) / "app_history.db"


def open_history(settings: Settings, secrets: Iterable[str] = ()) -> HistoryStore:
    """The history ``settings`` name: ``database_url`` when set, else :func:`default_db_path`."""
    return HistoryStore(configured_url(settings) or default_db_path(settings), secrets)


def public_config(values: dict[str, Any]) -> dict[str, Any]:
    out = {k: values[k] for k in PUBLIC_CONFIG if values.get(k) is not None}
    if out.get("base_url"):
        # a base URL can carry credentials (http://user:token@host); keep host and path only
        out["base_url"] = scrub_url(str(out["base_url"]), query=False)
    return {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in out.items()}


def title_of(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _visible(viewer: Viewer, opened: Iterable[int] = ()) -> tuple[str, list[Any]]:
    """The WHERE clause (on table ``c``) of the conversations ``viewer`` may list and open."""
    if viewer.user is not None:
        return "c.user = ?", [viewer.user]
    ids = sorted({int(i) for i in opened})
    extra = f" OR c.id IN ({', '.join('?' * len(ids))})" if ids else ""
    # session IS NULL: the conversation a version-1 file became (every tab shared it then)
    return f"(c.user IS NULL AND (c.session = ? OR c.session IS NULL{extra}))", [viewer.session, *ids]


class HistoryStore:
    """Conversations and turns in a SQLite file (a path, or ``sqlite:///...``) or a PostgreSQL
    database (``postgresql://...``)."""

    def __init__(self, path: Path | str | Database, secrets: Iterable[str] = ()) -> None:
        # "clear" must remove the text from a SQLite file, not only mark its pages free
        self.db = path if isinstance(path, Database) else Database(path, timeout=5.0, sqlite_pragmas=_PRAGMAS)
        self.path = self.db.path  # the SQLite file; None for PostgreSQL
        self.secrets = list(secrets)
        self._init()

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[Transaction]:
        """One transaction: committed on success, rolled back on error."""
        try:
            with self.db.transaction(write=write) as tx:
                yield tx
        except StoreError as exc:
            raise HistoryError(f"conversation history {exc.label}: {exc.detail}") from None

    def _init(self) -> None:
        if self.db.kind == "postgresql":
            try:
                self.db.ensure_schema("history", SCHEMA_VERSION, _SCHEMA)
            except StoreError as exc:
                raise HistoryError(f"conversation history {exc.label}: {exc.detail}") from None
            return
        with self._db() as conn:
            # the page makes a store on every rerun: a file already current costs one read, no lock
            if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
        # DDL and the v1 migration in one transaction under the write lock: several sessions may
        # open a v1 file at once, and a half-migrated file must never be left behind
        with self._db(write=True) as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"conversation history {self.db.label} was written by a newer clinfo (schema {version}); "
                    f"set {ENV_DB} to another file"
                )
            if version == 1:
                _migrate_v1(conn)
            for statement in _SCHEMA:
                conn.execute(self.db.ddl(statement))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else redact(text, self.secrets)

    # ---- conversations
    def new_conversation(self, viewer: Viewer, title: str) -> Conversation:
        token = _secrets.token_urlsafe(18)
        created = _now()
        clean_title = self._clean(title_of(title)) or ""
        with self._db() as conn:
            cid = int(
                conn.execute(
                    'INSERT INTO conversations (token, "user", session, created, title) VALUES (?, ?, ?, ?, ?)'
                    " RETURNING id",
                    (token, viewer.user, viewer.session, created, clean_title),
                ).fetchone()[0]
            )
        return Conversation(id=cid, token=token, user=viewer.user, created=created, title=clean_title)

    def conversations(self, viewer: Viewer, opened: Iterable[int] = ()) -> list[Conversation]:
        """What ``viewer`` may reopen, most recent first."""
        where, args = _visible(viewer, opened)
        with self._db() as conn:
            rows = conn.execute(
                "SELECT c.id, c.token, c.user, c.created, c.title, COUNT(t.id) FROM conversations c "
                f"LEFT JOIN turns t ON t.conversation_id = c.id WHERE {where} "
                "GROUP BY c.id ORDER BY COALESCE(MAX(t.id), 0) DESC, c.id DESC",
                args,
            ).fetchall()
        return [Conversation(*row[:5], turns=row[5]) for row in rows]

    def conversation(self, viewer: Viewer, token: str) -> Conversation | None:
        """The conversation with this link token, if ``viewer`` may open it: its own user's, or
        for an anonymous viewer any anonymous one (the token is the capability); None otherwise."""
        owner = "c.user = ?" if viewer.user is not None else "c.user IS NULL"
        args: list[Any] = [token] + ([viewer.user] if viewer.user is not None else [])
        with self._db() as conn:
            row = conn.execute(
                "SELECT c.id, c.token, c.user, c.created, c.title, "
                "(SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id) "
                f"FROM conversations c WHERE c.token = ? AND {owner}",
                args,
            ).fetchone()
        return None if row is None else Conversation(*row[:5], turns=row[5])

    def delete(self, conversation_ids: Iterable[int]) -> None:
        ids = [int(i) for i in conversation_ids]
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        with self._db() as conn:
            conn.execute(f"DELETE FROM turns WHERE conversation_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM conversations WHERE id IN ({marks})", ids)

    def clear(self, viewer: Viewer) -> None:
        """Delete the conversations ``viewer`` owns: a user's, or an anonymous session's own. Those
        it merely opened by link stay: they are someone else's."""
        if viewer.user is not None:
            where, args = '"user" = ?', [viewer.user]  # quoted: a bare user is CURRENT_USER in PostgreSQL
        else:
            where, args = '"user" IS NULL AND session = ?', [viewer.session]
        with self._db() as conn:
            ids = [row[0] for row in conn.execute(f"SELECT id FROM conversations WHERE {where}", args)]
        self.delete(ids)

    # ---- turns
    def add(
        self,
        conversation_id: int,
        question: str,
        answer: Answer | None = None,
        error: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> int:
        if (answer is None) == (error is None):
            raise ValueError("a turn has either an answer or an error")
        row = (
            conversation_id,
            _now(),
            self._clean(question),
            self._clean(answer.to_json(indent=None) if answer is not None else None),
            self._clean(error),
            self._clean(json.dumps(public_config(config or {}), sort_keys=True)),
        )
        with self._db() as conn:
            return int(
                conn.execute(
                    "INSERT INTO turns (conversation_id, created, question, answer_json, error, config_json) "
                    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    row,
                ).fetchone()[0]
            )

    def turns(self, conversation_id: int) -> list[Turn]:
        from clinfo.models import Answer

        with self._db() as conn:
            rows = conn.execute(
                "SELECT id, created, question, answer_json, error, config_json FROM turns "
                "WHERE conversation_id = ? ORDER BY id",
                (conversation_id,),
            ).fetchall()
        out = []
        for id_, created, question, answer_json, error, config_json in rows:
            answer = None
            if answer_json is not None:
                try:
                    answer = Answer.from_json(answer_json)
                except ValueError:  # written by an incompatible version: keep the turn, say so
                    error = error or "this answer was saved by another version of clinfo and cannot be shown"
            try:
                config = json.loads(config_json or "{}")
            except ValueError:
                config = {}
            out.append(Turn(id=id_, created=created, question=question, answer=answer, error=error, config=config))
        return out

    def __len__(self) -> int:
        """Turns in the file, everyone's."""
        with self._db() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0])


def _migrate_v1(conn: Transaction) -> None:
    """Version 1 had one table of turns, one conversation for every tab: its turns become one
    conversation of no user and no session, which anonymous viewers keep seeing."""
    conn.execute(
        "CREATE TABLE conversations (id INTEGER PRIMARY KEY AUTOINCREMENT, token TEXT NOT NULL UNIQUE, "
        "user TEXT, session TEXT, created TEXT NOT NULL, title TEXT NOT NULL DEFAULT '')"
    )
    conn.execute("ALTER TABLE turns ADD COLUMN conversation_id INTEGER REFERENCES conversations(id)")
    first = conn.execute("SELECT created, question FROM turns ORDER BY id LIMIT 1").fetchone()
    if first is None:
        return
    (cid,) = conn.execute(
        "INSERT INTO conversations (token, user, session, created, title) VALUES (?, NULL, NULL, ?, ?) RETURNING id",
        (_secrets.token_urlsafe(18), first[0], title_of(first[1])),
    ).fetchone()
    conn.execute("UPDATE turns SET conversation_id = ?", (cid,))


def found_articles(turns: Iterable[Turn]) -> list[Article]:
    """Every article the conversation has screened, once each: most recent turn first, and within
    a turn the relevant ones (in reference order) before the others."""
    seen: set[str] = set()
    out: list[Article] = []
    for turn in reversed(list(turns)):
        if turn.answer is None:
            continue
        for summary in [*turn.answer.article_summaries, *turn.answer.irrelevant_articles]:
            if summary.pmid not in seen:
                seen.add(summary.pmid)
                out.append(summary.article)
    return out
