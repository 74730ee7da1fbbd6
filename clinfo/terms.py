"""Content terms of questions and abstracts, and how specific each term is.

Terms are Snowball (Porter2) stems of lower-cased words, so "diabetes"/"diabetic" and
"statin"/"statins" meet. Specificity is an IDF over a fixed background: document frequencies of
the demo corpus shipped in the package (3,000 PubMed abstracts, 1970s to 2020s), counted once
into ``clinfo/data/term_background.json.gz`` so that no question pays for counting them. A
fixed background makes a score a function of the question and the abstract alone, the same
whatever corpus answers, which is what lets one calibrated threshold serve every question and
every corpus.

This module is also the one home of splitting text into words: :func:`search_words` gives the
unstemmed words a search engine is sent (the keyword planner's queries) and the prefilter's BM25
compares; :func:`content_terms` the stems that texts are compared by here. The index of a local
corpus splits text its own way (``clinfo.corpus.lexical_query.words_of`` mirrors Tantivy's
tokenizer), because there the query has to meet the index's tokens.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

# Words: runs of letters and digits, joined by inner hyphens and apostrophes ("type-2", "crohn's").
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
# Function words carry no evidence about topic; dropping them keeps ranking and matching on content.
STOPWORDS = frozenset(
    """a an and are as at be by can do does for from has have how in is it its of on or than that the
    their there these this those to was were what when which who whom why will with without""".split()
)
# Words of how a question is asked, not of what it is about: they never decide relevance.
QUESTION_WORDS = frozenset(
    """about affect affected affects after against all also among any associated association
    associations before being between both but could did differ difference differences different
    during each effect effective effectiveness effects else ever factor factors find found help
    helpful however impact important influence into just less lower made make may might more most
    much must need no not now only other over people really role same should show shown so some
    still such there use used useful uses using very way ways well whether while would yes""".split()
)
DEMO_DATA = "demo_corpus.jsonl.gz"
BACKGROUND_DATA = "term_background.json.gz"  # derived from DEMO_DATA


@lru_cache(maxsize=1)
def _stemmer():  # type: ignore[no-untyped-def]
    import snowballstemmer

    return snowballstemmer.stemmer("english")


_stem_lock = threading.Lock()
_stems: dict[str, str] = {}


def stem(word: str) -> str:
    cached = _stems.get(word)
    if cached is None:
        with _stem_lock:  # the Snowball stemmer object keeps state between calls
            cached = _stems[word] = _stemmer().stemWord(word)
    return cached


def search_words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without function words, unstemmed, hyphenated ones whole.

    Unstemmed because these are sent to search engines (a stem such as "diabet" matches nothing
    in PubMed) and because the prefilter's BM25 rankings were measured on them."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def words(text: str) -> list[str]:
    """Lower-cased words, hyphenated ones also split into their parts ("type-2" -> type-2, type, 2)."""
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        out.append(w)
        if "-" in w:
            out.extend(p for p in w.split("-") if p)
    return out


def content_terms(text: str) -> list[str]:
    """Stems of the content words of ``text``, in order, repeats kept."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def question_terms(question: str) -> list[str]:
    """The distinct stems a question is about, in order of first appearance."""
    kept = [w for w in words(question) if w not in STOPWORDS and w not in QUESTION_WORDS and len(w) > 1]
    return list(dict.fromkeys(stem(w) for w in kept))


@dataclass(frozen=True)
class Background:
    """Document frequencies of stems over the background corpus."""

    docs: int
    freqs: dict[str, int]

    def idf(self, term: str) -> float:
        # BM25's IDF, floored at a small positive weight: a term in most documents still counts a little
        df = self.freqs.get(term, 0)
        return max(0.1, math.log((self.docs - df + 0.5) / (df + 0.5) + 1.0))

    def weights(self, terms: Iterable[str]) -> dict[str, float]:
        return {t: self.idf(t) for t in terms}


def count_background(texts: Iterable[str]) -> Background:
    """Document frequencies of the content stems of ``texts`` (one text per document)."""
    freqs: dict[str, int] = {}
    docs = 0
    for text in texts:
        docs += 1
        for term in set(content_terms(text)):
            freqs[term] = freqs.get(term, 0) + 1
    return Background(docs=docs, freqs=freqs)


def demo_texts() -> Iterator[str]:
    """Title and abstract of each record of the shipped demo corpus."""
    data = resources.files("clinfo") / "data" / DEMO_DATA
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            yield " ".join([record.get("title") or "", *(s.get("text", "") for s in record.get("abstract") or [])])


def write_background(bg: Background, path: Path) -> None:
    data = json.dumps({"docs": bg.docs, "freqs": dict(sorted(bg.freqs.items()))}, separators=(",", ":"))
    path.write_bytes(gzip.compress(data.encode("utf-8"), compresslevel=9, mtime=0))


@lru_cache(maxsize=1)
def background() -> Background:
    """The shipped background (counted from the demo corpus by scripts/build_term_background.py)."""
    data = resources.files("clinfo") / "data" / BACKGROUND_DATA
    table = json.loads(gzip.decompress(data.read_bytes()))
    return Background(docs=int(table["docs"]), freqs={str(k): int(v) for k, v in table["freqs"].items()})
