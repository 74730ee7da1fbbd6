"""Checks every ``[n]`` citation against the reference list, also while the text streams.

A bracket group is held back until it closes, then re-emitted with only valid numbers
(``[2, 9]`` with 5 references becomes ``[2]``; ``[9]`` disappears). Ranges such as ``[1-3]``
are expanded. Brackets that are not citations (``[95% CI]``) pass through untouched.
"""

from __future__ import annotations

import re

_GROUP = re.compile(r"^\s*\d+(?:\s*(?:[,;]|[-\u2013])\s*\d+)*\s*$")
_PART = re.compile(r"(\d+)\s*[-\u2013]\s*(\d+)|(\d+)")
_MAX_BRACKET = 40  # longer "brackets" are prose, not citations: stop holding text back
# a citation group anywhere in a text ("[2]", "[1, 3]", "[2-4]")
_IN_TEXT = re.compile(r"\[(\s*\d+(?:\s*(?:[,;]|[-\u2013])\s*\d+)*\s*)\]")


def _numbers(inner: str) -> list[int]:
    """The numbers of a citation group's inside, ranges expanded (``1-3`` -> 1, 2, 3)."""
    numbers: list[int] = []
    for lo, hi, single in _PART.findall(inner):
        if single:
            numbers.append(int(single))
        else:
            a, b = int(lo), int(hi)
            numbers.extend(range(a, b + 1) if 0 < b - a < 50 else [a, b])
    return numbers


def citation_groups(text: str) -> list[tuple[int, int, list[int]]]:
    """(start, end, numbers) of each citation group in ``text``, in order."""
    return [(m.start(), m.end(), _numbers(m.group(1))) for m in _IN_TEXT.finditer(text)]


class CitationFilter:
    """Checks the citations of a text fed in chunks (as it streams) against ``n_refs`` references:
    counts the numbers removed and keeps the valid ones in order of first citation."""

    def __init__(self, n_refs: int) -> None:
        self.n_refs = n_refs
        self.removed = 0
        self.cited: list[int] = []  # in order of first citation
        self._pending = ""  # an open "[" and what followed it
        self._space = ""  # blanks held back until we know whether a removed citation follows
        self._out: list[str] = []

    def _check(self, inner: str) -> str:
        if not _GROUP.match(inner):
            return f"[{inner}]"
        kept: list[int] = []
        for n in _numbers(inner):
            if 1 <= n <= self.n_refs:
                if n not in kept:
                    kept.append(n)
            else:
                self.removed += 1
        for n in kept:
            if n not in self.cited:
                self.cited.append(n)
        return f"[{', '.join(map(str, kept))}]" if kept else ""

    def feed(self, chunk: str) -> str:
        """Returns the part of the text that is safe to show now."""
        out: list[str] = []
        for ch in chunk:
            if self._pending:
                if ch == "]":
                    checked = self._check(self._pending[1:])
                    # a removed citation takes the space before it along ("claim [9]." -> "claim.")
                    out.append(self._space + checked if checked else "")
                    self._pending = self._space = ""
                elif ch == "[":
                    out.append(self._space + self._pending)
                    self._pending, self._space = "[", ""
                else:
                    self._pending += ch
                    if len(self._pending) > _MAX_BRACKET:
                        out.append(self._space + self._pending)
                        self._pending = self._space = ""
            elif ch == "[":
                self._pending = "["
            elif ch in " \t":
                self._space += ch
            else:
                out.append(self._space + ch)
                self._space = ""
        text = "".join(out)
        self._out.append(text)
        return text

    def flush(self) -> str:
        rest = self._space + self._pending
        self._pending = self._space = ""
        self._out.append(rest)
        return rest

    @property
    def text(self) -> str:
        """Everything fed so far, checked, without leading or trailing blanks."""
        return "".join(self._out).strip()


def check_citations(text: str, n_refs: int) -> tuple[str, int, list[int]]:
    """(clean text, citations removed, numbers cited) for a whole text."""
    f = CitationFilter(n_refs)
    f.feed(text)
    f.flush()
    return f.text, f.removed, f.cited
