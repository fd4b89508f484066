"""When a room takes posts (``rooms[].open``): always, or on given weekdays between two dates, as seen
in the site's timezone. A post outside a window waits and goes out at the next opening (the start of
the next open day). Pure: no database, no clock of its own.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from listserv.config import OpenWindow

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LOOK_AHEAD_DAYS = 366 * 2  # a window that opens later than this is as good as closed


def is_open_on(window: OpenWindow | None, day: date) -> bool:
    if window is None:
        return True
    if (window.from_ and day < window.from_) or (window.until and day > window.until):
        return False
    return not window.days or DAYS[day.weekday()] in window.days


def is_open(window: OpenWindow | None, moment: datetime, timezone: str) -> bool:
    return is_open_on(window, moment.astimezone(ZoneInfo(timezone)).date())


def next_opening(window: OpenWindow | None, moment: datetime, timezone: str) -> datetime | None:
    """``moment`` itself when open; else the start of the next open day; None when none is ahead."""
    if is_open(window, moment, timezone):
        return moment
    zone = ZoneInfo(timezone)
    today = moment.astimezone(zone).date()
    for ahead in range(1, LOOK_AHEAD_DAYS):
        day = today + timedelta(days=ahead)
        if is_open_on(window, day):
            return datetime.combine(day, time(0, 0), zone)
    return None
