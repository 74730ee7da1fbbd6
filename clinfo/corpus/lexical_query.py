"""PubMed query -> SQLite FTS5 MATCH expression plus SQL filters (the lexical index runs it).

The same LLM-written PubMed query should work offline. What maps, and how:

* AND / OR / NOT and parentheses map to FTS5's; PubMed's left-to-right grouping is already
  explicit in the AST.
* An untagged word searches title, abstract and MeSH (PubMed's All Fields, minus automatic term
  mapping); a run of untagged words is the AND of its words, stopwords dropped as PubMed does.
  A quoted phrase, a tagged run of words and a hyphenated word are phrases.
* ``[tiab] [ti] [ab] [tw] [all]`` restrict columns; ``[mh]``/``[MeSH Terms]`` match a phrase inside
  the MeSH headings ("Neoplasms" also matches "Breast Neoplasms", a rough stand-in for explosion);
  ``[majr]`` reads as ``[mh]`` because major-topic flags are not stored; ``[pt]`` matches
  publication types; ``[pmid]`` is a row lookup.
* ``[dp]``/``[pdat]`` ranges filter on the publication year (the corpus stores the year only; a
  month or day in the range is widened to its year, with a warning).
* ``canc*`` is an FTS5 prefix query (PubMed needs 4+ letters before ``*``; shorter ones are
  searched without truncation, with a warning, which also bounds the cost of the expansion).
* ``"hip pain"[tiab:~2]`` is FTS5 ``NEAR``.
* Tags the corpus cannot honour never fail: ``[la]``/``[sb]``/``[filter]`` are dropped, other tags
  (``[au]``, ``[ta]``, ``[nm]`` ...) become plain text terms; each adds a warning.

Text without field tags or upper-case operators is natural language: its content words (quoted
phrases kept whole) are ORed and BM25 ranks the union, which suits a question typed as is.
Quotes and ``*`` alone do not make a query boolean: typed questions contain them too.

Every term reaches FTS5 as a double-quoted string made of word characters only, so no input can
produce an FTS5 syntax error.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from clinfo.errors import QuerySyntaxError
from clinfo.rank import STOPWORDS
from clinfo.sources.query import SHORT_TAG, Dates, Node, Term, is_boolean, parse

__all__ = ["FtsQuery", "translate", "MAX_QUERY_CHARS"]

MAX_QUERY_CHARS = 10_000
_MAX_NL_WORDS = 64

_ALL = "{title abstract mesh}"
_COLUMNS: dict[str | None, str] = {
    None: _ALL,
    "All Fields": _ALL,
    "Text Word": _ALL,
    "Title/Abstract": "{title abstract}",
    "Title": "{title}",
    "Transliterated Title": "{title}",
    "Abstract": "{abstract}",
    "MeSH Terms": "{mesh}",
    "MeSH Major Topic": "{mesh}",
    "Publication Type": "{pubtype}",
}
_IGNORED = {"Language": "language", "Filter": "filters/subsets"}
_MESH = {"MeSH Terms", "MeSH Major Topic"}

# Words that carry no topic in a typed question, beyond the function words rank.STOPWORDS holds.
_NL_STOPWORDS = STOPWORDS | frozenset(
    """about after all also among any been before being between both but could did does doing during each
    into may might more most much must no nor not only other our out over same should so some such
    then them they through under until very we while would you your i me my is there versus vs""".split()
)

# FTS5's unicode61 tokenizer splits on everything but letters and digits; so do we, and quoting
# the result keeps every term a plain string to FTS5.
_TOKEN = re.compile(r"[^\W_]+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _phrase(tokens: list[str], prefix: bool = False) -> str:
    return '"' + " ".join(tokens) + '"' + (" *" if prefix else "")


@dataclass
class FtsQuery:
    """A translated query: run ``match`` (FTS5) and ``where`` (SQL over ``docs d``) together."""

    query: str
    match: str | None = None
    where: str = ""
    params: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    natural: bool = False
    words: list[str] = field(default_factory=list)  # natural language: the content words
    phrases: list[str] = field(default_factory=list)  # natural language: quoted phrases, as FTS5 strings
    prefixes: set[str] = field(default_factory=set)  # natural language: words written with a trailing *
    empty: bool = False  # nothing searchable: the answer is no results

    @property
    def translation(self) -> str:
        bits = [f"MATCH {self.match}"] if self.match else []
        if self.where:
            bits.append(f"WHERE {self.where}")
        return " ".join(bits) or "(everything)"


@dataclass
class _Plan:
    match: str | None = None
    where: str | None = None
    params: list[Any] = field(default_factory=list)

    @property
    def neutral(self) -> bool:
        return self.match is None and self.where is None

    def as_where(self) -> tuple[str, list[Any]]:
        """The whole plan as one SQL condition over ``d`` (for OR/NOT mixing text and filters)."""
        conds, params = [], []
        if self.match is not None:
            conds.append("d.pmid IN (SELECT rowid FROM fts WHERE fts MATCH ?)")
            params.append(self.match)
        if self.where is not None:
            conds.append(f"({self.where})")
            params.extend(self.params)
        return " AND ".join(conds), params


_NOTHING = _Plan(where="0")


class _Translator:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def node(self, node: Node) -> _Plan | None:
        """None: the node constrains nothing we can evaluate and is left out of its parent."""
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Dates):
            return self.dates(node)
        kids = [self.node(c) for c in node.children]
        if node.op == "NOT":
            return self.not_(kids[0], [k for k in kids[1:] if k is not None])
        plans = [k for k in kids if k is not None]
        if not plans:
            return None
        if len(plans) == 1:
            return plans[0]
        if node.op == "AND":
            return self.and_(plans)
        return self.or_(plans)

    @staticmethod
    def and_(plans: list[_Plan]) -> _Plan:
        matches = [p.match for p in plans if p.match is not None]
        wheres = [p for p in plans if p.where is not None]
        return _Plan(
            match=" AND ".join(f"({m})" for m in matches) if matches else None,
            where=" AND ".join(f"({p.where})" for p in wheres) if wheres else None,
            params=[x for p in wheres for x in p.params],
        )

    @staticmethod
    def or_(plans: list[_Plan]) -> _Plan:
        if all(p.where is None for p in plans):
            return _Plan(match=" OR ".join(f"({p.match})" for p in plans))
        conds, params = [], []
        for p in plans:
            cond, ps = p.as_where()
            conds.append(f"({cond})")
            params.extend(ps)
        return _Plan(where=" OR ".join(conds), params=params)

    @staticmethod
    def not_(pos: _Plan | None, negs: list[_Plan]) -> _Plan | None:
        if not negs:
            return pos
        if pos is not None and pos.match is not None and all(n.where is None for n in negs):
            match = f"({pos.match})" + "".join(f" NOT ({n.match})" for n in negs)
            return _Plan(match=match, where=pos.where, params=list(pos.params))
        # FTS5 has no unary NOT: exclude in SQL instead.
        conds, params = [], []
        for n in negs:
            cond, ps = n.as_where()
            conds.append(f"NOT ({cond})")
            params.extend(ps)
        where = " AND ".join(conds)
        if pos is None:
            return _Plan(where=where, params=params)
        if pos.where is not None:
            where = f"({pos.where}) AND {where}"
            params = list(pos.params) + params
        return _Plan(match=pos.match, where=where, params=params)

    def term(self, t: Term) -> _Plan | None:
        tag = f"[{SHORT_TAG[t.field]}]" if t.field else ""
        if t.field in _IGNORED:
            self.warn(f"{tag} ignored: the local corpus has no {_IGNORED[t.field]}")
            return None
        if t.field == "PMID":
            ids = [int(x) for x in _tokens(t.text) if x.isdigit() and len(x) < 19]
            if not ids:
                return _NOTHING
            return _Plan(where=f"d.pmid IN ({','.join('?' * len(ids))})", params=ids)
        text = t.text
        if t.field in _MESH and "/" in text:
            self.warn(f"MeSH subheadings are not stored locally; {t.text!r} matched on its heading")
            text = text.split("/", 1)[0]
        if t.field == "MeSH Major Topic":
            self.warn("[majr] searched as [mh]: major-topic flags are not stored locally")
        columns = _COLUMNS.get(t.field)
        if columns is None:
            self.warn(f"{tag} is not indexed locally; {t.text!r} searched as text")
            columns = _ALL
        prefix = text.endswith("*")
        if prefix:
            stem = text.rstrip("*").split()[-1] if text.rstrip("*").split() else ""
            if len(stem) < 4:
                self.warn(f"truncation needs at least 4 letters; {t.text!r} searched without it")
                prefix = False
        if t.proximity is not None:
            toks = _tokens(text)
            if not toks:
                return self._unsearchable(t)
            return _Plan(match=f"{columns} : NEAR({' '.join(_phrase([w]) for w in toks)}, {t.proximity})")
        if t.phrase or (t.quoted and len(t.words) == 1):
            toks = _tokens(text)
            if not toks:
                return self._unsearchable(t)
            return _Plan(match=f"{columns} : {_phrase(toks, prefix)}")
        # A run of untagged words, or one word: AND of the words (a hyphenated word is a phrase).
        parts = []
        words = text.split()
        for i, word in enumerate(words):
            toks = _tokens(word)
            if not toks or (len(toks) == 1 and toks[0] in STOPWORDS and not word.endswith("*")):
                continue
            parts.append(_phrase(toks, prefix and i == len(words) - 1))
        if not parts:
            return self._unsearchable(t)
        body = parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"
        return _Plan(match=f"{columns} : {body}")

    def _unsearchable(self, t: Term) -> None:
        self.warn(f"{t.text!r} is only stopwords or punctuation and was left out")
        return None

    def dates(self, d: Dates) -> _Plan:
        tag = f"[{SHORT_TAG[d.field]}]"
        if d.field != "Date - Publication":
            self.warn(f"{tag} approximated by the publication year")
        if d.relative:
            n, unit = d.relative
            today = dt.date.today()
            days = {"years": 365.25, "months": 30.44, "days": 1}[unit] * n
            start = (today - dt.timedelta(days=days)).year
            return _Plan(where="d.year IS NOT NULL AND d.year >= ?", params=[start])
        if "/" in d.start or "/" in d.end:
            self.warn(f"date range {d.start}:{d.end} widened to whole years: the corpus stores the publication year only")
        lo, hi = int(d.start[:4]), int(d.end[:4])
        # IS NOT NULL: an article without a year is outside every range, and NOT of that holds it,
        # instead of SQL's NULL dropping it from both sides.
        return _Plan(where="d.year IS NOT NULL AND d.year BETWEEN ? AND ?", params=[lo, hi])


_QUOTED = re.compile(r'"([^"]*)"')


def _natural(query: str) -> FtsQuery:
    """Ranked retrieval over the OR of the content words; quoted text stays a phrase, ``word*`` a prefix."""
    out = FtsQuery(query=query, natural=True)
    phrases: list[str] = []
    rest = query
    if query.count('"') % 2 == 0:  # unbalanced quotes in typed text: ignore them all
        for m in _QUOTED.finditer(query):
            toks = _tokens(m.group(1))
            if len(toks) > 1:
                phrases.append(_phrase(toks))
        rest = _QUOTED.sub(lambda m: " " if len(_tokens(m.group(1))) > 1 else m.group(1), query)
    words = [w for w in dict.fromkeys(_tokens(rest)) if w not in _NL_STOPWORDS]
    prefixes = {m.lower() for m in re.findall(r"([^\W_]{4,})\*", rest)}
    if len(words) > _MAX_NL_WORDS:
        out.warnings.append(f"query cut to its first {_MAX_NL_WORDS} content words")
        words = words[:_MAX_NL_WORDS]
    if not words and not phrases:
        out.empty = True
        out.warnings.append("no searchable words in the query")
        return out
    out.words, out.phrases, out.prefixes = words, list(dict.fromkeys(phrases)), prefixes
    out.match = _or_match(out.words, out.phrases, prefixes)
    return out


def _or_match(words: list[str], phrases: list[str] = (), prefixes: set[str] | frozenset[str] = frozenset()) -> str:  # type: ignore[assignment]
    terms = [*phrases, *(_phrase([w], w in prefixes) for w in words)]
    return f"{_ALL} : (" + " OR ".join(terms) + ")"


def translate(query: str) -> FtsQuery:
    """Translate a PubMed query (or plain text) for FTS5; ``QuerySyntaxError`` for malformed syntax."""
    if not query.strip():
        raise QuerySyntaxError("empty query")
    if not is_boolean(query):
        return _natural(query)  # bounded by its word cap, however long the text
    if len(query) > MAX_QUERY_CHARS:
        raise QuerySyntaxError(f"query is {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}")
    node = parse(query)
    tr = _Translator()
    plan = tr.node(node)
    out = FtsQuery(query=query, warnings=tr.warnings)
    if plan is None:
        out.warnings.append("nothing in the query can be searched locally; returning the most recent articles")
        return out
    out.match, out.where, out.params = plan.match, plan.where or "", plan.params
    if plan.where == "0" and plan.match is None:
        out.empty = True
    return out
