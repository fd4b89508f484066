"""Rooms with open windows (``rooms[].open``): what waits for the opening, and its release.

A post outside the window is held with the reason ``room_closed`` (``rules.room_is_closed``) and its
sender is told, in the list's language, when it will be published. At the opening the scheduler
approves, in the system's name, each post that waited for nothing else; one that also needs a moderator
stays for them. A post a moderator approves while the room is closed is kept (``held.publish_at``) and
published at the opening, its sender told when. A room with no opening ahead (its ``until`` passed)
leaves every decision to the moderators, and an approval then publishes at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.templates import MailTemplates
from listserv.moderation.queue import Moderation
from listserv.moderation.rules import ROOM_CLOSED
from listserv.outgoing.notices import Notifier
from listserv.outgoing.publish import Publisher
from listserv.outgoing.windows import is_open, next_opening
from listserv.store.models import Held, Received

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Openings:
    settings: Settings
    moderation: Moderation
    publisher: Publisher
    notifier: Notifier
    templates: MailTemplates
    clock: Callable[[], datetime]

    def opening(self, list_name: str, now: datetime) -> datetime | None:
        """``now`` when the list's room is open, else its next opening (None: none ahead)."""
        return next_opening(self.settings.lists[list_name].open, now, self.settings.site.timezone)

    def tell_sender(
        self, session: Session, list_name: str, sender: str, subject: str, approved: bool
    ) -> None:
        if not sender:
            return
        opening = self.opening(list_name, self.clock())
        language = self.settings.lists[list_name].language
        context = {
            "subject": subject,
            "approved": approved,
            "opens_at": self.templates.date(opening, language) if opening else "",
        }
        self.notifier.send(session, "sender_room_closed.txt", list_name, [sender], context)

    def defer(self, session: Session, held: Held) -> bool:
        """An approved post while its room is closed: kept for the opening (True), sender told."""
        now = self.clock()
        opening = self.opening(held.list_name, now)
        if opening is None or opening == now:
            return False
        held.publish_at = opening
        self.tell_sender(session, held.list_name, held.sender, held.subject, approved=True)
        log.info("%s on %s approved while closed: published at %s", held.message_id, held.list_name, opening)
        return True

    def release(self, session: Session, now: datetime) -> int:
        """At the opening: publish what was approved meanwhile, approve what waited for it alone."""
        timezone = self.settings.site.timezone
        done = 0
        due = session.scalars(select(Held).where(Held.state == "approved", Held.publish_at <= now))
        for held in list(due):
            if held.list_name in self.settings.lists and held.received_id is not None:
                self.publisher.publish(session, session.get(Received, held.received_id), held.list_name, now)
                done += 1
            held.publish_at = None
        # Every minute: only the lists open now, and only rows that name the reason (the JSON as text,
        # on SQLite and PostgreSQL alike) are loaded — 1,000 held posts cost 173 ms a tick otherwise.
        open_now = [name for name, ml in self.settings.lists.items() if is_open(ml.open, now, timezone)]
        waiting = session.scalars(
            select(Held).where(
                Held.state == "held",
                Held.kind == "post",
                Held.list_name.in_(open_now),
                cast(Held.reasons, String).contains(ROOM_CLOSED),
            )
        )
        for held in list(waiting):
            if [reason.get("key") for reason in held.reasons or []] == [ROOM_CLOSED]:
                # The reply code's lifetime guards moderators' codes; waiting for the opening is no
                # reason to leave a post unpublished.
                held.expires_at = max(held.expires_at, now)
                self.moderation.decide(session, held, "approve", "system", "system", "room open")
                done += 1
        return done
