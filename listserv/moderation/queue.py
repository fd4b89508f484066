"""Held posts: reply codes, holding, the one ``decide()`` every channel uses, reminders.

A reply code is 75 bits in Crockford base32 (``K7QXM-2PAB9-ZT4HD``: no I, L, O or U, so it reads
aloud and survives retyping), derived as HMAC(site secret, random nonce): the database keeps the nonce
and the code's SHA-256, never the code, so a leaked database decides nothing, yet an escalation can
send the chief moderators the very code the list's moderators have. ``decide()`` is a single conditional
UPDATE (``… WHERE state = 'held'``): whoever commits first wins, on SQLite and PostgreSQL alike, and
every attempt — won, lost or refused — leaves an audit row.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from listserv.mail.addresses import Kind
from listserv.mail.message import Post, parse_post
from listserv.moderation.proposals import TopicQueue
from listserv.moderation.reply_text import normalise_code
from listserv.moderation.rules import Reason
from listserv.outgoing.delivery import Publisher
from listserv.outgoing.notices import Notifier, send_welcome
from listserv.store.directory import identity_of, subscribe
from listserv.store.models import Audit, Held, Received, Route

log = logging.getLogger(__name__)
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EXCERPT_LINES = 40
Action = Literal["approve", "reject", "discard"]
HELD_KIND = {Kind.PROPOSE: "proposal", Kind.REQUEST: "subscription"}
STATE_OF = {"approve": "approved", "reject": "rejected", "discard": "discarded"}
ACTION_OF = {state: action for action, state in STATE_OF.items()}


def derive_code(secret: bytes, nonce: str) -> str:
    number = int.from_bytes(hmac.new(secret, nonce.encode("ascii"), hashlib.sha256).digest()[:10], "big")
    symbols = "".join(CROCKFORD[(number >> (5 * i)) & 31] for i in range(15))
    return f"{symbols[:5]}-{symbols[5:10]}-{symbols[10:]}"


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Decision:
    """What ``decide`` did: ``decided``, or why not (``already_decided``, ``expired``)."""

    result: str
    held: Held


def find_held(session: Session, code_or_id: str) -> Held | None:
    """A held post by its reply code (any spelling) or, for operators, its number."""
    code = normalise_code(code_or_id)
    if code is not None:
        return session.scalars(select(Held).where(Held.code_hash == hash_code(code))).first()
    if code_or_id.strip().lstrip("#").isdigit():
        return session.get(Held, int(code_or_id.strip().lstrip("#")))
    return None


def moderation_queue(session: Session, list_name: str | None = None) -> list[Held]:
    query = select(Held).where(Held.state == "held").order_by(Held.held_at)
    if list_name:
        query = query.where(Held.list_name == list_name)
    return list(session.scalars(query))


def audit_trail(session: Session, list_name: str | None = None, limit: int = 100) -> list[Audit]:
    query = select(Audit).order_by(Audit.id.desc()).limit(limit)
    if list_name:
        query = query.where(Audit.list_name == list_name)
    return list(reversed(session.scalars(query).all()))


class Moderation:
    def __init__(self, notifier: Notifier, secret: bytes, publisher: Publisher) -> None:
        self.notifier = notifier
        self.secret = secret
        self.publisher = publisher
        self.settings = notifier.settings
        self.templates = notifier.templates
        self.topics = TopicQueue(self)

    # -- holding ---------------------------------------------------------------------------------

    def hold(
        self, session: Session, received: Received, post: Post, route: Route, reasons: list[Reason]
    ) -> str:
        """Record the hold, tell the list's moderators (and the sender); return the reply code."""
        mailing_list = self.settings.lists[route.list_name or ""]
        now = self.notifier.clock()
        nonce = secrets.token_hex(16)
        code = derive_code(self.secret, nonce)
        held = Held(
            route_id=route.id,
            received_id=received.id,
            list_name=mailing_list.name,
            kind=HELD_KIND.get(route.kind, "post"),
            message_id=received.message_id,
            sender=post.sender,
            sender_name=post.sender_name,
            subject=post.subject[:2000],
            reasons=[{"key": r.key, "params": r.params} for r in reasons],
            code_hash=hash_code(code),
            code_nonce=nonce,
            held_at=now,
            expires_at=now + timedelta(days=mailing_list.moderation.code_ttl_days),
        )
        session.add(held)
        session.flush()
        self.notify_moderators(session, held, received.raw, post, "moderator_held.txt")
        moderators = {address.lower() for address in self.moderators_of(held.list_name)}
        if (
            held.kind != "subscription"  # the requester gets their own "pending" answer
            and mailing_list.moderation.notify_sender_held
            and post.sender
            and post.sender.lower() not in moderators
        ):
            self.notifier.send(
                session, "sender_held.txt", held.list_name, [post.sender], {"subject": held.subject}
            )
        log.info(
            "held %s on %s as #%d (%s)",
            held.message_id,
            held.list_name,
            held.id,
            ", ".join(r.key for r in reasons),
        )
        return code

    def moderators_of(self, list_name: str) -> list[str]:
        """A list without moderators of its own is moderated by the chief moderators."""
        return list(self.settings.lists[list_name].moderators) or list(self.settings.chief_moderators)

    def notify_moderators(
        self,
        session: Session,
        held: Held,
        raw: bytes,
        post: Post,
        template: str,
        recipients: list[str] | None = None,
        **extra: Any,
    ) -> None:
        code = derive_code(self.secret, held.code_nonce)
        context = self._notice_context(session, held, code, raw, post) | extra
        moderate = self.notifier.book.address_of(held.list_name, Kind.MODERATE, code)
        self.notifier.send(
            session,
            template,
            held.list_name,
            recipients or self.moderators_of(held.list_name),
            context,
            reply_to=moderate,
            attach=raw,
        )

    def _notice_context(
        self, session: Session, held: Held, code: str, raw: bytes, post: Post
    ) -> dict[str, Any]:
        language = self.settings.lists[held.list_name].language
        lines = post.text.splitlines()
        name, country = identity_of(session, held.sender)
        return {
            "kind": held.kind,
            "code": code,
            "sender_name": name or held.sender_name,
            "sender": held.sender,
            "country": country,
            "subject": held.subject,
            "reasons": [self.templates.reason(reason, language) for reason in held.reasons],
            "size": f"{max(1, round(len(raw) / 1024))} KB",
            "attachments": list(post.attachments),
            "excerpt": "\n".join(lines[:EXCERPT_LINES]),
            "truncated": len(lines) > EXCERPT_LINES,
            "expires_at": self.templates.date(held.expires_at, language),
            "moderate_address": self.notifier.book.address_of(held.list_name, Kind.MODERATE, code),
            "words": self.templates.words(language),
        }

    # -- deciding --------------------------------------------------------------------------------

    def decide(
        self,
        session: Session,
        held: Held,
        action: Action,
        actor: str,
        channel: str,
        reason: str = "",
        message_id: str | None = None,
    ) -> Decision:
        """The one way a held post is decided (email, web, command line). First decision wins."""
        now = self.notifier.clock()
        if held.state == "held" and now > held.expires_at:
            self.audit(session, held.list_name, held.id, actor, channel, action, "expired", "", message_id)
            return Decision("expired", held)
        won = (
            session.execute(
                update(Held)
                .where(Held.id == held.id, Held.state == "held")
                .values(
                    state=STATE_OF[action], decided_at=now, decided_by=actor, decision_reason=reason or None
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            == 1
        )
        session.refresh(held)
        result = "decided" if won else "already_decided"
        self.audit(session, held.list_name, held.id, actor, channel, action, result, reason, message_id)
        if won:
            self._carry_out(session, held, action, reason)
            log.info(
                "%s %s on %s by %s via %s", STATE_OF[action], held.message_id, held.list_name, actor, channel
            )
        return Decision(result, held)

    def _carry_out(self, session: Session, held: Held, action: Action, reason: str) -> None:
        now = self.notifier.clock()
        if action == "approve" and held.kind == "post":
            self.publisher.publish(session, session.get(Received, held.received_id), held.list_name, now)
        elif action == "approve" and held.kind == "proposal":
            self.topics.accept_proposal(session, held, reason)
        elif action == "approve" and held.kind == "subscription":
            subscribe(session, held.sender, held.sender_name, held.list_name)
            send_welcome(self.notifier, session, held.list_name, held.sender, held.sender_name)
        elif action == "reject" and held.kind == "subscription":
            self.notifier.send(
                session, "member_subscribe_refused.txt", held.list_name, [held.sender], {"reason": reason}
            )
        elif action == "reject" and held.sender:
            self.notifier.send(
                session,
                "sender_rejected.txt",
                held.list_name,
                [held.sender],
                {"subject": held.subject, "reason": reason},
            )

    def audit(
        self,
        session: Session,
        list_name: str | None,
        held_id: int | None,
        actor: str,
        channel: str,
        action: str,
        result: str,
        detail: str = "",
        message_id: str | None = None,
    ) -> None:
        session.add(
            Audit(
                at=self.notifier.clock(),
                list_name=list_name,
                held_id=held_id,
                actor=actor,
                channel=channel,
                action=action,
                result=result,
                detail=detail[:2000],
                message_id=message_id,
            )
        )

    # -- reminders -------------------------------------------------------------------------------

    def send_reminders(self, session: Session) -> int:
        """Daily: remind each list's moderators of posts held too long; escalate to the chief
        moderators what waits twice as long. Idempotent: rerunning within the day sends nothing."""
        now = self.notifier.clock()
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
        entries = [
            {
                "code": derive_code(self.secret, h.code_nonce),
                "subject": h.subject,
                "sender": h.sender,
                "held_since": self.templates.date(h.held_at, language),
                "hours": int((now - h.held_at).total_seconds() // 3600),
            }
            for h in waiting
        ]
        self.notifier.send(
            session,
            "moderator_reminder.txt",
            list_name,
            self.moderators_of(list_name),
            {"held": entries, "hours": hours},
        )
        for held in waiting:
            held.reminded_at = now
        self.audit(session, list_name, None, "system", "system", "remind", "sent", f"{len(waiting)} held")
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
            self.notify_moderators(
                session,
                held,
                received.raw,
                parse_post(received.raw),
                "chief_escalation.txt",
                recipients=chiefs,
                hours=2 * hours,
            )
            self.audit(session, held.list_name, held.id, "system", "system", "escalate", "sent")
            sent += 1
        return sent
