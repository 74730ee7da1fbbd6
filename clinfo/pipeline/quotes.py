"""The sentences of an abstract that best answer a question, for answers written by code.

An abstract is split into sentences (inside its labelled sections when it has them). Each
sentence scores the IDF-weighted share of the question's terms it contains, plus a bonus for
where it sits: conclusions and results answer a question, while background, objectives and
methods only restate it (and so match its words best). Unlabelled abstracts get the same
preference by position: they usually end on their conclusion and open on background.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clinfo.models import Article
from clinfo.terms import Background, background, content_terms, question_terms

# Section-label words -> bonus added to the sentence's term share (0..1).
_ANSWERING = (("CONCLUSION", 0.35), ("INTERPRETATION", 0.35), ("IMPLICATION", 0.3), ("RESULT", 0.15), ("FINDING", 0.15))
_RESTATING = (
    "BACKGROUND",
    "OBJECTIVE",
    "AIM",
    "PURPOSE",
    "INTRODUCTION",
    "CONTEXT",
    "METHOD",
    "DESIGN",
    "SETTING",
    "PARTICIPANT",
    "PATIENT",
    "SUBJECT",
    "MEASURE",
    "INTERVENTION",
    "HYPOTHES",
    "QUESTION",
)
_RESTATING_PENALTY = -0.5  # below any answering sentence: they match the question by restating it
_LAST_BONUS, _NEXT_TO_LAST_BONUS, _FIRST_PENALTY = 0.25, 0.1, -0.15
_SECOND_SHARE = 0.6  # a second sentence must score at least this share of the best one's
_MIN_WORDS = 5  # shorter "sentences" are headings or fragments left by the splitter

# A sentence ends at . ! or ? followed by space and a capital, digit or bracket, unless the
# word before the stop is an abbreviation that does not end sentences in abstracts.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_ABBREVIATION = re.compile(
    r"(?:\b(?:e\.g|i\.e|vs|al|approx|fig|figs|no|nos|ref|resp|ca|cf|inc|dr|st)|\b[A-Z])\.$", re.IGNORECASE
)


@dataclass(frozen=True)
class Sentence:
    text: str
    label: str = ""  # the section it came from ("" for an unlabelled abstract)
    index: int = 0  # position in the abstract, from 0


@dataclass(frozen=True)
class Quote:
    sentences: tuple[Sentence, ...]
    score: float

    @property
    def text(self) -> str:
        """The sentences in abstract order; "…" marks where sentences between them were left out."""
        parts: list[str] = []
        previous = None
        for s in self.sentences:
            if previous is not None and s.index != previous + 1:
                parts.append("…")
            parts.append(s.text)
            previous = s.index
        return " ".join(parts)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``, as offsets into ``text`` itself, so a caller can
    mark a sentence where it stands (the claim check marks synthesis sentences this way)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in [*_BOUNDARY.finditer(text), None]:
        end = cut.start() if cut else len(text)
        if spans and _ABBREVIATION.search(text[spans[-1][0] : spans[-1][1]]):
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        start = cut.end() if cut else len(text)
    out = []
    for a, b in spans:
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        if piece.strip():
            out.append((a + lead, a + len(piece.rstrip())))
    return out


def split_sentences(text: str) -> list[str]:
    return [" ".join(text[a:b].split()) for a, b in sentence_spans(text)]


def sentences_of(article: Article) -> list[Sentence]:
    out: list[Sentence] = []
    for section in article.abstract_sections:
        for text in split_sentences(section.text):
            out.append(Sentence(text=text, label=section.label.upper(), index=len(out)))
    return out


def _placement(sentence: Sentence, total: int, labelled: bool) -> float:
    if labelled:
        for word, bonus in _ANSWERING:
            if word in sentence.label:
                return bonus
        if any(word in sentence.label for word in _RESTATING):
            return _RESTATING_PENALTY
        return 0.0
    if total > 1 and sentence.index == total - 1:
        return _LAST_BONUS
    if total > 2 and sentence.index == total - 2:
        return _NEXT_TO_LAST_BONUS
    if total > 2 and sentence.index == 0:
        return _FIRST_PENALTY
    return 0.0


def best_quote(
    question: str, article: Article, *, max_sentences: int = 2, max_chars: int = 600, bg: Background | None = None
) -> Quote:
    """The ``max_sentences`` sentences of ``article``'s abstract that best answer ``question``.

    Falls back to the title for a record without abstract text.
    """
    bg = bg or background()
    terms = question_terms(question)
    weights = bg.weights(terms)
    total_weight = sum(weights.values()) or 1.0
    sentences = sentences_of(article)
    if not sentences:
        return Quote(sentences=(Sentence(text=article.title),) if article.title else (), score=0.0)
    labelled = any(s.label for s in sentences)

    def score(s: Sentence) -> float:
        present = set(content_terms(s.text))
        share = sum(w for t, w in weights.items() if t in present) / total_weight
        return share + _placement(s, len(sentences), labelled)

    ranked = sorted(
        ((score(s), s) for s in sentences if len(s.text.split()) >= _MIN_WORDS or len(sentences) == 1),
        key=lambda pair: (-pair[0], pair[1].index),
    ) or [(score(sentences[-1]), sentences[-1])]
    chosen = [ranked[0]]
    for candidate in ranked[1:max_sentences]:
        # a further sentence only if it nearly matches the best one and the quote stays short
        if (
            candidate[0] < _SECOND_SHARE * ranked[0][0]
            or sum(len(s.text) for _, s in chosen) + len(candidate[1].text) > max_chars
        ):
            break
        chosen.append(candidate)
    picked = tuple(sorted((s for _, s in chosen), key=lambda s: s.index))
    return Quote(sentences=picked, score=round(chosen[0][0], 4))
