"""Daily reminders of posts held too long, and escalation to the chief moderators.

Idempotent by the held rows' own marks (``reminded_at``, ``escalated_at``): rerunning within the day
sends nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.message import parse_post
from listserv.mail.templates import MailTemplates
from listserv.moderation.audit import AuditEntry
from listserv.moderation.codes import derive_code
from listserv.moderation.queue import Moderation
from listserv.outgoing.notices import Notifier
from listserv.store.models import Held, Received


class Reminders:
    def __init__(
        self,
        settings: Settings,
        moderation: Moderation,
        notifier: Notifier,
        templates: MailTemplates,
        secret: bytes,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.moderation = moderation  # its notice for the escalation, and its audit
        self.notifier = notifier
        self.templates = templates
        self.secret = secret
        self.clock = clock

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
