"""Cheap ranking of fetched records: BM25 (the prefilter). Fusion lives in ``clinfo.corpus.hybrid``."""

from __future__ import annotations

import re
from typing import Sequence

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
# Function words carry no evidence about topic; dropping them keeps BM25 on content terms.
STOPWORDS = frozenset(
    """a an and are as at be by can do does for from has have how in is it its of on or than that the
    their there these this those to was were what when which who whom why will with without""".split()
)


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def bm25_rank(query: str, documents: Sequence[str]) -> list[int]:
    """Indices of ``documents`` best first by BM25 (Okapi) against ``query``; stable for ties."""
    if not documents:
        return []
    from rank_bm25 import BM25Okapi

    corpus = [tokenize(d) or ["\u0000"] for d in documents]
    scores = BM25Okapi(corpus).get_scores(tokenize(query))
    return sorted(range(len(documents)), key=lambda i: (-float(scores[i]), i))
