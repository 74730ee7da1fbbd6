"""Whether a question asks if something is so (a yes/no question), decided by code from its form.

Only then can an article's finding support or contradict it. Clinical questions put the
question after a topic ("Chemoradiotherapy for oesophageal cancer: is surgery required?") or a
setting ("In adults with asthma, do inhaled steroids ..."), so each clause is read, and the first
one that opens with an auxiliary verb (does, is, can, should ...) or a wh-word (what, how, which
...) decides. A question mark with neither is an elliptical yes/no question ("Bladder cancer in
HIV-infected adults common?") unless it offers alternatives ("Nifedipine or amlodipine for
hypertension in pregnancy?"). A search phrase without a question mark is not a question.

Checked on every PubMedQA (all yes/no by construction) and PubMedRS-200 question in
``tests/appraisal/test_agreement.py``.
"""

from __future__ import annotations

import re

# verbs that open a yes/no question, contractions included
_AUXILIARIES = frozenset(
    "is are was were am does do did can could should would will shall may might must has have had "
    "isn't aren't wasn't weren't doesn't don't didn't can't cannot couldn't shouldn't wouldn't won't "
    "hasn't haven't hadn't whether".split()
)
# words that open a question whose answer is not yes or no
_WH_WORDS = frozenset("what which who whom whose when where why how wherefore".split())
# clause breaks: a topic before a colon, a dash or a full stop, a setting before a comma
_CLAUSES = re.compile(r"\s*(?:[:;,]|\.\s|\s[-\u2013\u2014]+\s|--|\u2014)\s*")
_WORD = re.compile(r"[a-z']+")
_ALTERNATIVE = re.compile(r"\bor\b", re.IGNORECASE)


def _first_word(clause: str) -> str:
    match = _WORD.match(clause.strip(" \"'\u201c\u201d\u2018\u2019([").lower().replace("\u2019", "'"))
    return match.group(0) if match else ""


def is_yes_no_question(question: str) -> bool:
    """True when ``question`` asks whether something is so ("Does metformin reduce cancer risk?")."""
    text = " ".join((question or "").split())
    asked = "?" in text
    # the question is the sentence that ends at the first question mark
    clauses = [c for c in _CLAUSES.split(text.split("?", 1)[0]) if c.strip()]
    for clause in clauses:
        word = _first_word(clause)
        if word in _AUXILIARIES:
            return True
        if word in _WH_WORDS:
            return False
    # the asking clause is the last one: "... in the ewe: potential involvement of AMPK?"
    return asked and bool(clauses) and not _ALTERNATIVE.search(clauses[-1])
