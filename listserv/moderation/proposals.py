"""Approved proposals become topics; the sister lists' moderators translate them by reply.

A proposal approved with ``approve 2026-W50`` takes that week (if free), else the next free week; the
proposer is told, and each sister list's moderators get a translation request held under a code of
their own list: they reply with the title on the first line and the body below, and the topic gains
their language."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from listserv.mail.addresses import Kind
from listserv.mail.message import parse_post
from listserv.store.models import Held, Received, Topic
from listserv.weekly.topics import iso_week, next_free_week, text_for

if TYPE_CHECKING:
    from listserv.moderation.queue import Moderation

log = logging.getLogger(__name__)


class TopicQueue:
    def __init__(self, moderation: Moderation) -> None:
        self.moderation = moderation
        self.settings = moderation.settings
        self.notifier = moderation.notifier

    def accept_proposal(self, session: Session, held: Held, week_wanted: str) -> Topic:
        mailing_list = self.settings.lists[held.list_name]
        now = self.notifier.clock()
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
        from listserv.moderation.queue import derive_code, hash_code

        mailing_list = self.settings.lists[list_name]
        now = self.notifier.clock()
        nonce = secrets.token_hex(16)
        code = derive_code(self.moderation.secret, nonce)
        title, body, _ = text_for(topic, mailing_list.language)
        held = Held(
            kind="translation",
            list_name=list_name,
            topic_id=topic.id,
            message_id="",
            subject=title,
            code_hash=hash_code(code),
            code_nonce=nonce,
            held_at=now,
            expires_at=now + timedelta(days=mailing_list.moderation.code_ttl_days),
        )
        session.add(held)
        session.flush()
        self.notifier.send(
            session,
            "moderator_translation_request.txt",
            list_name,
            self.moderation.moderators_of(list_name),
            {
                "week": topic.week,
                "title": title,
                "body": body,
                "language": mailing_list.language,
                "code": code,
            },
            reply_to=self.notifier.book.address_of(list_name, Kind.MODERATE, code),
        )

    def record_translation(self, session: Session, held: Held, own_lines: list[str], actor: str) -> bool:
        """The reply's own text: the title on the first line, the body after. False when empty."""
        topic = session.get(Topic, held.topic_id) if held.topic_id else None
        if topic is None or not own_lines:
            return False
        language = self.settings.lists[held.list_name].language
        topic.titles = {**topic.titles, language: own_lines[0].strip()}
        topic.bodies = {**topic.bodies, language: "\n".join(own_lines[1:]).strip()}
        self.moderation.decide(session, held, "approve", actor, "email", "translation")
        return True
