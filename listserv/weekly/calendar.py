"""ISO weeks and local times: which week a moment falls in, as seen in the site's timezone, and when a
weekly event happens in it (DST-correct). Pure: no database, no settings."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_week(week: str) -> tuple[int, int]:
    """``2026-W50`` → (2026, 50); ValueError for a bad form or a week the year does not have."""
    match = WEEK.match(week)
    if match is None:
        raise ValueError(f"{week!r} is not an ISO week like '2026-W50'")
    year, number = int(match[1]), int(match[2])
    try:
        date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ValueError(f"{week!r}: {year} has no week {number}") from None
    return year, number


def iso_week(moment: datetime, timezone: str) -> str:
    """The ISO week of an aware moment, as seen in ``timezone``: ``2026-W48``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; moments must be aware")
    year, number, _ = moment.astimezone(ZoneInfo(timezone)).isocalendar()
    return f"{year}-W{number:02d}"


def week_after(week: str, weeks: int = 1) -> str:
    """The ISO week ``weeks`` after ``week`` (``2026-W53`` → ``2027-W01``)."""
    year, number = parse_week(week)
    year, number, _ = (date.fromisocalendar(year, number, 1) + timedelta(weeks=weeks)).isocalendar()
    return f"{year}-W{number:02d}"


def week_start(week: str, timezone: str) -> datetime:
    """Monday 00:00 of ``week`` in ``timezone``, as an aware UTC datetime."""
    return prompt_time(week, "mon", "00:00", timezone)


def prompt_time(week: str, day: str, time: str, timezone: str) -> datetime:
    """``day`` (mon…sun) of ``week`` at local ``time`` (HH:MM) in ``timezone``, as aware UTC.

    DST-correct: the wall-clock time is kept across a change. A time that does not exist on a spring-
    forward night is read with the offset before the change (02:30 → 03:30 summer time); one that occurs
    twice in autumn is the first of the two.
    """
    year, number = parse_week(week)
    if day not in DAYS:
        raise ValueError(f"{day!r} is not a day like 'mon' ({', '.join(DAYS)})")
    match = TIME.match(time)
    if match is None:
        raise ValueError(f"{time!r} is not a time like '09:00'")
    local_day = date.fromisocalendar(year, number, DAYS.index(day) + 1)
    local = datetime.combine(local_day, clock_time(int(match[1]), int(match[2])), tzinfo=ZoneInfo(timezone))
    return local.astimezone(UTC)
