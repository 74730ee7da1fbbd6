"""The app's conversation history: one SQLite file, so a reload or a restart keeps the chat.

Each turn stores the question, the Answer as JSON (or the one-line error when the run failed)
and the public part of the run's configuration. Keys are never stored: settings go in through
an allow-list, and every text is passed through :func:`clinfo.app.redact.redact` first.

The file is ``$CLINFO_APP_DB`` if set, else ``app_history.db`` under the cache directory.
Connections are opened per operation, because Streamlit serves each browser session from its
own thread and a sqlite3 connection must stay in the thread that made it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from clinfo.app.redact import redact
from clinfo.errors import ClinfoError

if TYPE_CHECKING:
    from clinfo.models import Answer, Article
    from clinfo.settings import Settings

ENV_DB = "CLINFO_APP_DB"
SCHEMA_VERSION = 1
# what a turn records about its configuration: enough to know how an answer was made, no secrets
PUBLIC_CONFIG = (
    "llm",
    "source",
    "base_url",
    "restriction_date",
    "date_window_years",
    "prefilter_k",
    "results_per_query",
    "num_queries",
    "followups",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created     TEXT NOT NULL,
    question    TEXT NOT NULL,
    answer_json TEXT,
    error       TEXT,
    config_json TEXT NOT NULL DEFAULT '{}'
);
"""


class HistoryError(ClinfoError):
    """The history file cannot be opened, read or written."""


@dataclass
class Turn:
    id: int
    created: str
    question: str
    answer: "Answer | None"
    error: str | None
    config: dict[str, Any]


def default_db_path(settings: "Settings") -> Path:
    override = os.environ.get(ENV_DB, "").strip()
    return Path(override).expanduser() if override else Path(settings.cache_dir) / "app_history.db"


def public_config(values: dict[str, Any]) -> dict[str, Any]:
    from urllib.parse import urlsplit, urlunsplit

    out = {k: values[k] for k in PUBLIC_CONFIG if values.get(k) is not None}
    if out.get("base_url"):
        # a base URL can carry credentials (http://user:token@host); keep host and path only
        parts = urlsplit(str(out["base_url"]))
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        out["base_url"] = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return {k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in out.items()}


class HistoryStore:
    def __init__(self, path: Path | str, secrets: Iterable[str] = ()) -> None:
        self.path = Path(path)
        self.secrets = list(secrets)
        self._init()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=10)) as conn:
                # "clear" must remove the text from the file, not only mark its pages free
                conn.execute("PRAGMA secure_delete = ON")
                with conn:  # one transaction: committed on success, rolled back on error
                    yield conn
        except sqlite3.Error as exc:
            raise HistoryError(f"conversation history {self.path}: {exc}") from None
        except OSError as exc:
            raise HistoryError(f"conversation history {self.path}: {exc.strerror or exc}") from None

    def _init(self) -> None:
        with self._db() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"conversation history {self.path} was written by a newer clinfo (schema {version}); "
                    f"set {ENV_DB} to another file"
                )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else redact(text, self.secrets)

    def add(
        self,
        question: str,
        answer: "Answer | None" = None,
        error: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> int:
        if (answer is None) == (error is None):
            raise ValueError("a turn has either an answer or an error")
        row = (
            dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            self._clean(question),
            self._clean(answer.to_json(indent=None) if answer is not None else None),
            self._clean(error),
            self._clean(json.dumps(public_config(config or {}), sort_keys=True)),
        )
        with self._db() as conn:
            cur = conn.execute(
                "INSERT INTO turns (created, question, answer_json, error, config_json) VALUES (?, ?, ?, ?, ?)", row
            )
            return int(cur.lastrowid or 0)

    def turns(self) -> list[Turn]:
        from clinfo.models import Answer

        with self._db() as conn:
            rows = conn.execute(
                "SELECT id, created, question, answer_json, error, config_json FROM turns ORDER BY id"
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

    def clear(self) -> None:
        with self._db() as conn:
            conn.execute("DELETE FROM turns")

    def __len__(self) -> int:
        with self._db() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0])


def found_articles(turns: Iterable[Turn]) -> list["Article"]:
    """Every article the conversation has screened, once each: most recent turn first, and within
    a turn the relevant ones (in reference order) before the others."""
    seen: set[str] = set()
    out: list["Article"] = []
    for turn in reversed(list(turns)):
        if turn.answer is None:
            continue
        for summary in [*turn.answer.article_summaries, *turn.answer.irrelevant_articles]:
            if summary.pmid not in seen:
                seen.add(summary.pmid)
                out.append(summary.article)
    return out
