"""Evaluation sets for ranking, built deterministically from the shared data (no network, no LLM).

Every set is known-item retrieval: each query has one gold article (grade 1) that the corpus
holds, among ~34k distractors. The corpus they are meant for (``corpus_inputs``) is the packaged
demo corpus (its 1,000 PubMedQA PQA-L abstracts, untitled), both NLM baseline files, the 209
PubMedRS-200 source reviews (``write_rs200_jsonl``), and last ``write_overrides_jsonl``, which
replaces the gold records of the conclusion sets by copies without their conclusion section, so a
conclusion used as the query is not also verbatim in its document.

Sets:

* ``pqa``: PubMedQA PQA-L dev, the 500 questions as typed. They paraphrase their article's title,
  so this is near ceiling for BM25: a regression check.
* ``pqa-hard``: the same questions with every word removed whose Porter stem also occurs in the
  item's conclusion (``LONG_ANSWER``, which restates the key terms the way the title would; the
  PQA-L items carry no title). Kept where at least 3 content words remain. Function words stay so
  the text still reads as a question for a dense encoder. Vocabulary mismatch on purpose.
* ``pqa-conclusion``: the conclusion (``LONG_ANSWER``) as the query, the document being the rest of
  the abstract (background, methods, results): a long query that restates findings in other words.
* ``nlm-conclusion``: the same construction on 500 titled records of the 2021 NLM update file
  (abstract ending in a CONCLUSION(S) section of >= 12 words, >= 60 words before it; chosen by the
  seed's hash order). The only set whose gold articles have titles and (some) MeSH, so the only
  one that can speak to title weighting: every other gold article is untitled.
* ``rs200``: PubMedRS-200's human-written questions; gold = the source systematic review, which the
  corpus holds as abstract only (title withheld, as its questions often restate it). The set's own
  gold, the reviews' ``Ref_PMIDs``, is unusable here: 5 of its 9,070 references are in the corpora
  buildable from the shared data.

Every set is split into a ``tune`` and a ``check`` half by a fixed seed over the item id (the PMID
for PubMedQA, so one item sits in the same half in all three PubMedQA sets). Settings are chosen on
the tune halves only; the check halves report how well that choice generalises.

    python benchmarks/ranking_sets.py            # prints the sets' sizes and a few queries each
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clinfo.models import AbstractSection, Article

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PQA_DEV = SHARED / "pubmedqa" / "pqal_dev.json"
RS200 = SHARED / "pubmedrs200" / "PubMedRS-200.csv"
DEMO = REPO / "clinfo" / "data" / "demo_corpus.jsonl.gz"
BASELINE = [SHARED / "pubmed-baseline" / "pubmed20n0014.xml.gz", SHARED / "pubmed-baseline" / "pubmed21n1298.xml.gz"]

SEED = "clinfo-ranking-2026"
SET_NAMES = ("pqa", "pqa-hard", "pqa-conclusion", "nlm-conclusion", "rs200")
_NLM_SET_SIZE = 500
_CONCLUSION_LABELS = ("CONCLUSION", "CONCLUSIONS")
_MIN_WORDS = 3
_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*")


@dataclass
class RankingSet:
    name: str
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, dict[str, int]]  # query id -> {pmid: grade}
    half: dict[str, str] = field(default_factory=dict)  # query id -> "tune" | "check"
    note: str = ""

    def part(self, which: str) -> RankingSet:
        """The tune or check half (``all``: the whole set)."""
        if which == "all":
            return self
        keep = [q for q in self.queries if self.half[q] == which]
        return RankingSet(f"{self.name}/{which}", {q: self.queries[q] for q in keep}, {q: self.qrels[q] for q in keep},
                          {q: which for q in keep}, self.note)  # fmt: skip


def _half(item_id: str) -> str:
    # A hash, not a shuffle: an item's half does not depend on which other items a set holds.
    return "tune" if hashlib.sha256(f"{SEED}:{item_id}".encode()).digest()[0] < 128 else "check"


def _stopwords() -> frozenset[str]:
    from clinfo.corpus.lexical_query import QUESTION_STOPWORDS

    return QUESTION_STOPWORDS


def _stemmer():  # type: ignore[no-untyped-def]
    from nltk.stem.porter import (
        PorterStemmer,  # comes with rouge-score ([eval]); pure code, no data files
    )

    return PorterStemmer()


def strip_shared_words(question: str, reference: str) -> tuple[str, int]:
    """``question`` without the words whose stem occurs in ``reference``; (text, content words left)."""
    stem, stop = _stemmer().stem, _stopwords()
    ref = {stem(w.lower()) for w in _WORD.findall(reference)}
    left = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal left
        w = m.group(0).lower()
        if w in stop:
            return m.group(0)
        if stem(w) in ref:
            return ""
        left += 1
        return m.group(0)

    text = _WORD.sub(repl, question)
    text = re.sub(r"\s+([?.,;:])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()
    return text, left


def pubmedqa_sets(path: Path = PQA_DEV) -> list[RankingSet]:
    from clinfo.eval.datasets import load_pubmedqa

    items = load_pubmedqa(path)
    plain = RankingSet("pqa", {}, {}, {}, "PubMedQA PQA-L dev questions as typed")
    hard = RankingSet(
        "pqa-hard", {}, {}, {}, "questions minus words whose stem is in the conclusion (>=3 content words left)"
    )
    concl = RankingSet("pqa-conclusion", {}, {}, {}, "the conclusion (LONG_ANSWER) as the query")
    for it in items:
        qrel = {it.gold_pmids[0]: 1}
        half = _half(it.id)
        for s, text in ((plain, it.question), (concl, it.answer or "")):
            if text.strip():
                s.queries[it.id], s.qrels[it.id], s.half[it.id] = text, qrel, half
        stripped, left = strip_shared_words(it.question, it.answer or "")
        if left >= _MIN_WORDS:
            hard.queries[it.id], hard.qrels[it.id], hard.half[it.id] = stripped, qrel, half
    return [plain, hard, concl]


def _rs200_rows(path: Path = RS200) -> list[dict[str, str]]:
    import ftfy  # [eval]; the CSV is UTF-8 once decoded as cp1252 (see clinfo.eval.datasets)

    text = path.read_text(encoding="utf-8-sig")
    rows = []
    for row in csv.DictReader(text.splitlines(keepends=True)):
        rows.append({k: ftfy.fix_encoding(v or "") for k, v in row.items() if k})
    return rows


def rs200_set(path: Path = RS200) -> RankingSet:
    from clinfo.eval.datasets import load_pubmedrs

    s = RankingSet("rs200", {}, {}, {}, "PubMedRS-200 human questions -> the source review (abstract only)")
    for it in load_pubmedrs(path):
        review = it.ignore[0]
        s.queries[review], s.qrels[review], s.half[review] = it.question, {review: 1}, _half(review)
    return s


def write_rs200_jsonl(out: Path, path: Path = RS200) -> Path:
    """The source reviews as corpus records (``clinfo index build`` JSONL), title withheld.

    Written to a temporary name and renamed, and only when the content changed, so a corpus build
    that skips files already ingested sees the same file (name, size, mtime) every run.
    """
    lines = []
    for row in _rs200_rows(path):
        pmid = int(row["PMID"].strip())
        year = int(row["PublishedDate"].strip().split("/")[-1])
        abstract = " ".join(row["Abstract"].split())
        lines.append(json.dumps({"pmid": pmid, "title": "", "abstract": abstract, "year": year}, sort_keys=True))
    return _write_if_changed(out, sorted(lines))


def _write_if_changed(out: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if out.is_file() and out.read_bytes() == data:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out


def _record(a: Article, sections: list[AbstractSection]) -> str:
    return json.dumps({"pmid": int(a.pmid), "title": a.title, "abstract": [s.model_dump() for s in sections],
                       "year": a.year, "journal": a.journal, "mesh": a.mesh, "publication_types": a.publication_types,
                       "authors": a.authors}, sort_keys=True)  # fmt: skip


@functools.lru_cache(maxsize=1)  # parsing the update file takes tens of seconds
def nlm_conclusion_items() -> list[tuple[Article, str]]:
    """(record, its conclusion) for the nlm-conclusion set, in the seed's hash order."""
    from clinfo.models import Article
    from clinfo.pubmed.xml import iter_pubmed_xml

    found = []
    for a in iter_pubmed_xml(BASELINE[1], Article):
        if not isinstance(a, Article) or not a.title.strip() or len(a.abstract_sections) < 2:
            continue
        last = a.abstract_sections[-1]
        before = sum(len(s.text.split()) for s in a.abstract_sections[:-1])
        if last.label.upper() in _CONCLUSION_LABELS and len(last.text.split()) >= 12 and before >= 60:
            found.append((a, last.text))
    found.sort(key=lambda x: hashlib.sha256(f"{SEED}:nlm:{x[0].pmid}".encode()).hexdigest())
    return found[:_NLM_SET_SIZE]


