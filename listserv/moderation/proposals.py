"""Approved proposals become topics; the sister lists' moderators translate them by reply.

A proposal approved with ``approve 2026-W50`` takes that week (if free), else the next free week; the
proposer is told, and each sister list's moderators get a translation request held under a code of
their own list: they reply with the title on the first line and the body below, and the topic gains
their language."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.message import parse_post
from listserv.moderation.codes import held_code, mint_code
from listserv.outgoing.notices import Notifier
from listserv.store.models import Held, Received, Topic
from listserv.weekly.calendar import iso_week
from listserv.weekly.topics import next_free_week, text_for

log = logging.getLogger(__name__)
MAX_TITLE = 300


def translation_from(own_lines: list[str]) -> tuple[str, str] | None:
    """A translator's reply: the title on the first line, the body after; None when there is no title."""
    if not own_lines or not own_lines[0].strip():
        return None
    return own_lines[0].strip(), "\n".join(own_lines[1:]).strip()


@dataclass(eq=False)
class Proposals:
    settings: Settings
    notifier: Notifier
    book: AddressBook
    secret: bytes
    clock: Callable[[], datetime]

    def accept(self, session: Session, held: Held, week_wanted: str) -> Topic:
        """An approved proposal becomes the topic of ``week_wanted`` if free, else of the next free week."""
        mailing_list = self.settings.lists[held.list_name]
        now = self.clock()
        received = session.get(Received, held.received_id) if held.received_id else None
        body = parse_post(received.raw).text.strip() if received else ""
        next_week = iso_week(now + timedelta(days=7), self.settings.site.timezone)
        week = next_free_week(session, mailing_list.room, max(week_wanted or next_week, next_week))
        topic = Topic(
            room=mailing_list.room,
            week=week,
            titles={mailing_list.language: held.subject},
            bodies={mailing_list.language: body},
            proposer=held.sender or None,
            created_at=now,
        )
        session.add(topic)
        session.flush()
        if held.sender:
            self.notifier.send(
                session,
                "sender_proposal_accepted.txt",
                held.list_name,
                [held.sender],
                {"subject": held.subject, "week": week},
            )
        for sister in self.settings.lists.values():
            if sister.room == mailing_list.room and sister.name != mailing_list.name:
                self.request_translation(session, topic, sister.name)
        log.info("proposal %s became the topic of %s in room %s", held.message_id, week, mailing_list.room)
        return topic

    def request_translation(self, session: Session, topic: Topic, list_name: str) -> None:
        mailing_list = self.settings.lists[list_name]
        now = self.clock()
        minted = mint_code(self.secret)
        title, body, _ = text_for(topic, mailing_list.language)
        held = Held(
            kind="translation",
            list_name=list_name,
            topic_id=topic.id,
            message_id="",
            subject=title,
            **held_code(minted, now, mailing_list.moderation.code_ttl_days),
        )
        session.add(held)
        session.flush()
        self.notifier.send(
            session,
            "moderator_translation_request.txt",
            list_name,
            self.settings.moderators_of(list_name),
            {
                "week": topic.week,
                "title": title,
                "body": body,
                "language": mailing_list.language,
                "code": minted.code,
            },
            reply_to=self.book.address_of(list_name, Kind.MODERATE, minted.code),
        )

    def record_translation(self, session: Session, held: Held, title: str, body: str) -> None:
        """The translation a won decision approved (by reply or on the web) joins the topic."""
        topic = session.get(Topic, held.topic_id) if held.topic_id else None
        if topic is None:
            return
        language = self.settings.lists[held.list_name].language
        topic.titles = {**topic.titles, language: title[:MAX_TITLE]}
        topic.bodies = {**topic.bodies, language: body}
