"""The record store: one SQLite file holding the citations, the file ledger and deletions.

Layout (``SCHEMA_VERSION`` 3):

* ``docs``: one row per citation, keyed by PMID (the INTEGER PRIMARY KEY, so lookups by PMID are
  rowid lookups): ``seq`` and ``year`` as plain columns (the build and date windows read them),
  everything else in ``body``, one zstd frame compressed with the dictionary in ``codec`` (see
  ``Codec``). Compressed alone, a ~1.5 kB record shrinks to ~53%; with a dictionary trained on
  real records to ~38%, because most of a short text's redundancy is with other records.
* ``codec``: the zstd dictionary every ``body`` was compressed with (one row). A corpus carries
  its own, so a later clinfo that ships another dictionary still reads it.
* ``files``: every input file seen (name, size, mtime) with how far it has been ingested, so a
  re-run skips finished files and a killed run resumes where its last transaction ended.
* ``deleted``: PMIDs withdrawn by ``DeleteCitation``, with the file that withdrew them.
* ``lexical_pending``: PMIDs whose row changed (added, replaced, deleted) since the lexical index
  (``clinfo.corpus.lexical``, a Tantivy directory beside this file) last committed. A build adds
  to it in the same transaction as the change and empties it only after the lexical index has
  committed, so a killed build leaves exactly the PMIDs to redo; the next build replays them.
* ``corrections``: NLM's CommentsCorrections links that name another PMID, for every record read
  (with an abstract or not), with the file (``seq``) of the version that made them: a retraction
  notice in a later update file marks the record it retracts without touching it, and notices
  often have no abstract, so are not in ``docs``. A later version of a record replaces its links;
  ``DeleteCitation`` clears them. ``RecordStore.fetch`` adds to each record the reverse of the
  links other records make to it (``RetractionOf`` -> ``RetractionIn``). Corpora built before the
  table existed lack it, or lack the links of their earlier files (``meta`` has no
  ``corrections`` key then): see ``RecordStore.corrections_state``.
* ``meta``: schema version, generation (bumped by every build that changes articles), analyzer
  of the lexical index.

Older schemas: v1 kept an SQLite FTS5 table instead of the lexical index; v2 kept the texts as
plain columns (``title, abstract, mesh, pubtype, journal, extra``; 2.6x the bytes). ``clinfo
index upgrade`` converts either in place (``clinfo.corpus.upgrade``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.errors import CorpusError, one_line
from clinfo.models import AbstractSection, Article, Correction

if TYPE_CHECKING:
    from clinfo.dates import DateRange

__all__ = [
    "SCHEMA_VERSION",
    "Codec",
    "RecordStore",
    "open_corpus",
    "row_to_article",
    "article_to_row",
    "check_schema",
    "corpus_codec",
    "corpus_info",
    "create_tables",
    "doc_texts",
    "has_corrections_table",
    "link_rows",
    "meta_items",
    "meta_value",
    "record_frame",
]

SCHEMA_VERSION = 3

_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS files (
        id INTEGER PRIMARY KEY,          -- sequence: a later file wins
        name TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
        done_upto INTEGER NOT NULL DEFAULT 0,  -- items (records + delete blocks) already applied
        complete INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        records INTEGER NOT NULL DEFAULT 0,
        added REAL NOT NULL,
        UNIQUE (name, size, mtime_ns))""",
    """CREATE TABLE IF NOT EXISTS docs (
        pmid INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL,            -- files.id of the file this version came from
        year INTEGER,
        body BLOB NOT NULL)              -- Codec.pack of (title, abstract, mesh, pubtype, journal, extra)""",
    """CREATE TABLE IF NOT EXISTS codec (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        kind TEXT NOT NULL,              -- 'zstd-dict'
        dict BLOB NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS deleted (pmid INTEGER PRIMARY KEY, seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS lexical_pending (pmid INTEGER PRIMARY KEY)",
    """CREATE TABLE IF NOT EXISTS corrections (
        pmid INTEGER NOT NULL,           -- the record that makes the link
        seq INTEGER NOT NULL,            -- files.id of that record's version
        ref_type TEXT NOT NULL,          -- NLM's RefType; '' marks a version without links
        other_pmid INTEGER NOT NULL,     -- the record it names (0 with ref_type '')
        source TEXT NOT NULL DEFAULT '')""",
    "CREATE INDEX IF NOT EXISTS corrections_pmid ON corrections (pmid)",
    "CREATE INDEX IF NOT EXISTS corrections_other ON corrections (other_pmid)",
]
CORRECTIONS_DDL = _DDL[-3:]


def create_tables(conn: sqlite3.Connection) -> None:
    """The tables of a new corpus and its record codec (the packaged dictionary), in the caller's
    transaction; ``meta`` is left for the caller to fill."""
    for ddl in _DDL:
        conn.execute(ddl)
    conn.execute("INSERT INTO codec VALUES (1, 'zstd-dict', ?)", (packaged_dict(),))


def meta_value(conn: sqlite3.Connection, key: str) -> str | None:
    """One value of the key-value ``meta`` table that a corpus and a vector set's manifest both
    keep (None when the key is absent); ``sqlite3.OperationalError`` when there is no such table."""
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def meta_items(conn: sqlite3.Connection) -> dict[str, str]:
    """The whole ``meta`` table, in stored order."""
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}


# A link one record makes about another, and the link the other record gets from it: a retraction
# notice says RetractionOf the article, which PubMed shows on the article as RetractionIn.
REVERSE_LINKS = {
    "RetractionOf": "RetractionIn",
    "RetractedandRepublishedFrom": "RetractedandRepublishedIn",
    "ExpressionOfConcernFor": "ExpressionOfConcernIn",
    "ErratumFor": "ErratumIn",
    "CommentOn": "CommentIn",
    "UpdateOf": "UpdateIn",
    "RepublishedFrom": "RepublishedIn",
    "CorrectedandRepublishedFrom": "CorrectedandRepublishedIn",
    "ReprintOf": "ReprintIn",
}
REVERSE_LINKS.update({v: k for k, v in list(REVERSE_LINKS.items())})

# A plain row (what ``article_to_row`` returns; the docs row of schema v2):
# (pmid, seq, year, title, abstract, mesh, pubtype, journal, extra).
PLAIN_COLS = "pmid, seq, year, title, abstract, mesh, pubtype, journal, extra"

# ----------------------------------------------------------------------------------- compression

RECORD_DICT = "record_dict.zstd"  # in clinfo/data; made by scripts/build_record_dict.py
_LEVEL = 3  # zstd level: 0.381 of the bytes at ~22 us a record; level 5+ costs 3x the CPU for 2%
_SEP = "\x1f"  # between the packed texts: str.split() treats it as whitespace, so no squashed text holds it


def packaged_dict() -> bytes:
    """The zstd dictionary new corpora are compressed with (trained on the demo corpus's records)."""
    path = Path(str(resources.files("clinfo") / "data" / RECORD_DICT))
    if not path.is_file():
        raise CorpusError(f"{RECORD_DICT} is missing from the clinfo installation")
    return path.read_bytes()


def record_frame(texts: Sequence[str]) -> bytes:
    """``(title, abstract, mesh, pubtype, journal, extra)`` as the bytes ``Codec.pack`` compresses
    (what the dictionary is trained on: scripts/build_record_dict.py)."""
    return _SEP.join(texts).encode("utf-8")


class Codec:
    """Packs a record's texts into one zstd frame with the corpus's dictionary, and back.

    One frame per record (not per column): one call each way, and the short fields (MeSH,
    journal, authors) compress well only next to the dictionary. python-zstandard's (de)compressor
    objects are not thread-safe, so each thread gets its own; the dictionary is digested once.
    """

    def __init__(self, dict_bytes: bytes) -> None:
        import zstandard

        self._zstd = zstandard
        self.dict_bytes = dict_bytes
        self.digest = hashlib.sha256(dict_bytes).hexdigest()[:16]
        self._dict = zstandard.ZstdCompressionDict(dict_bytes, dict_type=zstandard.DICT_TYPE_FULLDICT)
        self._dict.precompute_compress(level=_LEVEL)
        self._local = threading.local()

    def _pair(self) -> tuple[Any, Any]:
        pair = getattr(self._local, "pair", None)
        if pair is None:
            z = self._zstd
            c = z.ZstdCompressor(
                level=_LEVEL, dict_data=self._dict, write_checksum=False, write_content_size=True, write_dict_id=False
            )
            pair = self._local.pair = (c, z.ZstdDecompressor(dict_data=self._dict))
        return pair

    def pack(self, texts: Sequence[str]) -> bytes:
        """``(title, abstract, mesh, pubtype, journal, extra)`` -> body."""
        return self._pair()[0].compress(record_frame(texts))

    def unpack(self, body: bytes) -> list[str]:
        """body -> ``[title, abstract, mesh, pubtype, journal, extra]``."""
        try:
            texts = self._pair()[1].decompress(body).decode("utf-8").split(_SEP)
        except (self._zstd.ZstdError, UnicodeDecodeError) as exc:
            raise CorpusError(f"a stored record cannot be decoded ({one_line(exc)}); rebuild the corpus") from None
        if len(texts) != 6:
            raise CorpusError("a stored record cannot be decoded (wrong number of fields); rebuild the corpus")
        return texts

    def row(self, plain: Sequence[Any]) -> tuple[Any, ...]:
        """A plain row (``PLAIN_COLS``) -> the docs row ``(pmid, seq, year, body)``."""
        return (plain[0], plain[1], plain[2], self.pack(plain[3:9]))


_CODECS: dict[bytes, Codec] = {}
_CODECS_LOCK = threading.Lock()


def codec_for(dict_bytes: bytes) -> Codec:
    """One Codec per dictionary per process (digesting a dictionary costs ~1 ms)."""
    with _CODECS_LOCK:
        codec = _CODECS.get(dict_bytes)
        if codec is None:
            codec = _CODECS[dict_bytes] = Codec(dict_bytes)
        return codec


def corpus_codec(conn: sqlite3.Connection) -> Codec:
    """The codec of an open v3 corpus."""
    row = conn.execute("SELECT kind, dict FROM codec WHERE id=1").fetchone()
    if row is None or row[0] != "zstd-dict":
        raise CorpusError("corpus has no record codec; rebuild it with 'clinfo index build'")
    return codec_for(bytes(row[1]))


def doc_texts(conn: sqlite3.Connection, pmids: Sequence[int]) -> list[tuple[int, str, str]]:
    """``(pmid, title, abstract)`` of the stored PMIDs among ``pmids``, by PMID: what dense
    encoders read (``abstract`` is the section texts joined by newlines, without labels)."""
    codec = corpus_codec(conn)
    out: list[tuple[int, str, str]] = []
    ids = [int(p) for p in pmids]
    for i in range(0, len(ids), 900):
        chunk = ids[i : i + 900]
        for pmid, body in conn.execute(
            f"SELECT pmid, body FROM docs WHERE pmid IN ({','.join('?' * len(chunk))})", chunk
        ):
            title, abstract = codec.unpack(body)[:2]
            out.append((pmid, title, abstract))
    out.sort()
    return out


# ------------------------------------------------------------------------------- rows <-> Article


def _squash(text: str) -> str:
    return " ".join(text.split())


def article_to_row(article: Article, seq: int = 0) -> tuple[Any, ...] | str:
    """The plain row (``PLAIN_COLS``) for an article, or the reason it is not indexed."""
    pmid = str(article.pmid).strip()
    if not pmid.isdigit() or not 0 < int(pmid) < 2**63:
        return "invalid PMID"
    sections = [(_squash(s.label), _squash(s.text)) for s in article.abstract_sections]
    sections = [(label, text) for label, text in sections if text]
    if not sections:
        return "no abstract"
    title = _squash(article.title)
    texts = [title, article.journal, *(t for _, t in sections), *article.mesh, *article.authors]
    # The XML reader repairs invalid UTF-8 with U+FFFD; such a record's text is not what NLM wrote.
    if any("\ufffd" in t for t in texts):
        return "invalid UTF-8"
    extra: dict[str, Any] = {}
    if any(label for label, _ in sections):
        extra["labels"] = [label for label, _ in sections]
    if article.authors:
        extra["authors"] = article.authors
    if article.doi:
        extra["doi"] = article.doi
    if article.corrections:
        extra["corrections"] = [[c.ref_type, c.pmid or "", _squash(c.source)] for c in article.corrections]
    return (
        int(pmid),
        seq,
        article.year,
        title,
        "\n".join(text for _, text in sections),
        "\n".join(_squash(m) for m in article.mesh if m.strip()),
        "\n".join(_squash(p) for p in article.publication_types if p.strip()),
        _squash(article.journal),
        json.dumps(extra, ensure_ascii=False, separators=(",", ":")),
    )


def row_to_article(row: Sequence[Any]) -> Article:
    """``(pmid, year, title, abstract, mesh, pubtype, journal, extra)`` (texts as ``Codec.unpack``
    gives them) -> Article."""
    pmid, year, title, abstract, mesh, pubtype, journal, extra_json = row
    extra = json.loads(extra_json) if extra_json else {}
    texts = abstract.split("\n") if abstract else []
    labels = extra.get("labels") or [""] * len(texts)
    return Article(
        pmid=str(pmid),
        title=title,
        abstract_sections=[AbstractSection(label=label, text=text) for label, text in zip(labels, texts)],
        authors=extra.get("authors", []),
        journal=journal,
        year=year,
        doi=extra.get("doi"),
        mesh=mesh.split("\n") if mesh else [],
        publication_types=pubtype.split("\n") if pubtype else [],
        corrections=[Correction(ref_type=t, pmid=p or None, source=src) for t, p, src in extra.get("corrections", [])],
    )


def link_rows(article: Article) -> list[tuple[str, int, str]]:
    """``(ref_type, other_pmid, source)`` of the article's links that name another PMID (the
    ``corrections`` table's rows for it)."""
    return [
        (c.ref_type, int(c.pmid), _squash(c.source))
        for c in article.corrections
        if c.pmid and c.pmid.isdigit() and 0 < int(c.pmid) < 2**63
    ]


# -------------------------------------------------------------------------------- opening a corpus


def open_corpus(
    path: str | os.PathLike[str], *, readonly: bool = True, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection to an existing corpus; ``CorpusError`` if missing, not ours, or another schema."""
    p = Path(path)
    if not p.is_file():
        raise CorpusError(f"no corpus at {p}; build one with 'clinfo index build'")
    try:
        if readonly:
            conn = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=check_same_thread)
        else:
            conn = sqlite3.connect(p, isolation_level=None, check_same_thread=check_same_thread, timeout=30)
        check_schema(conn, p)
    except sqlite3.DatabaseError as exc:
        raise CorpusError(f"{p} is not a readable clinfo corpus ({one_line(exc)})") from None
    return conn


def check_schema(conn: sqlite3.Connection, p: Path) -> None:
    """``CorpusError`` (and ``conn`` closed) unless ``conn`` is a clinfo corpus of ``SCHEMA_VERSION``;
    an older schema's error names ``clinfo index upgrade``."""
    try:
        version = meta_value(conn, "schema_version")
    except sqlite3.OperationalError:
        conn.close()
        raise CorpusError(f"{p} is not a clinfo corpus (no meta table)") from None
    if version is None:
        conn.close()
        raise CorpusError(f"{p} is not a clinfo corpus (no schema version)")
    older = {"1": "schema v1, SQLite FTS5", "2": "schema v2, uncompressed records"}.get(version)
    if older is not None:
        conn.close()
        raise CorpusError(
            f"{p} was built by an older clinfo ({older}); upgrade it in place with 'clinfo index upgrade {p}'"
        )
    if version != str(SCHEMA_VERSION):
        conn.close()
        raise CorpusError(
            f"{p} was built with corpus schema v{version}; this clinfo reads v{SCHEMA_VERSION};"
            " rebuild it with 'clinfo index build'"
        )


def has_corrections_table(conn: sqlite3.Connection) -> bool:
    """Whether the corpus has the ``corrections`` table (corpora built before it lack it)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='corrections'").fetchone() is not None


def _corrections_state(conn: sqlite3.Connection, flag: str | None) -> str:
    if not has_corrections_table(conn):
        return "missing"
    return "complete" if flag == "1" else "partial"


def corpus_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts and metadata of a corpus (articles, files, schema, generation)."""
    conn = open_corpus(path)
    try:
        info: dict[str, Any] = meta_items(conn)
        info["articles"] = conn.execute("SELECT count(*) FROM docs").fetchone()[0]
        info["lexical_pending"] = conn.execute("SELECT count(*) FROM lexical_pending").fetchone()[0]
        # NLM's CommentsCorrections links (retraction notices...): complete, partial or missing
        info["corrections"] = _corrections_state(conn, info.get("corrections"))
        info["files"] = [
            {"name": n, "complete": bool(c), "records": r, "error": e}
            for n, c, r, e in conn.execute("SELECT name, complete, records, error FROM files ORDER BY id")
        ]
        return info
    finally:
        conn.close()


class RecordStore:
    """Record lookup over one open corpus connection (one per thread: sqlite3 connections are not shared)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._n: int | None = None
        self.codec = corpus_codec(conn)
        self._links = has_corrections_table(conn)

    @property
    def corrections_state(self) -> str:
        """Whether links are kept: "complete" (every file's), "partial" (files ingested before clinfo kept them
        lack theirs) or "missing" (no links at all: built before the ``corrections`` table)."""
        return _corrections_state(self.conn, self.meta("corrections"))

    @classmethod
    def open(cls, path: str | os.PathLike[str], readonly: bool = True) -> RecordStore:
        return cls(open_corpus(path, readonly=readonly, check_same_thread=False), Path(path))

    def close(self) -> None:
        self.conn.close()

    def meta(self, key: str) -> str | None:
        return meta_value(self.conn, key)

    def pending(self) -> int:
        """Changes the lexical index has not committed yet (an interrupted build)."""
        return int(self.conn.execute("SELECT count(*) FROM lexical_pending").fetchone()[0])

    def pmids_in_window(self, pmids: Sequence[int], dates: DateRange | None) -> list[bool]:
        """For each PMID: stored, and (when ``dates`` is given) published in that window's years."""
        years = self.years(pmids)
        # an undated record is outside any window
        return [int(p) in years and (dates is None or dates.contains(years[int(p)])) for p in pmids]

    @property
    def size(self) -> int:
        """Articles in the corpus (every stored article has an abstract)."""
        if self._n is None:
            self._n = int(self.conn.execute("SELECT count(*) FROM docs").fetchone()[0])
        return self._n

    def years(self, pmids: Sequence[int]) -> dict[int, int | None]:
        """Publication year of each stored PMID; PMIDs not in the corpus are left out."""
        out: dict[int, int | None] = {}
        ids = [int(p) for p in pmids]
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            q = f"SELECT pmid, year FROM docs WHERE pmid IN ({','.join('?' * len(chunk))})"
            out.update(self.conn.execute(q, chunk).fetchall())
        return out

    def has(self, pmids: Sequence[int]) -> set[int]:
        """The PMIDs of ``pmids`` the corpus holds."""
        return set(self.years(pmids))

    def fetch(self, pmids: Sequence[int | str]) -> list[Article]:
        """Articles in the order asked; unknown or malformed PMIDs are left out."""
        ids = [int(p) for p in (str(x).strip() for x in pmids) if p.isdigit() and len(p) < 19]
        found: dict[int, Any] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT pmid, year, body FROM docs WHERE pmid IN ({','.join('?' * len(chunk))})"
            for row in self.conn.execute(q, chunk):
                found[row[0]] = row
        out, seen = [], set()
        unpack = self.codec.unpack
        inbound = self._inbound(list(found)) if self._links else {}
        for pmid in ids:
            if pmid in found and pmid not in seen:
                seen.add(pmid)
                _, year, body = found[pmid]
                article = row_to_article((pmid, year, *unpack(body)))
                if pmid in inbound:
                    known = {(c.ref_type, c.pmid) for c in article.corrections}
                    for link in inbound[pmid]:
                        if (link.ref_type, link.pmid) not in known:
                            known.add((link.ref_type, link.pmid))
                            article.corrections.append(link)
                out.append(article)
        return out

    def _inbound(self, pmids: list[int]) -> dict[int, list[Correction]]:
        """PMID -> the links other records make to it, as the record itself would show them
        (a notice's RetractionOf becomes the record's RetractionIn naming the notice)."""
        out: dict[int, list[Correction]] = {}
        for i in range(0, len(pmids), 500):
            chunk = pmids[i : i + 500]
            q = (
                "SELECT other_pmid, ref_type, pmid FROM corrections"
                f" WHERE other_pmid IN ({','.join('?' * len(chunk))}) ORDER BY seq, rowid"
            )
            for other, ref_type, by in self.conn.execute(q, chunk):
                reverse = REVERSE_LINKS.get(ref_type)
                if reverse and other != by:
                    out.setdefault(other, []).append(Correction(ref_type=reverse, pmid=str(by)))
        return out
