"""The design a title and abstract state, for records NLM has not indexed yet.

Authors name their design in the title ("...: A Randomized Controlled Trial") or in the
methods ("In this prospective cohort study..."), as reporting guidelines (CONSORT, STROBE,
PRISMA) ask them to. The title is read first, then the abstract; within each, the strongest
design stated wins. Phrases that mention a design without being one ("a systematic review is
needed", "unlike previous randomized trials") are the false positives to keep out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # design.py calls into this module: a runtime import back would be a cycle
    from clinfo.appraisal.design import DesignKind

# strongest first
_PATTERNS: tuple[tuple[DesignKind, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        ("meta-analysis", r"\bmeta-?analys[ie]s\b"),
        ("systematic review", r"\bsystematic(?:al)? (?:literature )?review\b"),
        (
            "randomised trial",
            r"\b(?:randomi[sz]ed|randomly assigned|randomly allocated|randomi[sz]ation)\b"
            r"(?:(?!\bnon-?randomi[sz]ed\b).)*?\b(?:trial|study|assigned|allocated|to receive)\b",
        ),
        ("non-randomised trial", r"\b(?:non-?randomi[sz]ed|single-arm|open-label|phase (?:i|ii|1|2)) (?:\w+ )?trial\b"),
        ("cohort", r"\b(?:cohort|longitudinal|prospective|retrospective) (?:\w+ )?(?:study|studies|analysis|cohort)\b"),
        ("case-control", r"\bcase-? ?control(?:led)? (?:study|design)\b"),
        ("cross-sectional", r"\bcross-? ?sectional\b"),
        ("case report/series", r"\b(?:case report|case series|we (?:report|describe|present) (?:a|an|the|two|three) )"),
        ("guideline", r"\b(?:practice guideline|guidelines? (?:for|on)|consensus statement|recommendations? (?:for|on))\b"),
        ("animal/in-vitro", r"\b(?:mice|murine|rats?|in vitro|cell lines?|rabbits?|zebrafish)\b"),
        ("narrative review", r"\b(?:this|a|narrative|literature) review\b|\bwe review\b"),
    )
)
# a design named as something missing, wished for or contrasted, not as what was done
_NOT_DONE = re.compile(
    r"\b(?:needed|warranted|required|lack of|no|unlike|previous|prior|future|further|should)\b[^.]{0,40}$",
    re.IGNORECASE,
)


def _first_design(text: str) -> DesignKind | None:
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if not _NOT_DONE.search(text[max(0, match.start() - 60) : match.start()]):
                return kind
    return None


def design_from_text(title: str, abstract: str) -> DesignKind | None:
    return _first_design(title or "") or _first_design(abstract or "")
