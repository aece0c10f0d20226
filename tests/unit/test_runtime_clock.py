"""Deadline arithmetic of the shared runtime: ISO 8601 durations on a 24/7 clock or in
working days."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.clock import due

FRIDAY_NOON = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("duration, expected", [
    ("PT15M", datetime(2026, 11, 20, 12, 15, tzinfo=timezone.utc)),
    ("PT1H30M10S", datetime(2026, 11, 20, 13, 30, 10, tzinfo=timezone.utc)),
    ("P3D", datetime(2026, 11, 23, 12, tzinfo=timezone.utc)),
    ("P1W", datetime(2026, 11, 27, 12, tzinfo=timezone.utc)),
    ("P2M", datetime(2027, 1, 20, 12, tzinfo=timezone.utc)),
    ("P1DT2H", datetime(2026, 11, 21, 14, tzinfo=timezone.utc)),
])
def test_durations_on_the_24_7_clock(duration: str, expected: datetime) -> None:
    assert due(FRIDAY_NOON, duration, "24/7") == expected


def test_working_days_skip_the_weekend() -> None:
    assert due(FRIDAY_NOON, "P1D", "working-days") == datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    assert due(FRIDAY_NOON, "P5D", "working-days") == datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    saturday = datetime(2026, 11, 21, 9, tzinfo=timezone.utc)
    assert due(saturday, "P1D", "working-days") == datetime(2026, 11, 23, 9, tzinfo=timezone.utc)
    assert due(FRIDAY_NOON, "PT2H", "working-days") == datetime(2026, 11, 20, 14, tzinfo=timezone.utc)


@pytest.mark.parametrize("start, months, expected", [
    (datetime(2026, 1, 31, tzinfo=timezone.utc), "P1M", datetime(2026, 2, 28, tzinfo=timezone.utc)),
    (datetime(2028, 1, 31, tzinfo=timezone.utc), "P1M", datetime(2028, 2, 29, tzinfo=timezone.utc)),
    (datetime(2026, 8, 31, tzinfo=timezone.utc), "P6M", datetime(2027, 2, 28, tzinfo=timezone.utc)),
    (datetime(2026, 10, 31, tzinfo=timezone.utc), "P1M", datetime(2026, 11, 30, tzinfo=timezone.utc)),
    (datetime(2026, 12, 15, tzinfo=timezone.utc), "P1M", datetime(2027, 1, 15, tzinfo=timezone.utc)),
])
def test_the_last_day_of_a_shorter_month_stands_for_a_missing_day(start, months, expected) -> None:
    assert due(start, months, "24/7") == expected


@pytest.mark.parametrize("duration", ["P", "PT", "3D", "P1.5D", "PT-1H", "P1Y", ""])
def test_what_is_not_a_supported_duration_is_refused(duration: str) -> None:
    with pytest.raises(ValueError):
        due(FRIDAY_NOON, duration, "24/7")


def _walked(start: datetime, days: int) -> datetime:
    """Working days counted one calendar day at a time: the rule, stated plainly."""
    current = start
    while days > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)),
       st.integers(min_value=0, max_value=400))
def test_working_days_are_the_days_walked_one_by_one(start: datetime, days: int):
    start = start.replace(tzinfo=timezone.utc)
    assert due(start, f"P{days}D", "working-days") == _walked(start, days)
