"""Scheduled jobs: APScheduler 3 in the serve loop, declared here at start, never pickled.

One job, ``tick``, runs every minute and asks each task whether it is due: the weekly prompt, the
translation check, daily and weekly digests, reminders, the weekly summary, the monthly report, the
yearly reconfirmation and the rooms' open windows. Every task is idempotent by its own records
(``sent_prompt``, ``sent_digest``, ``job_run``, ``reminded_at`` …), so a missed run is caught up at the
next tick (prompts only within ``schedule.prompt_grace_hours``), a restart sends nothing twice, and
``listserv jobs run NAME --at …`` can run the same task by hand. Only the process holding the ``lease``
row runs the tasks when several share a database (APScheduler alone ran jobs 5–8 times in 4 with two
processes on one job store).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from digests import send_digests
from listserv.config import Settings
from listserv.membership.guests import Guests
from listserv.membership.standing import Standing
from listserv.moderation.openings import Openings
from listserv.moderation.reminders import Reminders
from listserv.outgoing.publish import Publisher
from listserv.store.claims import claimant, is_gone
from listserv.store.models import Delivery, Lease, Outbox
from listserv.weekly.calendar import iso_week, prompt_time
from listserv.weekly.prompts import Weekly
from listserv.weekly.report import Reports

log = logging.getLogger(__name__)
LEASE_SECONDS = 150  # > 2 ticks: a living holder always renews in time
TASKS = ("prompts", "digests", "reminders", "summary", "report", "guests", "reconfirm", "windows")


def acquire_lease(session: Session, holder: str, now: datetime, name: str = "scheduler") -> bool:
    """Take or renew the lease; False while another living process holds an unexpired one. A holder
    that was a process of this host and is gone (killed, crashed) is replaced at once: otherwise a
    restarted serve ran no task for up to LEASE_SECONDS, and a serve restarted more often than that
    never did."""
    expires = now + timedelta(seconds=LEASE_SECONDS)
    current = session.scalar(select(Lease.holder).where(Lease.name == name))
    takeover = Lease.holder == holder
    if current is not None and current != holder and is_gone(current):
        takeover |= Lease.holder == current  # still that holder when we write: one process wins
    renewed = session.execute(
        update(Lease)
        .where(Lease.name == name, takeover | (Lease.expires_at < now))
        .values(holder=holder, expires_at=expires)
    ).rowcount
    if renewed:
        return True
    try:
        with session.begin_nested():
            session.add(Lease(name=name, holder=holder, expires_at=expires))
            session.flush()
    except IntegrityError:
        return False  # another process holds it
    return True


def database_busy(error: OperationalError) -> bool:
    """SQLite's write lock still taken by others when ``busy_timeout`` ran out: under a heavy write load
    (the worker's groups, the spool, the senders) a writer that comes once a minute can lose every
    retry for 30 s. Not a fault of the task; the other tasks of the tick must still run."""
    return "database is locked" in str(error.orig)


@dataclass(eq=False)
class Jobs:
    engine: Engine
    settings: Settings
    weekly: Weekly
    reminders: Reminders
    publisher: Publisher
    clock: Callable[[], datetime]
    after: Callable[[], None]  # wake the senders: a task may have queued mail
    standing: Standing  # the yearly reconfirmation
    openings: Openings  # rooms' open windows: what waited is published at the opening
    guests: Guests  # invitations past their end become ``expired`` (and audited)
    reports: Reports
    holder: str = field(init=False, default_factory=claimant)

    def tick(self) -> None:
        """Every minute, under the lease: run what is due."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            if not acquire_lease(session, self.holder, now):
                return
        for task in TASKS:
            try:
                self.run(task, now)
            except OperationalError as error:  # each task is idempotent: the next tick tries it again
                if not database_busy(error):
                    raise
                log.warning("%s: the database stayed locked; tried again at the next tick", task)

    def run(self, task: str, now: datetime | None = None) -> int:
        """One task now, with the same idempotence keys as the scheduler; returns what it queued."""
        now = now or self.clock()
        with Session(self.engine) as session, session.begin():
            done = getattr(self, f"_{task}")(session, now)
        if done:
            log.info("%s: %d item(s) queued", task, done)
            self.after()
        return done

    def _prompts(self, session: Session, now: datetime) -> int:
        return self.weekly.flag_missing_translations(session, now) + self.weekly.send_prompts(session, now)

    def _digests(self, session: Session, now: datetime) -> int:
        schedule, timezone = self.settings.schedule.digest, self.settings.site.timezone
        local = now.astimezone(ZoneInfo(timezone))
        sent = 0
        daily_hour, daily_minute = map(int, schedule.daily.split(":"))
        if (local.hour, local.minute) >= (daily_hour, daily_minute):
            sent += send_digests(session, self.settings, self.publisher, "daily", now)
        week = iso_week(now, timezone)
        if now >= prompt_time(week, schedule.weekly.day, schedule.weekly.time, timezone):
            sent += send_digests(session, self.settings, self.publisher, "weekly", now)
        return sent

    def _reminders(self, session: Session, now: datetime) -> int:
        return self.reminders.send_reminders(session)

    def _summary(self, session: Session, now: datetime) -> int:
        return self.weekly.send_summaries(session, now)

    def _guests(self, session: Session, now: datetime) -> int:
        """Access already stopped at ``until`` (``store/guests`` checks it); this records the end."""
        return self.guests.expire(session, now)

    def _reconfirm(self, session: Session, now: datetime) -> int:
        return self.standing.reconfirm(session, now)

    def _windows(self, session: Session, now: datetime) -> int:
        return self.openings.release(session, now)

    def _report(self, session: Session, now: datetime) -> int:
        return self.reports.send_report(session, now)


def send_now(engine: Engine, planned_at: datetime, now: datetime) -> int:
    """``jobs run … --at`` a future time: the mail is built as of that time (its rows say so) but is
    due now, not when that time comes. Only rows stamped with exactly that time are touched."""
    moved = 0
    with Session(engine) as session, session.begin():
        for table in (Delivery, Outbox):
            moved += session.execute(
                update(table)
                .where(table.state == "queued", table.created_at == planned_at, table.next_attempt_at > now)
                .values(next_attempt_at=now)
            ).rowcount
    return moved


def build_scheduler(timezone: str, tick: Callable[[], None]) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        timezone=timezone, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}
    )
    # A plain function: APScheduler runs it in its thread pool, off the event loop.
    first = datetime.now().astimezone() + timedelta(seconds=5)  # soon after start: catch up what was missed
    scheduler.add_job(tick, IntervalTrigger(minutes=1), id="tick", name="tick", next_run_time=first)
    return scheduler
