"""Checks of what a caller passes to one question: the question, the PMIDs to ignore, the cut-off date,
the study filter.

Each bad value is one typed error (InvalidQuestion / InvalidArgument) with a one-line message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from clinfo.appraisal.filters import StudyFilter
from clinfo.dates import parse_date
from clinfo.errors import InvalidArgument, InvalidQuestion


def check_question(question: Any, max_chars: int) -> str:
    """The question with its whitespace collapsed; InvalidQuestion when it is not text, empty or too long."""
    if not isinstance(question, str):
        raise InvalidQuestion(f"the question must be text, not {type(question).__name__}")
    text = " ".join(question.split())
    if not text:
        raise InvalidQuestion("the question is empty")
    if len(text) > max_chars:
        raise InvalidQuestion(f"the question is {len(text)} characters long; the limit is {max_chars}")
    return text


def check_ignore(ignore: Any) -> frozenset[str]:
    """PMIDs to leave out of the answer (leakage control): one PMID or several, as text or numbers,
    normalised ("007" -> "7"); InvalidArgument names the first that is not a PMID."""
    if ignore is None:
        return frozenset()
    items: Iterable[Any] = [ignore] if isinstance(ignore, (str, int)) else ignore
    out = set()
    for item in items:
        text = str(item).strip()
        if not text.isdigit():
            raise InvalidArgument(f"ignore: {item!r} is not a PMID (digits only)")
        out.add(str(int(text)))
    return frozenset(out)


def check_restriction_date(value: Any) -> dt.date | None:
    """The cut-off date (a date or ISO text; None or blank for none); InvalidArgument otherwise."""
    try:
        return parse_date(value)
    except ValueError as exc:
        raise InvalidArgument(f"restriction_date: {exc}") from None


def check_studies(settings: Any, designs: Any = None, humans_only: Any = None) -> StudyFilter:
    """The question's study filter: ``designs`` / ``humans_only`` where given, else the settings';
    InvalidArgument names an unknown design."""
    if humans_only is not None and not isinstance(humans_only, bool):
        raise InvalidArgument(f"humans_only: expected true or false, not {humans_only!r}")
    try:
        return StudyFilter.of(
            settings.designs if designs is None else designs,
            settings.humans_only if humans_only is None else humans_only,
        )
    except ValueError as exc:
        raise InvalidArgument(f"designs: {exc}") from None
