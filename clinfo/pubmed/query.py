"""PubMed query syntax: a parser into a small AST, validation and normalisation.

The grammar follows PubMed's search help rather than a textbook boolean grammar:

* Boolean operators are the upper-case words ``AND``, ``OR`` and ``NOT``; lower-case ``and``/``or``
  are ordinary (stop)words, as in PubMed. ``AND NOT`` is accepted as ``NOT``.
* Operators have no precedence: PubMed evaluates left to right, so ``a OR b AND c`` means
  ``(a OR b) AND c``. Parentheses group.
* Adjacent terms are ANDed. A run of bare words is kept as one ``Term`` so that normalising a query
  does not change what PubMed's automatic term mapping sees (``heart attack`` is not ``heart AND attack``
  to PubMed). A run of bare words followed by a field tag is searched by PubMed as a phrase
  (``kidney allograft[tiab]``), so the tag binds to the whole run.
* Field tags in brackets, long or short forms, case-insensitive, with ``:noexp`` for MeSH-like tags
  and ``:~N`` proximity for ``[tiab]``/``[ti]``/``[ad]``.
* Date ranges ``2015:2020[dp]``, ``2015/01/01:2020/12/31[pdat]``, E-utilities' translation form
  ``"2015/01/01"[PDAT] : "2020/12/31"[PDAT]`` and relative ``"last 5 years"[dp]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Literal

from clinfo.errors import QuerySyntaxError

__all__ = [
    "KNOWN_TAGS",
    "SHORT_TAG",
    "DATE_FIELDS",
    "Term",
    "Dates",
    "BoolOp",
    "Node",
    "parse",
    "validate",
    "terms",
    "is_boolean",
    "iter_leaves",
    "plain_words",
]

# Canonical name -> every spelling PubMed accepts for it (matched case-insensitively).
# The first spelling is the short form used when normalising a query.
_TAG_SPELLINGS: dict[str, tuple[str, ...]] = {
    "All Fields": ("all", "all fields"),
    "Affiliation": ("ad", "affiliation", "affl"),
    "Article Identifier": ("aid", "article identifier"),
    "Author": ("au", "author", "auth", "author name"),
    "Author - Corporate": ("cn", "corporate author", "author - corporate"),
    "Author - First": ("1au", "first author", "first author name", "author - first"),
    "Author - Last": ("lastau", "last author", "last author name", "author - last"),
    "Author - Full": ("fau", "full author name", "author - full", "full"),
    "Author - Identifier": ("auid", "author identifier", "author - identifier"),
    "Book": ("book",),
    "Conflict of Interest Statements": (
        "cois",
        "conflict of interest statement",
        "conflict of interest statements",
    ),
    "Date - Completion": ("dcom", "completion date", "date - completion"),
    "Date - Create": ("crdt", "create date", "date - create"),
    "Date - Entry": ("edat", "entry date", "entrez date", "date - entry", "date - entrez"),
    "Date - MeSH": ("mhda", "mesh date", "date - mesh"),
    "Date - Modification": ("lr", "modification date", "date - modification", "date - last revised"),
    "Date - Publication": ("dp", "pdat", "publication date", "date - publication"),
    "Date - Electronic Publication": ("epdat", "dep", "electronic publication date"),
    "Date - Print Publication": ("ppdat", "print publication date"),
    "EC/RN Number": ("rn", "ec/rn number", "ecno"),
    "Editor": ("ed", "editor"),
    "Filter": ("sb", "filter", "subset", "filt"),
    "Grants and Funding": ("gr", "grants and funding", "grant number", "grnt"),
    "Investigator": ("ir", "investigator", "invr"),
    "Investigator - Full": ("fir", "full investigator name", "investigator - full", "finv"),
    "ISBN": ("isbn",),
    "Issue": ("ip", "issue", "iss"),
    "Journal": ("ta", "journal", "jour"),
    "Language": ("la", "language", "lang"),
    "Location ID": ("lid", "location id"),
    "MeSH Major Topic": ("majr", "mesh major topic"),
    "MeSH Subheading": ("sh", "mesh subheading", "subheading", "subh"),
    "MeSH Terms": ("mh", "mesh terms", "mesh", "mesh term"),
    "NLM Unique ID": ("jid", "nlm unique id"),
    "Other Term": ("ot", "other term", "other terms", "otrm"),
    "Owner": ("owner",),
    "Pagination": ("pg", "pagination", "page"),
    "Personal Name as Subject": ("ps", "personal name as subject"),
    "Pharmacological Action": ("pa", "pharmacological action"),
    "Place of Publication": ("pl", "place of publication", "cnty"),
    "PMID": ("pmid", "uid", "pubmed id"),
    "Publisher": ("pubn", "publisher"),
    "Publication Type": ("pt", "publication type", "ptyp"),
    "Secondary Source ID": ("si", "secondary source id"),
    "Supplementary Concept": ("nm", "supplementary concept", "substance name"),
    "Text Word": ("tw", "text word", "text words", "word"),
    "Title": ("ti", "title", "titl"),
    "Title/Abstract": ("tiab", "title/abstract"),
    # Not in PubMed's documented list, but clinfo's offline corpus and many query writers use it.
    "Abstract": ("ab", "abstract"),
    "Transliterated Title": ("tt", "transliterated title"),
    "Volume": ("vi", "volume", "vol"),
}

KNOWN_TAGS: dict[str, str] = {
    spelling: canonical for canonical, spellings in _TAG_SPELLINGS.items() for spelling in spellings
}
"""Lower-case tag spelling (``"tiab"``, ``"title/abstract"``, ``"mesh terms"``) -> canonical name."""

SHORT_TAG: dict[str, str] = {canonical: spellings[0] for canonical, spellings in _TAG_SPELLINGS.items()}
"""Canonical name -> the short tag used in normalised queries."""

DATE_FIELDS = frozenset(c for c in _TAG_SPELLINGS if c.startswith("Date - "))
_NOEXP_FIELDS = frozenset({"MeSH Terms", "MeSH Major Topic", "MeSH Subheading", "Pharmacological Action"})
_PROXIMITY_FIELDS = frozenset({"Title/Abstract", "Title", "Affiliation", "Abstract"})
OPERATORS = ("AND", "OR", "NOT")


# ---------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Term:
    """Words or a quoted phrase, optionally restricted to a field.

    ``text`` is one bare word, a run of bare words (``heart attack``) or the inside of a quoted
    phrase. ``field`` is a canonical name from ``KNOWN_TAGS`` or None (PubMed's All Fields with
    automatic term mapping). ``pos`` is the 1-based character where the term starts.
    """

    text: str
    field: str | None = None
    quoted: bool = False
    noexp: bool = False
    proximity: int | None = None
    pos: int = dc_field(default=0, compare=False)

    @property
    def words(self) -> list[str]:
        return self.text.split()

    @property
    def truncated(self) -> bool:
        return self.text.endswith("*")

    @property
    def phrase(self) -> bool:
        """PubMed searches quoted text, and a tagged run of words, as a phrase."""
        return len(self.words) > 1 and (self.quoted or self.field is not None)

    def __str__(self) -> str:
        text = f'"{self.text}"' if self.quoted else self.text
        return text + _tag_text(self.field, self.noexp, self.proximity)


@dataclass(frozen=True)
class Dates:
    """A date filter: ``start``..``end`` inclusive as ``YYYY[/MM[/DD]]``, or ``last N units``."""

    field: str
    start: str = ""
    end: str = ""
    relative: tuple[int, str] | None = None  # (5, "years") for "last 5 years"[dp]
    pos: int = dc_field(default=0, compare=False)

    def __str__(self) -> str:
        tag = _tag_text(self.field)
        if self.relative:
            n, unit = self.relative
            return f'"last {n} {unit}"{tag}'
        return (self.start if self.start == self.end else f"{self.start}:{self.end}") + tag


@dataclass(frozen=True)
class BoolOp:
    """``AND``/``OR`` of all children; ``NOT``: the first child without any of the others."""

    op: Literal["AND", "OR", "NOT"]
    children: tuple[Node, ...]
    pos: int = dc_field(default=0, compare=False)

    def __str__(self) -> str:
        parts = [f"({c})" if isinstance(c, BoolOp) else str(c) for c in self.children]
        return f" {self.op} ".join(parts)


Node = Term | Dates | BoolOp


def _tag_text(canonical: str | None, noexp: bool = False, proximity: int | None = None) -> str:
    if canonical is None:
        return ""
    mod = ":noexp" if noexp else (f":~{proximity}" if proximity is not None else "")
    return f"[{SHORT_TAG[canonical]}{mod}]"


def iter_leaves(node: Node, negated: bool = False) -> Iterator[tuple[Term | Dates, bool]]:
    """Every leaf with whether it sits under the negative side of a NOT (odd number of times)."""
    if isinstance(node, BoolOp):
        for i, child in enumerate(node.children):
            yield from iter_leaves(child, negated ^ (node.op == "NOT" and i > 0))
    else:
        yield node, negated


# ------------------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    kind: Literal["word", "quoted", "tag", "op", "lpar", "rpar"]
    text: str
    pos: int  # 1-based


_WORD_STOP = set('()[]"') | {" ", "\t", "\n", "\r", "\f", "\v"}


def _lex(query: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            toks.append(_Tok("lpar", ch, i + 1))
            i += 1
        elif ch == ")":
            toks.append(_Tok("rpar", ch, i + 1))
            i += 1
        elif ch == '"':
            end = query.find('"', i + 1)
            if end < 0:
                raise QuerySyntaxError(f"unbalanced quotes: '\"' at character {i + 1} is never closed")
            text = " ".join(query[i + 1 : end].split())
            if not text:
                raise QuerySyntaxError(f"empty quoted phrase at character {i + 1}")
            toks.append(_Tok("quoted", text, i + 1))
            i = end + 1
        elif ch == "[":
            end = query.find("]", i + 1)
            nested = query.find("[", i + 1)
            if end < 0 or (0 <= nested < end):
                raise QuerySyntaxError(f"unbalanced brackets: '[' at character {i + 1} is never closed")
            toks.append(_Tok("tag", query[i + 1 : end], i + 1))
            i = end + 1
        elif ch == "]":
            raise QuerySyntaxError(f"unbalanced brackets: ']' at character {i + 1} has no matching '['")
        else:
            j = i
            while j < n and query[j] not in _WORD_STOP and not query[j].isspace():
                j += 1
            word = query[i:j]
            toks.append(_Tok("op" if word in OPERATORS else "word", word, i + 1))
            i = j
    return toks


# ------------------------------------------------------------------------------------ parser

_DATE_RE = re.compile(r"^(\d{4})(?:[/-](\d{1,2})(?:[/-](\d{1,2}))?)?$")
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_TEXT_DATE_RE = re.compile(r"^(\d{4})\s+([a-z]{3})[a-z]*\.?(?:\s+(\d{1,2}))?$", re.I)
_RELATIVE_RE = re.compile(r"^last\s+(\d{1,4})\s+(year|month|day)s?$", re.I)


def _parse_tag(raw: str, pos: int) -> tuple[str, bool, int | None]:
    """``tiab``, ``MeSH Terms:noexp``, ``tiab:~3`` -> (canonical, noexp, proximity)."""
    raw = " ".join(raw.split())  # messages stay on one line
    base, modifier = raw, ""
    if ":" in raw:
        base, modifier = raw.rsplit(":", 1)
    key = " ".join(base.lower().split())
    canonical = KNOWN_TAGS.get(key)
    if canonical is None:
        raise QuerySyntaxError(f"unknown field tag [{raw.strip()}] at character {pos}")
    modifier = modifier.strip().lower()
    if not modifier:
        return canonical, False, None
    if modifier == "noexp" and canonical in _NOEXP_FIELDS:
        return canonical, True, None
    m = re.fullmatch(r"~\s*(\d{1,3})", modifier)
    if m and canonical in _PROXIMITY_FIELDS:
        return canonical, False, int(m.group(1))
    raise QuerySyntaxError(f"unsupported modifier in field tag [{raw.strip()}] at character {pos}")


def _norm_date(text: str, tag: str, pos: int) -> str:
    text = text.strip()
    m = _DATE_RE.match(text)
    if m:
        year, month, day = m.groups()
    else:
        m = _TEXT_DATE_RE.match(text)
        if not m or m.group(2).lower() not in _MONTHS:
            raise QuerySyntaxError(
                f"invalid date {text!r} for [{tag}] at character {pos}; use YYYY, YYYY/MM or YYYY/MM/DD"
            )
        year, month, day = m.group(1), str(_MONTHS[m.group(2).lower()]), m.group(3)
    if month is not None and not 1 <= int(month) <= 12 or day is not None and not 1 <= int(day) <= 31:
        raise QuerySyntaxError(f"invalid date {text!r} for [{tag}] at character {pos}")
    out = year
    if month is not None:
        out += f"/{int(month):02d}"
        if day is not None:
            out += f"/{int(day):02d}"
    return out


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    # expr := unit (op? unit)*   -- left to right, no precedence, as PubMed
    def expr(self, depth: int) -> Node:
        tok = self.peek()
        if tok is not None and tok.kind == "op":
            raise QuerySyntaxError(f"operator {tok.text} at character {tok.pos} has no term before it")
        node = self.unit(depth)
        while True:
            tok = self.peek()
            if tok is None or tok.kind == "rpar":
                return node
            op, op_pos = "AND", tok.pos
            if tok.kind == "op":
                self.take()
                op = tok.text
                nxt = self.peek()
                if op == "AND" and nxt is not None and nxt.kind == "op" and nxt.text == "NOT":
                    self.take()  # "AND NOT" reads as NOT
                    op, nxt = "NOT", self.peek()
                if nxt is None or nxt.kind == "rpar":
                    raise QuerySyntaxError(f"operator {op} at character {tok.pos} has no term after it")
                if nxt.kind == "op":
                    raise QuerySyntaxError(f"operator {nxt.text} at character {nxt.pos} follows operator {op}")
            right = self.unit(depth)
            if isinstance(node, BoolOp) and node.op == op:
                node = BoolOp(op, node.children + (right,), node.pos)
            else:
                node = BoolOp(op, (node, right), op_pos)  # type: ignore[arg-type]

    def unit(self, depth: int) -> Node:
        tok = self.peek()
        assert tok is not None
        if tok.kind == "lpar":
            self.take()
            if depth > 200:
                raise QuerySyntaxError(f"parentheses nested too deeply at character {tok.pos}")
            nxt = self.peek()
            if nxt is None:
                raise QuerySyntaxError(f"unbalanced parentheses: '(' at character {tok.pos} is never closed")
            if nxt.kind == "rpar":
                raise QuerySyntaxError(f"empty parentheses at character {tok.pos}")
            node = self.expr(depth + 1)
            close = self.peek()
            if close is None:
                raise QuerySyntaxError(f"unbalanced parentheses: '(' at character {tok.pos} is never closed")
            self.take()
            after = self.peek()
            if after is not None and after.kind == "tag":
                raise QuerySyntaxError(
                    f"field tag [{after.text}] at character {after.pos} follows ')';"
                    " tag each term inside the parentheses"
                )
            return node
        if tok.kind == "rpar":
            raise QuerySyntaxError(f"unbalanced parentheses: ')' at character {tok.pos} has no matching '('")
        if tok.kind == "tag":
            raise QuerySyntaxError(f"field tag [{tok.text}] at character {tok.pos} does not follow a term")
        return self.atom()

    def atom(self) -> Node:
        first = self.take()
        if first.kind == "quoted":
            text, quoted = first.text, True
        else:
            words = [first]
            while (nxt := self.peek()) is not None and nxt.kind == "word":
                words.append(self.take())
            split = self._date_split(words)
            if split:
                # "asthma 2015:2020[dp]": the date tag takes only the date; the words before it are
                # their own term, ANDed implicitly like any neighbour (left to right, as PubMed).
                self.i -= len(words) - split
                return self._term(" ".join(w.text for w in words[:split]), None, False, False, None, first.pos)
            text, quoted = " ".join(w.text for w in words), False
        tag = self.peek()
        if tag is None or tag.kind != "tag":
            return self._term(text, None, quoted, False, None, first.pos)
        self.take()
        canonical, noexp, prox = _parse_tag(tag.text, tag.pos)
        if (extra := self.peek()) is not None and extra.kind == "tag":
            raise QuerySyntaxError(f"second field tag [{extra.text}] at character {extra.pos}; a term takes one tag")
        if canonical in DATE_FIELDS:
            return self._dates(text, canonical, first.pos)
        return self._term(text, canonical, quoted, noexp, prox, first.pos)

    def _date_split(self, words: list[_Tok]) -> int:
        """Where the date value starts in a run of words followed by a date tag (0: no split)."""
        tag = self.peek()
        if len(words) < 2 or tag is None or tag.kind != "tag":
            return 0
        try:
            canonical = _parse_tag(tag.text, tag.pos)[0]
        except QuerySyntaxError:
            return 0
        if canonical not in DATE_FIELDS or _is_date_value(" ".join(w.text for w in words)):
            return 0
        for k in (3, 2, 1):  # longest date-looking suffix: "2020 Jan 15", "2020 Jan", "2020"
            if k < len(words) and _is_date_value(" ".join(w.text for w in words[-k:])):
                return len(words) - k
        return 0

    @staticmethod
    def _term(text: str, fld: str | None, quoted: bool, noexp: bool, prox: int | None, pos: int) -> Term:
        if text.strip("*") == "":
            raise QuerySyntaxError(f"truncation '*' without a word at character {pos}")
        return Term(text, fld, quoted, noexp, prox, pos)

    def _dates(self, text: str, canonical: str, pos: int) -> Dates:
        tag = SHORT_TAG[canonical]
        rel = _RELATIVE_RE.match(text.strip())
        if rel:
            n, unit = int(rel.group(1)), rel.group(2).lower() + "s"
            return Dates(canonical, relative=(n, unit), pos=pos)
        if ":" in text:
            lo, hi = text.split(":", 1)
        else:
            lo, hi = text, ""
            # E-utilities' translation form: "2015/01/01"[PDAT] : "2020/12/31"[PDAT]
            nxt = self.peek()
            if nxt is not None and nxt.kind == "word" and nxt.text.startswith(":"):
                rest = nxt.text[1:]
                value = self.peek(1) if not rest else nxt
                tag_tok = self.peek(2) if not rest else self.peek(1)
                if (
                    value is not None
                    and value.kind in ("word", "quoted")
                    and tag_tok is not None
                    and tag_tok.kind == "tag"
                ):
                    hi_field, _, _ = _parse_tag(tag_tok.text, tag_tok.pos)
                    if hi_field != canonical:
                        raise QuerySyntaxError(f"date range at character {pos} mixes [{tag}] and [{tag_tok.text}]")
                    self.i += 2 if rest else 3
                    hi = rest or value.text
                else:
                    raise QuerySyntaxError(f"incomplete date range after character {pos}")
        start = _norm_date(lo, tag, pos)
        end = _norm_date(hi, tag, pos) if hi.strip() else start
        if _date_key(end, high=True) < _date_key(start, high=False):
            raise QuerySyntaxError(f"date range {start}:{end} at character {pos} ends before it starts")
        return Dates(canonical, start, end, pos=pos)


def _is_date_value(text: str) -> bool:
    parts = text.split(":", 1)
    try:
        for part in parts:
            _norm_date(part, "dp", 0)
    except QuerySyntaxError:
        return bool(_RELATIVE_RE.match(text.strip()))
    return True


def _date_key(value: str, high: bool) -> tuple[int, int, int]:
    parts = [int(p) for p in value.split("/")]
    fill = [12, 31] if high else [1, 1]
    while len(parts) < 3:
        parts.append(fill[len(parts) - 1])
    return parts[0], parts[1], parts[2]


# -------------------------------------------------------------------------------- public API


def parse(query: str) -> Node:
    """The AST of a PubMed query; raises ``QuerySyntaxError`` saying what is wrong and where."""
    if not isinstance(query, str):
        raise QuerySyntaxError(f"query must be text, got {type(query).__name__}")
    if "\x00" in query:
        raise QuerySyntaxError(f"NUL character at character {query.index(chr(0)) + 1}")
    toks = _lex(query)
    if not toks:
        raise QuerySyntaxError("empty query")
    parser = _Parser(toks)
    node = parser.expr(0)
    if parser.i < len(toks):
        tok = toks[parser.i]
        raise QuerySyntaxError(f"unbalanced parentheses: ')' at character {tok.pos} has no matching '('")
    if _depth(node) > MAX_DEPTH:
        # Alternating operators nest left to right; consumers of the AST recurse over it.
        raise QuerySyntaxError(f"query nests more than {MAX_DEPTH} operators deep; simplify it")
    return node


MAX_DEPTH = 50  # far beyond real queries; keeps the recursive walks of a hostile query (and the lexical plan) shallow


def _depth(node: Node) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(current, BoolOp):
            stack.extend((c, d + 1) for c in current.children)
    return deepest


def validate(query: str) -> str:
    """The query normalised (short lower-case tags, explicit operators, grouping made explicit)."""
    return str(parse(query))


_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
# Tags whose values are not topical words (names, identifiers, filters): left out of terms().
_NON_TOPICAL = frozenset(
    {
        "Affiliation", "Article Identifier", "Author", "Author - Corporate", "Author - First",
        "Author - Last", "Author - Full", "Author - Identifier", "Editor", "Filter", "Grants and Funding",
        "Investigator", "Investigator - Full", "ISBN", "Issue", "Journal", "Language", "Location ID",
        "NLM Unique ID", "Owner", "Pagination", "PMID", "Publisher", "Secondary Source ID", "Volume",
        "Place of Publication", "EC/RN Number", "Publication Type",
    }
)  # fmt: skip


def terms(query: str | Node) -> list[str]:
    """The plain topical words of a query, lower-cased, deduplicated, in order of appearance.

    Negated terms, dates and non-topical fields (authors, journals, filters, publication types)
    are left out. Text that does not parse as a query (a typed question with a stray parenthesis)
    falls back to its words, so this never raises.
    """
    if isinstance(query, str):
        try:
            node: Node = parse(query)
        except QuerySyntaxError:
            return _dedupe(w.lower() for w in _WORD.findall(query))
    else:
        node = query
    out: list[str] = []
    for leaf, negated in iter_leaves(node):
        if negated or not isinstance(leaf, Term) or leaf.field in _NON_TOPICAL:
            continue
        out.extend(w.lower() for w in _WORD.findall(leaf.text))
    return _dedupe(out)


def plain_words(text: str) -> str:
    """Text that is not valid PubMed syntax reduced to its words, so it can be searched as natural
    language: a pasted question with ``[...]``, a stray ``(`` or ``:`` never fails as a query.
    Upper-case operators become lower-case words; a trailing ``*`` on a word is kept."""
    return " ".join(m.group(0).lower() if m.group(0) in OPERATORS else m.group(0) for m in _PLAIN.finditer(text))


_PLAIN = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*\*?")


def _dedupe(words: Iterator[str] | list[str]) -> list[str]:
    return list(dict.fromkeys(words))


# An operator followed by punctuation has no operand: "time in the OR. Scans..." is the operating
# room, not a union (read as one, each side became an AND of a dozen words: no hits). A trailing
# operator ("cancer AND") stays a signal: that is a malformed query, searched as words with a warning.
_STRUCTURE_SIGNAL = re.compile(r"[\[\]]|\b(?:AND|OR|NOT)\b(?!\s*[.,;:!?)])")


def is_boolean(query: str) -> bool:
    """Whether text uses field tags or upper-case boolean operators (not followed by punctuation).

    Without them, quotes and ``*`` alone occur in typed questions too (``the "July effect"``);
    the local corpus ranks such text by BM25 over the OR of its words instead of requiring all.
    """
    return bool(_STRUCTURE_SIGNAL.search(query))
