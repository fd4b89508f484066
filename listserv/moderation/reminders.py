"""Daily reminders of posts held too long, and escalation to the chief moderators.

Idempotent by the held rows' own marks (``reminded_at``, ``escalated_at``): rerunning within the day
sends nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.message import parse_post
from listserv.mail.templates import MailTemplates
from listserv.moderation.audit import AuditEntry
from listserv.moderation.codes import derive_code
from listserv.moderation.queue import Moderation
from listserv.moderation.replies import FAILED_REPLIES
from listserv.outgoing.notices import Notifier
from listserv.store.models import Audit, Held, Received
from listserv.store.once import record_once


@dataclass(eq=False)
class Reminders:
    settings: Settings
    moderation: Moderation  # its notice for the escalation, and its audit
    notifier: Notifier
    templates: MailTemplates
    secret: bytes
    clock: Callable[[], datetime]

    def send_reminders(self, session: Session) -> int:
        """Remind each list's moderators of posts held too long; escalate to the chief moderators what
        waits twice as long."""
        now = self.clock()
        sent = 0
        for list_name, mailing_list in self.settings.lists.items():
            hours = mailing_list.moderation.remind_after_hours
            waiting = session.scalars(
                select(Held)
                .where(
                    Held.list_name == list_name,
                    Held.state == "held",
                    Held.held_at <= now - timedelta(hours=hours),
                )
                .order_by(Held.held_at)
            ).all()
            sent += self._remind(session, list_name, waiting, hours, now)
            sent += self._escalate(
                session, [h for h in waiting if h.held_at <= now - timedelta(hours=2 * hours)], hours, now
            )
            sent += self._report_reply_failures(session, list_name, now)
        return sent

    def _remind(
        self, session: Session, list_name: str, waiting: list[Held], hours: int, now: datetime
    ) -> int:
        if not waiting or all(h.reminded_at and now - h.reminded_at < timedelta(hours=23) for h in waiting):
            return 0
        language = self.settings.lists[list_name].language
        templates = self.templates
        entries = [
            {
                "code": derive_code(self.secret, h.code_nonce),
                "subject": h.subject,
                "sender": h.sender,
                "held_since": templates.date(h.held_at, language),
                "hours": int((now - h.held_at).total_seconds() // 3600),
            }
            for h in waiting
        ]
        self.notifier.send(
            session,
            "moderator_reminder.txt",
            list_name,
            self.settings.moderators_of(list_name),
            {"held": entries, "hours": hours},
        )
        for held in waiting:
            held.reminded_at = now
        self.moderation.audit(session, AuditEntry("remind", "sent", list_name, detail=f"{len(waiting)} held"))
        return 1

    def _escalate(self, session: Session, overdue: list[Held], hours: int, now: datetime) -> int:
        """The chief moderators get the full notice with the same code; they decide by replying."""
        chiefs = list(self.settings.chief_moderators)
        sent = 0
        for held in overdue:
            if held.escalated_at is not None or not chiefs:
                continue
            held.escalated_at = now
            received = session.get(Received, held.received_id)
            self.moderation.notify_moderators(
                session,
                held,
                received.raw,
                parse_post(received.raw),
                "chief_escalation.txt",
                recipients=chiefs,
                hours=2 * hours,
            )
            self.moderation.audit(session, AuditEntry("escalate", "sent", held.list_name, held_id=held.id))
            sent += 1
        return sent

    def _report_reply_failures(self, session: Session, list_name: str, now: datetime) -> int:
        """Once a day, the chief moderators hear of replies that piled up failing on a list (wrong,
        expired or foreign codes; replies from addresses that may not moderate): someone may be
        probing, or a moderator may be stuck. Each failure already has its audit row."""
        chiefs = list(self.settings.chief_moderators)
        since = now - timedelta(days=1)
        failures = session.execute(
            select(Audit.actor, func.count())
            .where(Audit.list_name == list_name, Audit.at >= since, Audit.result.in_(FAILED_REPLIES))
            .group_by(Audit.actor)
            .order_by(func.count().desc())
        ).all()
        total = sum(count for _, count in failures)
        if not chiefs or total < self.settings.lists[list_name].moderation.max_bad_codes_per_hour:
            return 0
        if not record_once(session, "reply_failures", f"{list_name}:{now.date().isoformat()}"):
            return 0
        senders = [{"address": actor, "count": count} for actor, count in failures[:10]]
        self.notifier.send(
            session, "chief_reply_failures.txt", list_name, chiefs, {"failures": total, "senders": senders}
        )
        return 1
