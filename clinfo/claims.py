"""Whether a sentence rests on the article it cites, and which of the article's sentences it rests on.

:func:`support` scores one claim against one article: ``Support.score`` in 0..1, ``supported``
when it reaches the calibrated threshold, and ``Support.sentence``, the sentence of the
article's abstract that best matches the claim. :func:`check_synthesis` does it for a whole
synthesis: each sentence that cites ``[n]`` against each article it cites.

The signals, all functions of the claim and the article alone:

- ``coverage``: the IDF-weighted share of the claim's content terms (Porter2 stems,
  :mod:`clinfo.terms`) found in the article's title and abstract. Alone it separates a
  conclusion's own abstract from the most similar other abstract with AUC ~0.91;
- ``rare``: the same share with squared IDF weights, so the claim's most specific terms (the drug,
  the condition) decide more;
- ``phrases``: the share of the claim's adjacent term pairs that are also adjacent in the article
  ("erector spinae", "plane block"), which a same-topic article often lacks;
- where an encoder runtime for all-MiniLM-L6-v2 is installed (the ``[local]`` extra's onnxruntime,
  no torch; or the ``[dense]`` extra): the cosine of the claim with its best-matching sentence and
  with the whole abstract.

``rare``, ``phrases`` and the two cosines are combined by a logistic regression into the score
(``coverage`` is reported in ``Support.coverage`` but adds nothing beside ``rare``), and the score
is compared with a threshold; both were fitted on the tune half of ``benchmarks/claim_support.py`` (PubMedQA
conclusions against their own abstracts and against the BM25-nearest of ~33k other real
abstracts) and are reported on its check half, with the figures in the README. Without an encoder
the terms-only calibration applies: it works, at a lower quality (said in the README and recorded
in ``Support.signals``). A claim's polarity (did the drug help or not) is beyond these signals: a
supported claim shares its article's topic, population and outcome, not necessarily its verdict.

The sentence shown is the one with the best mix of term coverage and similarity (terms alone
without an encoder). Sentences quoted by code (the extractive answer) need no scoring: their
support is exact (:func:`quoted`).
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from clinfo.models import Article, ClaimCheck, Support
from clinfo.pipeline.citations import citation_groups
from clinfo.pipeline.quotes import Sentence, sentence_spans, sentences_of
from clinfo.pipeline.relevance import record_text, similarity_encoder
from clinfo.terms import Background, background, content_terms, question_terms

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Calibration", "Claim", "ClaimCheck", "Signals", "Support", "check_synthesis", "quoted", "split_claims",
           "support", "signals_of"]  # fmt: skip

SignalSet = Literal["coverage", "coverage+similarity"]


@dataclass(frozen=True)
class Calibration:
    """A logistic regression over the named signals, and the score from which a claim counts as supported."""

    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float

    def score(self, signals: Signals) -> float:
        z = self.bias + sum(w * float(getattr(signals, f) or 0.0) for f, w in zip(self.features, self.weights))
        return 1.0 / (1.0 + math.exp(-z))


_LEXICAL = ("rare", "phrases")
# Fitted on the tune half of benchmarks/claim_support.py (it prints these; keep them in step). Plain
# coverage adds nothing beside its squared-IDF form there (check AUC 0.9413 with it, 0.9402 without).
CALIBRATIONS: dict[str, Calibration] = {
    "coverage": Calibration(_LEXICAL, (7.42, 10.36), -4.44, 0.56),
    "coverage+similarity": Calibration(
        (*_LEXICAL, "sentence_similarity", "abstract_similarity"), (5.57, 6.07, 7.43, 7.3), -12.13, 0.47
    ),
}
# The sentence shown: this much term coverage, the rest similarity (terms alone without an encoder).
_SENTENCE_COVERAGE_SHARE = 0.3

# list markers at the start of a synthesis line ("- ", "* ", "1. ")
_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d{1,3}[.)])\s+")
_LEADING_CITATION = re.compile(r"^\s*\[\s*\d[\d\s,;\-\u2013]*\]")


@dataclass(frozen=True)
class Signals:
    coverage: float
    rare: float
    phrases: float
    sentence_similarity: float | None = None
    abstract_similarity: float | None = None

    @property
    def signal_set(self) -> SignalSet:
        return "coverage" if self.sentence_similarity is None else "coverage+similarity"


@dataclass(frozen=True)
class Claim:
    """One sentence of a synthesis: as written (citations included), where it stands, what it cites."""

    text: str
    start: int
    end: int
    citations: tuple[int, ...]

    @property
    def plain(self) -> str:
        """The sentence without its citations: what is compared with the articles."""
        return plain_text(self.text)


def plain_text(text: str) -> str:
    """``text`` without citation groups and list markers, spaces tidied."""
    out, pos = [], 0
    for start, end, _ in citation_groups(text):
        out.append(text[pos:start])
        pos = end
    out.append(text[pos:])
    flat = " ".join("".join(out).split())
    return _MARKER.sub("", re.sub(r"\s+([.,;:!?])", r"\1", flat))


def split_claims(text: str) -> list[Claim]:
    """Every sentence of ``text`` (a synthesis) with its offsets and the numbers it cites.

    Lines are split apart first (a list item is a sentence even without a full stop), and a
    citation written after the full stop ("... improved. [2] Another ...") belongs to the
    sentence before it."""
    claims: list[Claim] = []
    offset = 0
    for line in text.split("\n"):
        marker = _MARKER.match(line)
        skip = marker.end() if marker else 0
        spans = [(a + skip, b + skip) for a, b in sentence_spans(line[skip:])]
        merged: list[tuple[int, int]] = []
        for a, b in spans:
            lead = _LEADING_CITATION.match(line[a:b])
            if lead and merged:
                merged[-1] = (merged[-1][0], a + lead.end())
                a += lead.end()
                a += len(line[a:b]) - len(line[a:b].lstrip())
                if a >= b:
                    continue
            merged.append((a, b))
        for a, b in merged:
            piece = line[a:b]
            numbers = [n for _, _, group in citation_groups(piece) for n in group]
            claims.append(Claim(piece, offset + a, offset + b, tuple(dict.fromkeys(numbers))))
        offset += len(line) + 1
    return claims


# ---------------------------------------------------------------- signals


@dataclass(frozen=True)
class _Article:
    """What the signals need from one article, computed once however many claims cite it."""

    article: Article
    sentences: tuple[Sentence, ...]
    sentence_terms: tuple[frozenset[str], ...]
    terms: frozenset[str]
    pairs: frozenset[tuple[str, str]]
    text: str


def _prepare(article: Article) -> _Article:
    sentences = tuple(sentences_of(article))
    if not sentences and article.title.strip():
        sentences = (Sentence(text=" ".join(article.title.split()), label="TITLE"),)
    text = record_text(article)
    seq = content_terms(text)
    return _Article(
        article=article,
        sentences=sentences,
        sentence_terms=tuple(frozenset(content_terms(s.text)) for s in sentences),
        terms=frozenset(seq),
        pairs=frozenset(zip(seq, seq[1:])),
        text=text,
    )


def _share(weights: Mapping[str, float], present: frozenset[str]) -> float:
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in present) / total if total else 0.0


# Vectors of texts already encoded in this process: syntheses cite the same abstracts again
# (follow-up questions, evaluation runs), and the encoder is the slow part.
_VECTORS: OrderedDict[str, Any] = OrderedDict()
_VECTORS_MAX = 20_000
_BATCH = 4
_vectors_lock = threading.Lock()


def _encode(encoder: Any, texts: Sequence[str]) -> dict[str, np.ndarray]:
    # one batch at a time: the encoder uses every core anyway, and the cache stays simple
    with _vectors_lock:
        missing = [t for t in dict.fromkeys(texts) if t not in _VECTORS]
        if missing:
            # small batches: a batch is padded to its longest text, and one abstract among short sentences
            # made every sentence cost 256 tokens (5 abstracts and their sentences: 5.4 s at 64 a batch, 1.0 s at 4)
            _VECTORS.update(zip(missing, encoder.encode_documents(missing, batch_size=_BATCH)))
        out = {}
        for t in texts:
            out[t] = _VECTORS[t]
            _VECTORS.move_to_end(t)
        while len(_VECTORS) > max(_VECTORS_MAX, len(out)):
            _VECTORS.popitem(last=False)
    return out


def _assess(
    pairs: Sequence[tuple[str, _Article]], encoder: Any | None, bg: Background
) -> list[tuple[Signals, Sentence | None]]:
    """(signals, best sentence) of each (claim text, article) pair."""
    vectors: dict[str, Any] = {}
    if encoder is not None and pairs:
        texts = [claim for claim, _ in pairs]
        for _, prepared in pairs:
            texts += [s.text for s in prepared.sentences] + [prepared.text]
        vectors = _encode(encoder, texts)
    out: list[tuple[Signals, Sentence | None]] = []
    for claim, prepared in pairs:
        terms = question_terms(claim)
        weights = bg.weights(terms)
        seq = content_terms(claim)
        claim_pairs = list(zip(seq, seq[1:]))
        coverage = _share(weights, prepared.terms)
        rare = _share({t: w * w for t, w in weights.items()}, prepared.terms)
        phrases = sum(p in prepared.pairs for p in claim_pairs) / len(claim_pairs) if claim_pairs else 0.0
        if not prepared.sentences:
            out.append((Signals(coverage, rare, phrases), None))
            continue
        covers = [_share(weights, st) for st in prepared.sentence_terms]
        if encoder is None:
            best = max(range(len(covers)), key=lambda i: (covers[i], i))
            out.append((Signals(coverage, rare, phrases), prepared.sentences[best]))
            continue
        c = vectors[claim]
        sims = [float(vectors[s.text] @ c) for s in prepared.sentences]
        mix = [_SENTENCE_COVERAGE_SHARE * cv + (1 - _SENTENCE_COVERAGE_SHARE) * sm for cv, sm in zip(covers, sims)]
        best = max(range(len(mix)), key=lambda i: (mix[i], i))
        signals = Signals(coverage, rare, phrases, max(sims), float(vectors[prepared.text] @ c))
        out.append((signals, prepared.sentences[best]))
    return out


def _encoder(similarity: bool) -> Any | None:
    return similarity_encoder() if similarity else None


def signals_of(
    pairs: Sequence[tuple[str, Article]], *, similarity: bool = True, bg: Background | None = None
) -> list[Signals]:
    """The raw signals of each (claim, article) pair (for calibration: ``benchmarks/claim_support.py``).
    Similarity signals are None where ``similarity`` is off or no encoder runtime is installed."""
    prepared: dict[int, _Article] = {}
    items = []
    for claim, article in pairs:
        if id(article) not in prepared:
            prepared[id(article)] = _prepare(article)
        items.append((plain_text(claim), prepared[id(article)]))
    return [s for s, _ in _assess(items, _encoder(similarity), bg or background())]


def _support(pmid: str, signals: Signals, sentence: Sentence | None) -> Support:
    calibration = CALIBRATIONS[signals.signal_set]
    score = round(calibration.score(signals), 4)
    return Support(
        pmid=pmid,
        score=score,
        supported=score >= calibration.threshold,
        sentence=sentence.text if sentence else "",
        label=sentence.label if sentence else "",
        signals=signals.signal_set,
        coverage=round(signals.coverage, 4),
        similarity=None if signals.sentence_similarity is None else round(signals.sentence_similarity, 4),
    )


def support(claim: str, article: Article, *, similarity: bool = True) -> Support:
    """How well ``article`` supports ``claim`` (a sentence; ``[n]`` citations in it are ignored).

    ``similarity``: use the sentence encoder where one is installed (terms alone otherwise)."""
    [(signals, sentence)] = _assess([(plain_text(claim), _prepare(article))], _encoder(similarity), background())
    return _support(article.pmid, signals, sentence)


def quoted(text: str, pmid: str, label: str = "") -> Support:
    """The support of a sentence code quoted from the article itself: exact."""
    return Support(pmid=pmid, score=1.0, supported=True, sentence=text, label=label, signals="quote", coverage=1.0)


def check_synthesis(text: str, articles: Mapping[int, Article], *, similarity: bool = True) -> list[ClaimCheck]:
    """Each sentence of ``text`` that cites ``[n]``, checked against ``articles[n]`` for each of its
    citations (numbers with no article are left out). A sentence is supported when any article it
    cites supports it; each :class:`Support` says which sentence of that article matched best."""
    claims = [c for c in split_claims(text) if any(n in articles for n in c.citations)]
    prepared = {n: _prepare(a) for n, a in articles.items() if any(n in c.citations for c in claims)}
    pairs = [(c.plain, n) for c in claims for n in c.citations if n in prepared]
    assessed = iter(_assess([(claim, prepared[n]) for claim, n in pairs], _encoder(similarity), background()))
    checks = []
    for c in claims:
        cited = [n for n in c.citations if n in prepared]
        supports = []
        for n in cited:
            signals, sentence = next(assessed)
            supports.append(_support(articles[n].pmid, signals, sentence))
        checks.append(
            ClaimCheck(
                text=c.text,
                start=c.start,
                end=c.end,
                citations=cited,
                supports=supports,
                supported=any(s.supported for s in supports),
                score=max(s.score for s in supports),
            )
        )
    return checks
