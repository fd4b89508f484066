"""Scheduled jobs: APScheduler 3 in the serve loop, jobs declared here at start, never pickled.

Every job is a thin wrapper around a function that is idempotent by its own records (a reminder
sets ``reminded_at``, an escalation ``escalated_at``), so a restart, a missed run or a manual
``listserv jobs run`` never sends twice. Weekly topics and digests join this table with their issue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.moderation import Moderation

log = logging.getLogger(__name__)
# A run missed while the server was down still runs once at start (coalesced), up to this late.
MISFIRE_GRACE_SECONDS = 6 * 3600


def reminders_job(engine: Engine, moderation: Moderation, after: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with Session(engine) as session, session.begin():
            sent = moderation.send_reminders(session)
        if sent:
            log.info("reminders: %d notice(s) queued", sent)
            after()

    return run


def build_scheduler(
    timezone: str, jobs: dict[str, tuple[Callable[[], None], IntervalTrigger]]
) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        timezone=timezone,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
    )
    for name, (function, trigger) in jobs.items():
        # Blocking database work: APScheduler runs plain functions in its thread pool, off the loop.
        scheduler.add_job(function, trigger, id=name, name=name, replace_existing=True)
    return scheduler


def hourly() -> IntervalTrigger:
    """Reminders are checked hourly: each list hears at most once a day (``reminded_at``), and an
    overdue post is escalated within the hour it becomes due."""
    return IntervalTrigger(hours=1)
