"""The month navigation of list pages, kept per process until a post is archived.

The calendar (years with posts, a year's months and their counts) was half of a list page's CPU: one
probe per year and the day figures of a year, on every page. It changes only when a post is archived
(a new ``post.id``, in any process: the highest id is one primary-key probe) or when ``listserv
reindex`` recounts the figures (shown within ``seconds``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.store.models import ArchivedPost

Calendar = dict[str, Any]  # years, year, months: what list.html and month.html are given


@dataclass
class CalendarCache:
    seconds: float = 60.0
    limit: int = 1_000
    found: dict[tuple[str, str], tuple[float, int | None, Calendar]] = field(default_factory=dict)

    def get(self, db: Session, list_name: str, wanted: str, make: Callable[[], Calendar]) -> Calendar:
        """The calendar of ``list_name`` for the asked year ``wanted`` ('' for the newest)."""
        version = db.scalar(select(func.max(ArchivedPost.id)))
        now = time.monotonic()
        entry = self.found.get((list_name, wanted))
        if entry is not None and entry[0] > now and entry[1] == version:
            return entry[2]
        if len(self.found) >= self.limit:  # years asked one by one by a crawler: start again
            self.found = {}
        calendar = make()
        self.found[(list_name, wanted)] = (now + self.seconds, version, calendar)
        return calendar
