"""Periods for the participation figures: ISO weeks or calendar months, as seen in the site's time
zone, each an interval [start, end) of aware UTC moments. Pure: no database, no settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

BY = ("week", "month")
DEFAULT_SPAN = {"week": 12, "month": 12}  # periods shown when --from is not given


@dataclass(frozen=True)
class Period:
    label: str  # "2026-W48" or "2026-11"
    start: datetime
    end: datetime

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def _first_day(day: date, by: str) -> date:
    return day - timedelta(days=day.weekday()) if by == "week" else day.replace(day=1)


def _next_first_day(day: date, by: str) -> date:
    if by == "week":
        return day + timedelta(days=7)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _label(first: date, by: str) -> str:
    if by == "week":
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{first.year}-{first.month:02d}"


def periods(first: date, last: date, by: str, timezone: str) -> list[Period]:
    """Every period from the one holding ``first`` to the one holding ``last``, both included."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    zone = ZoneInfo(timezone)
    day, found = _first_day(first, by), []
    while day <= last:
        following = _next_first_day(day, by)
        found.append(Period(_label(day, by), _local_midnight(day, zone), _local_midnight(following, zone)))
        day = following
    return found


def default_first(last: date, by: str) -> date:
    """The first day of the span shown when no start is given: 12 weeks or 12 months up to ``last``."""
    day = _first_day(last, by)
    for _ in range(DEFAULT_SPAN[by] - 1):
        day = _first_day(day - timedelta(days=1), by)
    return day


def local_day(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()


def median_and_p90(values: list[float]) -> tuple[int | None, int | None]:
    """Whole seconds; the median of an even count is the mean of the two middle values, p90 the
    nearest rank (the smallest value with at least 90 % of the values at or below it)."""
    if not values:
        return None, None
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    rank = -(-9 * len(ordered) // 10)  # ceil(0.9 n)
    return round(median), round(ordered[rank - 1])
