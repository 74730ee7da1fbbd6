"""Dates: the one parser for every date clinfo reads, and the publication-date window.

A date arrives as a ``date``/``datetime`` (Python API, pydantic), ISO text (settings, flags,
environment) or, in evaluation datasets, US-style text (BioASQ's ``11/1/2021``). Records carry
only a publication year, so a window is applied to them by year.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

# Dataset files also write dates these ways; tried after ISO.
_OTHER_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d", "%Y")


def parse_date(value: Any, *, us_dates: bool = False) -> dt.date | None:
    """``value`` as a date; None or blank text means no date.

    Text is ISO (``YYYY-MM-DD``; anything after the tenth character, such as a time, is
    ignored). With ``us_dates`` it may also be ``M/D/YYYY``, ``YYYY/MM/DD`` or a bare year.
    Raises ValueError, naming the value and the formats accepted.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        pass
    if not us_dates:
        raise ValueError(f"{text!r} is not an ISO date (YYYY-MM-DD)")
    for fmt in _OTHER_FORMATS:
        try:
            # "%Y-%m-%d" again for ISO-like text fromisoformat refuses ("2021-1-5")
            return dt.datetime.strptime(text[:10] if fmt == "%Y-%m-%d" else text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or M/D/YYYY)")


@dataclass(frozen=True)
class DateRange:
    """Publication-date window, both ends inclusive; either end may be open."""

    start: dt.date | None = None
    end: dt.date | None = None

    @classmethod
    def ending(cls, end: dt.date | None, years: int | None = None) -> DateRange | None:
        """The window ending on ``end`` and, with ``years``, starting that many years before it;
        None (no window) without an end."""
        if end is None:
            return None
        start = None
        if years:
            try:
                start = end.replace(year=end.year - years)
            except ValueError:  # 29 February
                start = end.replace(year=end.year - years, day=28)
        return cls(start=start, end=end)

    @property
    def years(self) -> tuple[int | None, int | None]:
        """(first, last) publication year inside the window; None for an open end."""
        return (
            self.start.year if self.start is not None else None,
            self.end.year if self.end is not None else None,
        )

    def contains(self, when: int | dt.date | None) -> bool:
        """Whether a record published on ``when`` (a date, or a year as records carry) is inside.

        A year is compared with the ends' years. No date (an undated record) is outside: callers
        that keep undated records say so.
        """
        if when is None:
            return False
        if isinstance(when, dt.datetime):
            when = when.date()
        if isinstance(when, dt.date):
            return (self.start is None or when >= self.start) and (self.end is None or when <= self.end)
        first, last = self.years
        return (first is None or when >= first) and (last is None or when <= last)
