"""PubMed query (``clinfo.pubmed.query`` AST) or plain text -> a small query plan for the lexical index.

The plan is plain data (``Text``, ``Year``, ``Pmids``, ``And``, ``Or``, ``Not``, ``Natural``), so
translation is testable without an index; ``clinfo.corpus.lexical`` compiles it to Tantivy queries.
What maps, and how:

* AND / OR / NOT and parentheses map to boolean clauses; PubMed's left-to-right grouping is
  already explicit in the AST.
* An untagged word searches title, abstract and MeSH (PubMed's All Fields, minus automatic term
  mapping); a run of untagged words is the AND of its words, stopwords dropped as PubMed does.
  A quoted phrase, a tagged run of words and a hyphenated word are phrases.
* ``[tiab] [ti] [ab] [tw] [all]`` restrict fields; ``[mh]``/``[MeSH Terms]`` match a phrase inside
  a MeSH heading ("Neoplasms" also matches "Breast Neoplasms", a rough stand-in for explosion);
  ``[majr]`` reads as ``[mh]`` because major-topic flags are not stored; ``[pt]`` matches
  publication types; ``[pmid]`` looks PMIDs up.
* ``[dp]``/``[pdat]`` ranges filter on the publication year, an indexed field (the corpus stores
  the year only; a month or day in the range is widened to its year, with a warning).
* ``canc*`` is a prefix query (PubMed needs 4+ letters before ``*``; shorter ones are searched
  without truncation, with a warning, which also bounds the cost of the expansion).
* ``"hip pain"[tiab:~2]`` is a sloppy phrase.
* Tags the corpus cannot honour never fail: ``[la]``/``[sb]``/``[filter]`` are dropped, other tags
  (``[au]``, ``[ta]``, ``[nm]`` ...) become plain text terms; each adds a warning.

Text without field tags or upper-case operators is natural language: its content words (quoted
phrases kept whole) are ORed and BM25 ranks the union, which suits a question typed as is. Text
that has PubMed syntax but does not parse (a pasted question with ``[...]`` or a stray ``(``) is
searched the same way, with a warning: natural language never fails as syntax.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from clinfo.errors import QuerySyntaxError
from clinfo.pubmed.query import SHORT_TAG, Dates, Node, Term, is_boolean, parse, plain_words
from clinfo.terms import STOPWORDS

__all__ = [
    "MAX_QUERY_CHARS",
    "QUESTION_STOPWORDS",
    "TEXT_FIELDS",
    "And",
    "Natural",
    "Not",
    "Or",
    "Plan",
    "Pmids",
    "Text",
    "Translation",
    "Year",
    "translate",
    "words_of",
]

MAX_QUERY_CHARS = 10_000
_MAX_NL_WORDS = 64

TEXT_FIELDS = ("title", "abstract", "mesh")  # what an untagged word searches
_FIELDS: dict[str | None, tuple[str, ...]] = {
    None: TEXT_FIELDS,
    "All Fields": TEXT_FIELDS,
    "Text Word": TEXT_FIELDS,
    "Title/Abstract": ("title", "abstract"),
    "Title": ("title",),
    "Transliterated Title": ("title",),
    "Abstract": ("abstract",),
    "MeSH Terms": ("mesh",),
    "MeSH Major Topic": ("mesh",),
    "Publication Type": ("pubtype",),
}
_IGNORED = {"Language": "language", "Filter": "filters/subsets"}
_MESH = {"MeSH Terms", "MeSH Major Topic"}

# Words that carry no topic in a typed question, beyond the function words terms.STOPWORDS holds:
# natural-language queries drop them (benchmarks/ranking_sets.py drops them from its questions too).
QUESTION_STOPWORDS = STOPWORDS | frozenset(
    """about after all also among any been before being between both but could did does doing during each
    into may might more most much must no nor not only other our out over same should so some such
    then them they through under until very we while would you your i me my is there versus vs""".split()
)

# The index's tokenizer splits on everything but letters and digits; so do we.
_TOKEN = re.compile(r"[^\W_]+")


def words_of(text: str) -> list[str]:
    """Lower-cased tokens of ``text`` as the index splits it (before stemming)."""
    return _TOKEN.findall(text.lower())


# ------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True)
class Text:
    """Tokens in some fields: one token is a term, several a phrase (``slop`` gaps allowed)."""

    fields: tuple[str, ...]
    tokens: tuple[str, ...]
    prefix: bool = False  # the last token is a prefix
    slop: int = 0

    def __str__(self) -> str:
        body = " ".join(self.tokens) + ("*" if self.prefix else "")
        body = f'"{body}"' if len(self.tokens) > 1 else body
        return f"{'|'.join(self.fields)}:{body}" + (f"~{self.slop}" if self.slop else "")


@dataclass(frozen=True)
class Year:
    """Publication year in ``lo..hi`` (inclusive; None: open); articles without a year never match."""

    lo: int | None
    hi: int | None

    def __str__(self) -> str:
        return f"year:[{self.lo if self.lo is not None else '*'} TO {self.hi if self.hi is not None else '*'}]"


@dataclass(frozen=True)
class Pmids:
    ids: tuple[int, ...]

    def __str__(self) -> str:
        return f"pmid:({' '.join(map(str, self.ids))})" if self.ids else "NOTHING"


@dataclass(frozen=True)
class And:
    children: tuple[Plan, ...]

    def __str__(self) -> str:
        return "(" + " AND ".join(map(str, self.children)) + ")"


@dataclass(frozen=True)
class Or:
    children: tuple[Plan, ...]

    def __str__(self) -> str:
        return "(" + " OR ".join(map(str, self.children)) + ")"


@dataclass(frozen=True)
class Not:
    """``positive`` without any of ``negatives``; ``positive`` None means every article."""

    positive: Plan | None
    negatives: tuple[Plan, ...]

    def __str__(self) -> str:
        neg = " ".join(f"NOT {n}" for n in self.negatives)
        return f"({self.positive} {neg})" if self.positive is not None else f"(* {neg})"


@dataclass(frozen=True)
class Natural:
    """Ranked OR of content words (each over ``TEXT_FIELDS``), phrases and prefixes."""

    words: tuple[str, ...]
    phrases: tuple[tuple[str, ...], ...] = ()
    prefixes: frozenset[str] = frozenset()

    def __str__(self) -> str:
        parts = [f'"{" ".join(p)}"' for p in self.phrases] + [
            w + ("*" if w in self.prefixes else "") for w in self.words
        ]
        return "ANY(" + " ".join(parts) + ")"


Plan = Text | Year | Pmids | And | Or | Not | Natural


@dataclass
class Translation:
    """A query as the lexical index will run it. ``plan`` None: no text constraint (every article)."""

    query: str
    plan: Plan | None = None
    warnings: list[str] = field(default_factory=list)
    natural: bool = False
    empty: bool = False  # nothing searchable: the answer is no results

    @property
    def text(self) -> str:
        if self.empty:
            return "(nothing searchable)"
        return str(self.plan) if self.plan is not None else "(everything)"


# ----------------------------------------------------------------------------------- PubMed AST


class _Translator:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def node(self, node: Node) -> Plan | None:
        """None: the node constrains nothing we can evaluate and is left out of its parent."""
        if isinstance(node, Term):
            return self.term(node)
        if isinstance(node, Dates):
            return self.dates(node)
        kids = [self.node(c) for c in node.children]
        if node.op == "NOT":
            negs = tuple(k for k in kids[1:] if k is not None)
            return Not(kids[0], negs) if negs else kids[0]
        plans = tuple(k for k in kids if k is not None)
        if not plans:
            return None
        if len(plans) == 1:
            return plans[0]
        return And(plans) if node.op == "AND" else Or(plans)

    def term(self, t: Term) -> Plan | None:
        tag = f"[{SHORT_TAG[t.field]}]" if t.field else ""
        if t.field in _IGNORED:
            self.warn(f"{tag} ignored: the local corpus has no {_IGNORED[t.field]}")
            return None
        if t.field == "PMID":
            return Pmids(tuple(int(x) for x in words_of(t.text) if x.isdigit() and len(x) < 19))
        text = t.text
        if t.field in _MESH and "/" in text:
            self.warn(f"MeSH subheadings are not stored locally; {t.text!r} matched on its heading")
            text = text.split("/", 1)[0]
        if t.field == "MeSH Major Topic":
            self.warn("[majr] searched as [mh]: major-topic flags are not stored locally")
        fields = _FIELDS.get(t.field)
        if fields is None:
            self.warn(f"{tag} is not indexed locally; {t.text!r} searched as text")
            fields = TEXT_FIELDS
        prefix = text.endswith("*")
        if prefix:
            stem = text.rstrip("*").split()[-1] if text.rstrip("*").split() else ""
            if len(stem) < 4:
                self.warn(f"truncation needs at least 4 letters; {t.text!r} searched without it")
                prefix = False
        if t.proximity is not None:
            toks = tuple(words_of(text))
            if not toks:
                return self._unsearchable(t)
            return Text(fields, toks, slop=t.proximity)
        if t.phrase or (t.quoted and len(t.words) == 1):
            toks = tuple(words_of(text))
            return Text(fields, toks, prefix) if toks else self._unsearchable(t)
        # A run of untagged words, or one word: AND of the words (a hyphenated word is a phrase).
        parts = []
        words = text.split()
        for i, word in enumerate(words):
            toks = tuple(words_of(word))
            if not toks or (len(toks) == 1 and toks[0] in STOPWORDS and not word.endswith("*")):
                continue
            parts.append(Text(fields, toks, prefix and i == len(words) - 1))
        if not parts:
            return self._unsearchable(t)
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def _unsearchable(self, t: Term) -> None:
        self.warn(f"{t.text!r} is only stopwords or punctuation and was left out")

    def dates(self, d: Dates) -> Plan:
        tag = f"[{SHORT_TAG[d.field]}]"
        if d.field != "Date - Publication":
            self.warn(f"{tag} approximated by the publication year")
        if d.relative:
            n, unit = d.relative
            days = {"years": 365.25, "months": 30.44, "days": 1}[unit] * n
            return Year((dt.date.today() - dt.timedelta(days=days)).year, None)
        if "/" in d.start or "/" in d.end:
            self.warn(
                f"date range {d.start}:{d.end} widened to whole years: the corpus stores the publication year only"
            )
        return Year(int(d.start[:4]), int(d.end[:4]))


# ---------------------------------------------------------------------------- natural language

_QUOTED = re.compile(r'"([^"]*)"')


def _natural(query: str, warnings: list[str]) -> Translation:
    """Ranked retrieval over the OR of the content words; quoted text stays a phrase, ``word*`` a prefix."""
    out = Translation(query=query, natural=True, warnings=warnings)
    phrases: list[tuple[str, ...]] = []
    rest = query
    if query.count('"') % 2 == 0:  # unbalanced quotes in typed text: ignore them all
        for m in _QUOTED.finditer(query):
            toks = tuple(words_of(m.group(1)))
            if len(toks) > 1:
                phrases.append(toks)
        rest = _QUOTED.sub(lambda m: " " if len(words_of(m.group(1))) > 1 else m.group(1), query)
    words = [w for w in dict.fromkeys(words_of(rest)) if w not in QUESTION_STOPWORDS]
    prefixes = frozenset(m.lower() for m in re.findall(r"([^\W_]{4,})\*", rest))
    if len(words) > _MAX_NL_WORDS:
        out.warnings.append(f"query cut to its first {_MAX_NL_WORDS} content words")
        words = words[:_MAX_NL_WORDS]
    if not words and not phrases:
        out.empty = True
        out.warnings.append("no searchable words in the query")
        return out
    out.plan = Natural(tuple(words), tuple(dict.fromkeys(phrases)), prefixes & set(words))
    return out


# ------------------------------------------------------------------------------------ public API


def translate(query: str) -> Translation:
    """The plan for a PubMed query or plain text. Never raises: what does not parse is searched as words."""
    if not query.strip():
        return Translation(query=query, empty=True, warnings=["empty query"])
    if not is_boolean(query):
        return _natural(query, [])  # bounded by its word cap, however long the text
    try:
        if len(query) > MAX_QUERY_CHARS:
            raise QuerySyntaxError(f"query is {len(query):,} characters; the limit is {MAX_QUERY_CHARS:,}")
        node = parse(query)
    except QuerySyntaxError as exc:
        note = f"not PubMed syntax ({exc}); searched as plain words"
        return _natural(plain_words(query), [note])
    tr = _Translator()
    plan = tr.node(node)
    out = Translation(query=query, plan=plan, warnings=tr.warnings)
    if plan is None:
        out.warnings.append("nothing in the query can be searched locally; returning the most recent articles")
    elif plan == Pmids(()):
        out.empty = True
    return out