def write_overrides_jsonl(out: Path, nlm: list[tuple[Article, str]] | None = None) -> Path:
    """Gold records of the conclusion sets without their conclusion section (replacing the originals)."""
    from clinfo.models import AbstractSection, Article

    dev = set(json.loads(PQA_DEV.read_text()))
    lines = []
    with gzip.open(DEMO, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if str(rec["pmid"]) in dev:
                a = Article(
                    pmid=str(rec["pmid"]),
                    title=rec.get("title") or "",
                    year=rec.get("year"),
                    mesh=rec.get("mesh") or [],
                    abstract_sections=[AbstractSection(**s) for s in rec["abstract"]],
                )
                lines.append(_record(a, [s for s in a.abstract_sections if s.label.upper() not in _CONCLUSION_LABELS]))
    for a, _ in nlm if nlm is not None else nlm_conclusion_items():
        lines.append(_record(a, a.abstract_sections[:-1]))
    return _write_if_changed(out, sorted(lines))


def corpus_inputs(work: Path) -> list[Path]:
    """What ``clinfo index build`` reads for the ranking corpus, in order (generated files go in ``work``).

    The build's ledger knows a file by name, size and mtime, and a checkout touches the packaged
    demo file; re-ingested, it would replace the overrides. So the demo is read from a copy in
    ``work`` that is rewritten only when its bytes change.
    """
    overrides = work / "ranking_overrides.jsonl"
    if not overrides.is_file():
        write_overrides_jsonl(overrides)
    demo = work / DEMO.name
    if not demo.is_file() or demo.read_bytes() != DEMO.read_bytes():
        tmp = demo.with_suffix(".tmp")
        tmp.write_bytes(DEMO.read_bytes())
        tmp.replace(demo)
    return [demo, *BASELINE, write_rs200_jsonl(work / "rs200_reviews.jsonl"), overrides]


def nlm_conclusion_set() -> RankingSet:
    s = RankingSet(
        "nlm-conclusion", {}, {}, {}, "conclusion of a titled 2021 NLM record as the query (record indexed without it)"
    )
    for a, conclusion in nlm_conclusion_items():
        s.queries[a.pmid], s.qrels[a.pmid], s.half[a.pmid] = conclusion, {a.pmid: 1}, _half(a.pmid)
    return s


def load_sets(names: tuple[str, ...] | list[str] = SET_NAMES) -> list[RankingSet]:
    out: list[RankingSet] = []
    if any(n.startswith("pqa") for n in names):
        out += [s for s in pubmedqa_sets() if s.name in names]
    if "nlm-conclusion" in names:
        out.append(nlm_conclusion_set())
    if "rs200" in names:
        out.append(rs200_set())
    unknown = set(names) - set(SET_NAMES)
    if unknown:
        raise SystemExit(f"error: unknown set {', '.join(sorted(unknown))}; use {', '.join(SET_NAMES)}")
    return out


def main() -> None:
    for s in load_sets():
        tune = sum(1 for h in s.half.values() if h == "tune")
        print(f"{s.name:15s} {len(s.queries):4d} queries ({tune} tune / {len(s.queries) - tune} check): {s.note}")
        for q in list(s.queries)[:3]:
            print(f"    {q}: {s.queries[q][:110]}")


if __name__ == "__main__":
    main()
