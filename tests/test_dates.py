"""clinfo.dates: the one date parser and the publication window every filter uses."""

from __future__ import annotations

import datetime as dt

import pytest

from clinfo.dates import DateRange, parse_date


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("2020-01-02", dt.date(2020, 1, 2)),
        (" 2020-01-02T10:30:00Z ", dt.date(2020, 1, 2)),  # a time is ignored
        (dt.date(2019, 3, 7), dt.date(2019, 3, 7)),
        (dt.datetime(2019, 3, 7, 23, 59), dt.date(2019, 3, 7)),
    ],
)
def test_iso_dates_and_no_date(value: object, expected: dt.date | None) -> None:
    assert parse_date(value) == expected
    assert parse_date(value, us_dates=True) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("11/1/2021", dt.date(2021, 11, 1)),
        ("2021/11/01", dt.date(2021, 11, 1)),
        ("2021", dt.date(2021, 1, 1)),
        ("2021-1-5", dt.date(2021, 1, 5)),
    ],
)
def test_dataset_formats_only_when_asked(text: str, expected: dt.date) -> None:
    assert parse_date(text, us_dates=True) == expected
    with pytest.raises(ValueError, match="is not an ISO date"):
        parse_date(text)


def test_bad_dates_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"'last year' is not an ISO date \(YYYY-MM-DD\)"):
        parse_date("last year")
    with pytest.raises(ValueError, match=r"'13/45/2021' is not a date \(YYYY-MM-DD or M/D/YYYY\)"):
        parse_date("13/45/2021", us_dates=True)


def test_window_ending_on_a_date() -> None:
    assert DateRange.ending(None, 5) is None
    assert DateRange.ending(dt.date(2020, 6, 30)) == DateRange(end=dt.date(2020, 6, 30))
    window = DateRange.ending(dt.date(2020, 6, 30), 5)
    assert window == DateRange(dt.date(2015, 6, 30), dt.date(2020, 6, 30))
    assert DateRange.ending(dt.date(2020, 2, 29), 1) == DateRange(dt.date(2019, 2, 28), dt.date(2020, 2, 29))


def test_window_membership_by_year_and_by_date() -> None:
    window = DateRange(dt.date(2015, 6, 30), dt.date(2020, 6, 30))
    assert window.years == (2015, 2020)
    # records carry a year: the ends' whole years count
    assert [window.contains(y) for y in (2014, 2015, 2020, 2021)] == [False, True, True, False]
    assert [window.contains(d) for d in (dt.date(2015, 6, 29), dt.date(2015, 6, 30), dt.date(2020, 7, 1))] == [
        False,
        True,
        False,
    ]
    assert window.contains(dt.datetime(2020, 6, 30, 12)) is True
    assert window.contains(None) is False  # undated: outside, unless the caller keeps it
    open_start = DateRange(end=dt.date(2000, 1, 1))
    assert open_start.years == (None, 2000) and open_start.contains(1900) and not open_start.contains(2001)
    assert DateRange().contains(1) and DateRange().years == (None, None)
