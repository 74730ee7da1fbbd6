"""The lexical index: Tantivy beside the record store, BM25 with top-k pruning (block-max WAND).

Layout: ``corpus.db.tantivy/`` next to ``corpus.db``. One document per article the record store
holds: ``pmid`` (indexed, fast), ``title``/``abstract``/``mesh``/``pubtype`` (text with positions,
one value per MeSH heading or publication type so phrases never run across two of them) and
``year`` (indexed, fast; absent when unknown). Texts are not stored: records come from SQLite.

Ranking cost follows the top k, not the matches: a natural-language question is one flat OR of
term queries, which Tantivy answers with block-max WAND; filters (years, PMIDs, publication
types) are constant-score clauses, and a date window on a question is applied to an over-fetched
top list first (see ``LexicalIndex.search``) so a wide window never forces every match to be scored.

Tantivy objects are created lazily (``import clinfo.corpus.lexical`` does not load tantivy).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinfo.corpus.lexical_query import TEXT_FIELDS, And, Natural, Not, Or, Plan, Pmids, Text, Translation, Year
from clinfo.errors import CorpusError, one_line

if TYPE_CHECKING:
    from clinfo.dates import DateRange

__all__ = ["ANALYZER", "FIELD_WEIGHTS", "LexicalIndex", "LexicalWriter", "lexical_dir"]

# Which analyzer new corpora use; a corpus records its own in the record store's meta table.
# Measured with benchmarks/retrieval_quality.py (PubMedQA dev, 34k articles) - see the README.
ANALYZER = "clinfo_stem"
# BM25 weight of a match per field for untagged words; publication types are filters, not topic.
# Each field is scored by its own BM25 and the scores add up, so a word in a short title already
# counts twice (title and abstract) with little saturation: a title weight above 1 buried the
# right article under titled near-misses. benchmarks/retrieval_quality.py --sets (34,481
# articles), nDCG@10 tune/check, title 2 / abstract 1 / MeSH 1 -> 0.5 / 1 / 0.5: nlm-conclusion
# (the set whose gold articles have titles) 0.942/0.949 -> 0.970/0.972; pqa 0.559/0.561 ->
# 0.926/0.911, rs200 0.271/0.244 -> 0.772/0.803 (their gold is untitled, which flatters any cut).
FIELD_WEIGHTS = {"title": 0.5, "abstract": 1.0, "mesh": 0.5}
_MAX_TOKEN = 40  # longer tokens (sequences, chemical names run together) are not indexed


def lexical_dir(db_path: str | os.PathLike[str]) -> Path:
    """Where the lexical index of the corpus at ``db_path`` lives."""
    return Path(f"{db_path}.tantivy")


def _analyzers() -> dict[str, Any]:
    import tantivy as tv

    def build(stem: bool) -> Any:
        b = tv.TextAnalyzerBuilder(tv.Tokenizer.simple())
        b = b.filter(tv.Filter.remove_long(_MAX_TOKEN)).filter(tv.Filter.lowercase()).filter(tv.Filter.ascii_fold())
        if stem:
            b = b.filter(tv.Filter.stemmer("english"))
        return b.build()

    return {"clinfo_stem": build(True), "clinfo_plain": build(False)}


def _schema(analyzer: str) -> Any:
    import tantivy as tv

    sb = tv.SchemaBuilder()
    sb.add_unsigned_field("pmid", indexed=True, fast=True)
    for name in ("title", "abstract", "mesh", "pubtype"):
        sb.add_text_field(name, tokenizer_name=analyzer, index_option="position")
    sb.add_integer_field("year", indexed=True, fast=True)
    return sb.build()


def _register(index: Any) -> dict[str, Any]:
    analyzers = _analyzers()
    for name, analyzer in analyzers.items():
        index.register_tokenizer(name, analyzer)
    return analyzers


def _tantivy_error(path: Path, exc: Exception) -> CorpusError:
    return CorpusError(f"lexical index {path} cannot be used: {one_line(exc)}")


# ---------------------------------------------------------------------------------------- writer


class LexicalWriter:
    """Adds and deletes documents; nothing is visible to readers before ``commit``.

    Deleting a PMID removes the documents added for it *before* the delete, so delete-then-add
    in one commit replaces a record.
    """

    def __init__(
        self, db_path: Path, analyzer: str, *, create: bool, heap_bytes: int = 256_000_000, threads: int = 1
    ) -> None:
        import tantivy as tv

        self.path = lexical_dir(db_path)
        try:
            if create:
                self.path.mkdir(parents=True, exist_ok=True)
                self.index = tv.Index(_schema(analyzer), path=str(self.path), reuse=False)
            else:
                self.index = tv.Index.open(str(self.path))
            _register(self.index)
            self.writer = self.index.writer(heap_bytes, threads)
        except (ValueError, OSError, RuntimeError) as exc:
            raise _tantivy_error(self.path, exc) from None
        self._doc = tv.Document
        self._query = tv.Query

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        """``(pmid, year, title, abstract, mesh, pubtype)`` per article, texts as the record store packs them."""
        Doc, w = self._doc, self.writer
        for pmid, year, title, abstract, mesh, pubtype in rows:
            doc = Doc(title=title, abstract=abstract)
            doc.add_unsigned("pmid", pmid)
            for m in mesh.split("\n") if mesh else ():
                doc.add_text("mesh", m)
            for p in pubtype.split("\n") if pubtype else ():
                doc.add_text("pubtype", p)
            if year is not None:
                doc.add_integer("year", year)
            w.add_document(doc)

    def delete(self, pmids: Iterable[int]) -> None:
        ids = [int(p) for p in pmids]
        if ids:
            # A term-set query takes the field's type from the schema (u64); one delete op per batch.
            q = self._query.term_set_query(self.index.schema, "pmid", ids)
            self.writer.delete_documents_by_query(q)

    def commit(self) -> None:
        try:
            self.writer.commit()
        except (ValueError, OSError, RuntimeError) as exc:
            raise _tantivy_error(self.path, exc) from None

    def close(self) -> None:
        """Wait for background segment merges (fewer segments: faster queries), release the lock."""
        try:
            self.writer.wait_merging_threads()
        except (ValueError, RuntimeError):
            pass  # already closed
        try:
            self.index.writer(15_000_000, 1).garbage_collect_files()
        except (ValueError, OSError, RuntimeError):
            pass  # another writer holds the lock: it will collect


# ---------------------------------------------------------------------------------------- reader


class LexicalIndex:
    """Top-k BM25 search over one corpus; safe to share between threads (a searcher per query)."""

    # Natural-language question with a date window: fetch this many times ``limit`` unfiltered (block-
    # max WAND), keep those in the window, and widen by the same factor until enough survive or the
    # over-fetch reaches _MAX_OVERFETCH; past that, the filtered query runs as an intersection.
    overfetch = 8
    max_overfetch = 4000

    def __init__(self, db_path: str | os.PathLike[str], analyzer: str) -> None:
        import tantivy as tv

        self._tv = tv
        self.path = lexical_dir(db_path)
        if not (self.path / "meta.json").is_file():
            raise CorpusError(
                f"no lexical index at {self.path}; rebuild it from the records with 'clinfo index upgrade {db_path}'"
            )
        try:
            self.index = tv.Index.open(str(self.path))
            self.analyzers = _register(self.index)
        except (ValueError, OSError, RuntimeError) as exc:
            raise _tantivy_error(self.path, exc) from None
        self.analyzer = self.analyzers.get(analyzer)
        if self.analyzer is None:
            raise CorpusError(f"lexical index {self.path} uses analyzer {analyzer!r}, which this clinfo does not know")
        self.schema = self.index.schema
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ compiling a plan

    def _tokens(self, words: Iterable[str]) -> list[str]:
        out: list[str] = []
        for w in words:
            out.extend(self.analyzer.analyze(w))
        return out

    def _field_query(self, field: str, tokens: list[str], prefix: bool, slop: int) -> Any:
        Q, s = self._tv.Query, self.schema
        if len(tokens) == 1 and not prefix:
            return Q.term_query(s, field, tokens[0])
        if len(tokens) == 1:
            # Tokens are letters and digits only, so the pattern needs no escaping.
            return Q.regex_query(s, field, tokens[0] + ".*")
        if prefix:
            return Q.phrase_prefix_query(s, field, tokens)
        return Q.phrase_query(s, field, tokens, slop)

    def _weighted(self, field: str, q: Any) -> Any:
        w = FIELD_WEIGHTS.get(field, 1.0)
        if field == "pubtype":
            return self._tv.Query.const_score_query(q, 0.0)
        return q if w == 1.0 else self._tv.Query.boost_query(q, w)

    def _text(self, t: Text) -> Any:
        tokens = self._tokens(t.tokens)
        if not tokens:
            return self._tv.Query.empty_query()
        clauses = [self._weighted(f, self._field_query(f, tokens, t.prefix, t.slop)) for f in t.fields]
        return clauses[0] if len(clauses) == 1 else self._should(clauses)

    def _should(self, clauses: list[Any]) -> Any:
        Occur = self._tv.Occur
        return self._tv.Query.boolean_query([(Occur.Should, c) for c in clauses])

    def _filter(self, q: Any) -> Any:
        return self._tv.Query.const_score_query(q, 0.0)

    def _year(self, lo: int | None, hi: int | None) -> Any:
        tv = self._tv
        return self._filter(tv.Query.range_query(self.schema, "year", tv.FieldType.Integer, lo, hi))

    def compile(self, plan: Plan) -> Any:
        tv = self._tv
        Q, Occur = tv.Query, tv.Occur
        if isinstance(plan, Text):
            return self._text(plan)
        if isinstance(plan, Year):
            return self._year(plan.lo, plan.hi)
        if isinstance(plan, Pmids):
            return self._filter(Q.term_set_query(self.schema, "pmid", list(plan.ids))) if plan.ids else Q.empty_query()
        if isinstance(plan, And):
            return Q.boolean_query([(Occur.Must, self.compile(c)) for c in plan.children])
        if isinstance(plan, Or):
            return Q.boolean_query([(Occur.Should, self.compile(c)) for c in plan.children])
        if isinstance(plan, Not):
            pos = self.compile(plan.positive) if plan.positive is not None else self._filter(Q.all_query())
            return Q.boolean_query([(Occur.Must, pos)] + [(Occur.MustNot, self.compile(n)) for n in plan.negatives])
        if isinstance(plan, Natural):
            # One flat OR of term queries: the shape block-max WAND prunes.
            clauses = []
            for word in plan.words:
                tokens = self._tokens([word])
                if len(tokens) != 1:
                    continue
                prefix = word in plan.prefixes
                clauses.extend(self._weighted(f, self._field_query(f, tokens, prefix, 0)) for f in TEXT_FIELDS)
            for phrase in plan.phrases:
                tokens = self._tokens(phrase)
                if len(tokens) > 1:
                    clauses.extend(self._weighted(f, self._field_query(f, tokens, False, 0)) for f in TEXT_FIELDS)
            return self._should(clauses) if clauses else Q.empty_query()
        raise TypeError(f"not a query plan: {plan!r}")

    # ------------------------------------------------------------------ searching

    @property
    def size(self) -> int:
        return int(self.index.searcher().num_docs)

    def doc_freq(self, word: str) -> int:
        """Articles whose title, abstract or MeSH hold ``word`` (the most of the three fields)."""
        tokens = self._tokens([word])
        if len(tokens) != 1:
            return 0
        searcher = self.index.searcher()
        return max(searcher.doc_freq(f, tokens[0]) for f in TEXT_FIELDS)

    def search(self, tr: Translation, limit: int, dates: DateRange | None = None) -> tuple[list[int], list[float], int]:
        """(PMIDs best first, scores (higher is better), total matches) for a translated query.

        The total is exact for PubMed-syntax queries; for natural language (an OR of words that
        matches most of a large corpus) it is a lower bound: the most articles any one word is in.
        """
        if tr.empty or limit <= 0:
            return [], [], 0
        try:
            return self._search(tr, limit, dates)
        except ValueError as exc:
            raise _tantivy_error(self.path, exc) from None

    def _search(self, tr: Translation, limit: int, dates: DateRange | None) -> tuple[list[int], list[float], int]:
        tv = self._tv
        searcher = self.index.searcher()
        lo, hi = dates.years if dates is not None else (None, None)
        window = None if lo is None and hi is None else self._year(lo, hi)
        if tr.plan is None or not _scores(tr.plan):
            # Filters only: PubMed would sort by date; the newest PMIDs come first here.
            q = self.compile(tr.plan) if tr.plan is not None else tv.Query.all_query()
            if window is not None:
                q = tv.Query.boolean_query([(tv.Occur.Must, q), (tv.Occur.Must, window)])
            res = searcher.search(q, limit, count=True, order_by_field="pmid", order=tv.Order.Desc)
            pmids = searcher.fast_field_values("pmid", [a for _, a in res.hits])
            return [int(p) for p in pmids], [0.0] * len(pmids), int(res.count)
        q = self.compile(tr.plan)
        if dates is not None and window is not None and isinstance(tr.plan, Natural):
            found = self._windowed(searcher, q, limit, dates)
            if found is not None:
                pmids, scores = found
                return pmids, scores, len(pmids)
        if window is not None:
            q = tv.Query.boolean_query([(tv.Occur.Must, q), (tv.Occur.Must, window)])
        pmids, scores = self._top(searcher, q, limit)
        if len(pmids) < limit:
            count = len(pmids)
        elif tr.natural:
            count = max(len(pmids), max((self.doc_freq(w) for w in tr.plan.words), default=0))  # type: ignore[union-attr]
        else:
            # Counting needs no scores: order by a fast field and the matches are only iterated.
            count = int(searcher.search(q, 1, count=True, order_by_field="pmid").count)
        return pmids, scores, count

    def _top(self, searcher: Any, q: Any, limit: int) -> tuple[list[int], list[float]]:
        res = searcher.search(q, limit, count=False)
        pmids = searcher.fast_field_values("pmid", [a for _, a in res.hits])
        pairs = sorted(zip((float(s) for s, _ in res.hits), (int(p) for p in pmids)), key=lambda x: (-x[0], x[1]))
        return [p for _, p in pairs], [s for s, _ in pairs]

    def _windowed(self, searcher: Any, q: Any, limit: int, dates: DateRange) -> tuple[list[int], list[float]] | None:
        depth = limit * self.overfetch
        n = searcher.num_docs
        while True:
            res = searcher.search(q, depth, count=False)
            addrs = [a for _, a in res.hits]
            years = searcher.fast_field_values("year", addrs)
            keep = [i for i, y in enumerate(years) if dates.contains(y)]
            if len(keep) >= limit or len(addrs) < depth:
                keep = keep[:limit]
                pmids = searcher.fast_field_values("pmid", [addrs[i] for i in keep])
                pairs = sorted(
                    ((float(res.hits[i][0]), int(p)) for i, p in zip(keep, pmids)), key=lambda x: (-x[0], x[1])
                )
                return [p for _, p in pairs], [s for s, _ in pairs]
            if depth >= min(limit * self.max_overfetch, n):
                return None  # a narrow window: the intersection is cheaper than more widening
            depth = min(depth * self.overfetch, limit * self.max_overfetch, max(n, 1))


def _scores(plan: Plan) -> bool:
    """Whether a plan has a text clause that ranks (outside NOT); filters alone do not."""
    if isinstance(plan, Text):
        return any(f != "pubtype" for f in plan.fields)
    if isinstance(plan, Natural):
        return True
    if isinstance(plan, (And, Or)):
        return any(_scores(c) for c in plan.children)
    if isinstance(plan, Not):
        return plan.positive is not None and _scores(plan.positive)
    return False
