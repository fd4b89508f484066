"""The monthly participation report: last month's figures for the whole forum beside the month before,
per list, and a chart (PNG, inline), to the chief moderators and ``reports.recipients``, each in their
language. Idempotent by ``job_run`` ("monthly_report", "2026-11"): a rerun, a restart or a second
process sends nothing twice. Due from the first day of a month at ``schedule.summary.time``."""

from __future__ import annotations

import email.policy
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.numbers import format_decimal
from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.archive.stats import FIELDS, stats_rows
from listserv.archive.stats_periods import periods
from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.rawmime import SubjectHeader
from listserv.mail.templates import MailTemplates
from listserv.outgoing.outbox import enqueue
from listserv.store.directory import email_key
from listserv.store.models import JobRun, Member
from listserv.store.once import record_once

log = logging.getLogger(__name__)

TEMPLATE = "chief_monthly_report.txt"
MONTHS_CHARTED = 6
FIGURES = FIELDS[2:-1]  # every figure of ``listserv stats`` but the 90th percentile of decisions
QUIET = ("posts", "held", "new_members", "left_members")  # all zero: nothing to report
CHART_LINE = "chart:"  # a header line of the template: the chart's text alternative


def month_to_report(now: datetime, timezone: str, at: str) -> date | None:
    """The first day of the month to report on, once ``now`` has passed its first day's ``at`` (HH:MM)
    of the following month in ``timezone``; None before that."""
    local = now.astimezone(ZoneInfo(timezone))
    hour, minute = map(int, at.split(":"))
    due = datetime.combine(local.date().replace(day=1), time(hour, minute), ZoneInfo(timezone))
    if local < due:
        return None
    return (local.date().replace(day=1) - timedelta(days=1)).replace(day=1)


def _shown(key: str, value: float | None) -> float | None:
    """Latency in minutes (one decimal): seconds are too fine to read in a report."""
    return round(value / 60, 1) if key.endswith("_s") and value is not None else value


def figure(key: str, now: float | None, before: float | None, language: str) -> dict[str, Any]:
    """One line of the report in the reader's number format: the month, the month before, and the
    change ("+3", "-1,5", "=")."""
    now, before = _shown(key, now), _shown(key, before)

    def shown(value: float | None) -> str:
        return "-" if value is None else format_decimal(value, "#,##0.#", locale=language)

    change = ""
    if now is not None and before is not None:
        change = "=" if now == before else format_decimal(now - before, "+#,##0.#;-#,##0.#", locale=language)
    return {"key": key, "now": shown(now), "before": shown(before), "change": change}


@dataclass(eq=False)
class Reports:
    settings: Settings
    book: AddressBook
    templates: MailTemplates
    draw: Callable[[list[str], list[list[int]]], bytes]  # the chart's PNG (report_chart.bars_png)

    @property
    def sender(self) -> str:
        """The site's own address: the report is the forum's, not one list's."""
        return f"{Kind.POSTMASTER.value}@{self.book.domain}"

    def recipients(self) -> list[str]:
        wanted = [*self.settings.chief_moderators, *self.settings.reports.recipients]
        first: dict[str, str] = {}
        for address in wanted:
            first.setdefault(email_key(address), address)  # as first written
        return list(first.values())

    def send_report(self, session: Session, now: datetime) -> int:
        """Last month's report to every recipient, once; the number of messages queued."""
        site = self.settings.site
        month = month_to_report(now, site.timezone, self.settings.schedule.summary.time)
        recipients = self.recipients()
        if month is None or not recipients:
            return 0
        key = f"{month:%Y-%m}"
        # Looked up first: the scheduler asks every minute of the month, and a failed insert costs more.
        if session.get(JobRun, ("monthly_report", key)) or not record_once(session, "monthly_report", key):
            return 0
        first = month
        for _ in range(MONTHS_CHARTED - 1):
            first = (first - timedelta(days=1)).replace(day=1)
        spans = periods(first, month, "month", site.timezone)
        lists = list(self.settings.lists)
        totals = stats_rows(session, lists, spans, together="")
        if not any(totals[-1][key] for key in QUIET):
            # A month where nothing happened (a new forum, a test): no report of zeros; the key stays
            # recorded, so the question is not asked again every minute.
            log.info("monthly report %s: nothing posted, held or changed; not sent", key)
            return 0
        per_list = stats_rows(session, lists, spans[-1:])
        chart = self.draw(
            [row["period"] for row in totals],
            [[row["posts"] for row in totals], [row["posters"] for row in totals]],
        )
        languages = self._languages(session, recipients)
        for recipient in recipients:
            context = {
                "site_name": site.name,
                "month": format_date(month, "LLLL yyyy", locale=languages[recipient]),
                "figures": [
                    figure(key, totals[-1][key], totals[-2][key], languages[recipient]) for key in FIGURES
                ],
                "lists": [(row["list"], row["posts"], row["posters"]) for row in per_list],
                "base_url": site.base_url.rstrip("/"),
            }
            raw = self._compose(recipient, languages[recipient], context, chart, now)
            enqueue(session, "monthly_report", self.sender, [recipient], raw, now)
        return len(recipients)

    def _languages(self, session: Session, recipients: list[str]) -> dict[str, str]:
        """A recipient's language: theirs as a member when the site has it, else the site's first."""
        known = dict(
            session.execute(
                select(Member.email_key, Member.language).where(
                    Member.email_key.in_([email_key(r) for r in recipients])
                )
            ).all()
        )
        default = self.settings.languages[0]
        return {
            r: known.get(email_key(r)) if known.get(email_key(r)) in self.settings.languages else default
            for r in recipients
        }

    def _compose(
        self, recipient: str, language: str, context: dict[str, Any], chart: bytes, now: datetime
    ) -> bytes:
        rendered = self.templates.render(TEMPLATE, language, **context)
        head = self.templates.render_fragment(TEMPLATE, language, **context).partition("\n\n")[0]
        alts = [line[len(CHART_LINE) :] for line in head.splitlines() if line.lower().startswith(CHART_LINE)]
        alt = html.escape(alts[0].strip() if alts else "")
        rtl = self.templates.is_right_to_left(rendered.language)
        message = EmailMessage()
        message["From"] = Address(self.settings.site.name, addr_spec=self.sender)
        message["To"] = recipient
        message["Subject"] = SubjectHeader(rendered.subject)
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain=self.book.domain)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Loop"] = self.book.loop_marker
        message.set_content(rendered.body, charset="utf-8")
        cid = make_msgid(domain=self.book.domain)
        message.add_alternative(
            f'<!DOCTYPE html><html lang="{rendered.language}" dir="{"rtl" if rtl else "ltr"}"><body>'
            f'<div style="white-space: pre-wrap">{html.escape(rendered.body)}</div>'
            f'<p><img src="cid:{cid[1:-1]}" alt="{alt}" width="640" height="280">'
            "</p></body></html>",
            subtype="html",
        )
        message.get_payload()[1].add_related(
            chart,
            maintype="image",
            subtype="png",
            cid=cid,
            disposition="inline",
            filename="participation.png",
        )
        message["Content-Language"] = rendered.language
        return message.as_bytes(policy=email.policy.SMTP)
