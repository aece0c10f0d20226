"""Time arithmetic for deadlines: ISO 8601 durations on a 24/7 clock or in working days
(Monday to Friday). Public holidays are not counted yet; they are configuration to add."""
from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta

_DURATION = re.compile(
    r"^P(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def _add_months(start: datetime, months: int) -> datetime:
    month = start.month - 1 + months
    year, month = start.year + month // 12, month % 12 + 1
    # The 31st of a shorter month becomes its last day.
    return start.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))


def _add_working_days(start: datetime, days: int) -> datetime:
    """``days`` Monday-to-Friday days after ``start``, its time of day kept. Five working days
    are a week from any weekday, and a weekend counts as the Friday before it, so only the
    remainder is walked (every referral's deadlines are computed with it)."""
    if days <= 0:
        return start
    current = start - timedelta(days=max(0, start.weekday() - 4))
    weeks, rest = divmod(days, 5)
    current += timedelta(weeks=weeks)
    while rest > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            rest -= 1
    return current


def due(start: datetime, duration: str, clock: str) -> datetime:
    """``start`` plus an ISO 8601 duration (PT15M, P3D, P6M …) on the given clock."""
    match = _DURATION.match(duration)
    if not match or duration in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {duration!r}")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    result = _add_months(start, parts.get("months", 0))
    days = parts.get("days", 0) + 7 * parts.get("weeks", 0)
    result = _add_working_days(result, days) if clock == "working-days" else result + timedelta(days=days)
    return result + timedelta(hours=parts.get("hours", 0), minutes=parts.get("minutes", 0),
                              seconds=parts.get("seconds", 0))
