"""Held posts: holding, the one ``decide()`` every channel uses, and what a decision leads to.

``decide()`` is a single conditional UPDATE (``… WHERE state = 'held'``): whoever commits first wins, on
SQLite and PostgreSQL alike, and every attempt — won, lost or refused — leaves an audit row. What a won
decision leads to (publish, accept a topic, welcome a subscriber, tell a sender) is not known here: it
is a table of consequences keyed by (action, held kind), built by the composition root, so the gate
depends on nothing downstream of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.message import Post, parse_post
from listserv.mail.templates import MailTemplates
from listserv.moderation import vocabulary
from listserv.moderation.audit import AuditEntry, record
from listserv.moderation.codes import derive_code, held_code, mint_code
from listserv.moderation.reply_text import Action
from listserv.moderation.rules import Reason
from listserv.outgoing.notices import Notice, Notifier
from listserv.store import countries
from listserv.store.models import Held, Received, Route
from listserv.store.senders import identity_of

log = logging.getLogger(__name__)
EXCERPT_LINES = 40
HELD_KIND = {Kind.PROPOSE: "proposal", Kind.REQUEST: "subscription"}
STATE_OF = {"approve": "approved", "reject": "rejected", "discard": "discarded"}
ACTION_OF = {state: action for action, state in STATE_OF.items()}
INSERT_HELD = insert(Held.__table__)  # built once: its values are the execution's parameters
ANY_KIND = "*"  # a consequence for every kind of held item without one of its own
ERASURE = "erasure"  # a member's request to be erased: only a chief moderator decides it

# What a won decision does: (session, held item, the decision's reason or week).
Consequence = Callable[[Session, Held, str], None]
Consequences = Mapping[tuple[str, str], Consequence]


@dataclass(frozen=True)
class Decision:
    """What ``decide`` did: ``decided``, or why not (``already_decided``, ``expired``)."""

    result: str
    held: Held


def moderation_queue(session: Session, list_name: str | None = None) -> list[Held]:
    query = select(Held).where(Held.state == "held").order_by(Held.held_at)
    if list_name:
        query = query.where(Held.list_name == list_name)
    return list(session.scalars(query))


@dataclass(eq=False)
class Moderation:
    settings: Settings
    notifier: Notifier
    book: AddressBook
    templates: MailTemplates
    secret: bytes
    clock: Callable[[], datetime]
    consequences: Consequences  # filled by the composition root once its parts exist

    # -- holding ---------------------------------------------------------------------------------

    def hold(
        self,
        session: Session,
        received: Received,
        post: Post,
        route: Route,
        reasons: list[Reason],
        kind: str | None = None,
        notice: str = "moderator_held.txt",
        facts: dict[str, str] | None = None,
        tell_sender: bool = True,  # False: the caller sends its own, more precise notice
        identity: tuple[str, str] | None = None,  # the sender's (name, member state), if read already
    ) -> str:
        """Record the hold, tell the list's moderators (and the sender); return the reply code. A
        request to erase a member (``kind`` erasure) goes to the chief moderators alone. Another kind
        may name its own ``notice`` template and the ``facts`` it shows (a guest's invitation)."""
        mailing_list = self.settings.lists[route.list_name or ""]
        now = self.clock()
        minted = mint_code(self.secret)
        values = {
            "route_id": route.id,
            "received_id": received.id,
            "list_name": mailing_list.name,
            "kind": kind or HELD_KIND.get(route.kind, "post"),
            "message_id": received.message_id,
            "sender": post.sender,
            "sender_name": post.sender_name,
            "subject": post.subject[:2000],
            "reasons": [{"key": r.key, "params": r.params} for r in reasons],
            "state": "held",
            **held_code(minted, now, mailing_list.moderation.code_ttl_days),
        }
        # An INSERT at once, not through the unit of work (a flush per held post): the notices only
        # read the row, so they are given a detached copy of it.
        inserted = session.connection().execute(INSERT_HELD, values)
        held = Held(id=inserted.inserted_primary_key[0], **values)
        if held.kind == ERASURE:
            chiefs = list(self.settings.chief_moderators)
            notices = self.moderator_notices(
                session, held, received.raw, post, "chief_erasure_request.txt", chiefs
            )
        else:
            notices = self._held_notices(session, held, received.raw, post, notice, facts or {}, identity)
        moderators = {address.lower() for address in self.settings.moderators_of(held.list_name)}
        if (
            held.kind not in ("subscription", ERASURE)  # the requester gets their own "pending" answer
            and mailing_list.moderation.notify_sender_held
            and tell_sender
            and post.sender
            and post.sender.lower() not in moderators
        ):
            notices += self.notifier.compose(
                "sender_held.txt", held.list_name, [post.sender], {"subject": held.subject}
            )
        self.notifier.queue(session, notices)  # the moderators' and the sender's: one INSERT
        log.info(
            "held %s on %s as #%d (%s)",
            held.message_id,
            held.list_name,
            held.id,
            ", ".join(r.key for r in reasons),
        )
        return minted.code

    def _held_notices(
        self,
        session: Session,
        held: Held,
        raw: bytes,
        post: Post,
        notice: str,
        facts: dict[str, str],
        identity: tuple[str, str] | None,
    ) -> list[Notice]:
        """The notice is composed from hostile input; if it cannot be built, the post stays held and
        the moderators get a minimal notice (no excerpt, no attachment) with the reason, rather than
        the message sitting in the worker's retries unseen. No savepoint: nothing is queued until
        every notice is built, and a savepoint per held post cost a tenth of holding it."""
        try:
            return self.moderator_notices(session, held, raw, post, notice, identity=identity, **facts)
        except Exception:
            log.exception(
                "notice for %s on %s could not be built; a minimal one is sent",
                held.message_id,
                held.list_name,
            )
            held.reasons = [*held.reasons, {"key": "notice_incomplete", "params": {}}]
            session.execute(
                update(Held)
                .where(Held.id == held.id)
                .values(reasons=held.reasons)
                .execution_options(synchronize_session=False)
            )
            bare = replace(post, text="", attachments=())
            return self.moderator_notices(
                session,
                held,
                raw,
                bare,
                "moderator_held.txt",
                attach_original=False,
                identity=identity,
                **facts,
            )

    def hold_erasure_request(self, session: Session, list_name: str, address: str, name: str) -> Held:
        """A member's request, from their account page, to erase their data: held like ``erase my data``
        by mail, with no mail behind it (no received row, no original to attach)."""
        mailing_list = self.settings.lists[list_name]
        now = self.clock()
        minted = mint_code(self.secret)
        held = Held(
            list_name=list_name,
            kind=ERASURE,
            message_id=f"<erasure.{minted.nonce}@{self.book.domain}>",
            sender=address,
            sender_name=name,
            subject="",
            reasons=[],
            **held_code(minted, now, mailing_list.moderation.code_ttl_days),
        )
        session.add(held)
        session.flush()
        chiefs = list(self.settings.chief_moderators)
        self.notify_moderators(session, held, b"", parse_post(b""), "chief_erasure_request.txt", chiefs)
        log.info("held %s on %s as #%d (erasure, from the web)", held.message_id, list_name, held.id)
        return held

    def notify_moderators(
        self,
        session: Session,
        held: Held,
        raw: bytes,
        post: Post,
        template: str,
        recipients: list[str] | None = None,
        attach_original: bool = True,
        identity: tuple[str, str] | None = None,
        **extra: Any,
    ) -> None:
        notices = self.moderator_notices(
            session, held, raw, post, template, recipients, attach_original, identity, **extra
        )
        self.notifier.queue(session, notices)

    def moderator_notices(
        self,
        session: Session,
        held: Held,
        raw: bytes,
        post: Post,
        template: str,
        recipients: list[str] | None = None,
        attach_original: bool = True,
        identity: tuple[str, str] | None = None,
        **extra: Any,
    ) -> list[Notice]:
        """``notify_moderators``'s notices, composed, not queued."""
        code = derive_code(self.secret, held.code_nonce)
        context = self._notice_context(session, held, code, raw, post, identity) | extra
        return self.notifier.compose(
            template,
            held.list_name,
            recipients or self.settings.moderators_of(held.list_name),
            context,
            reply_to=self.book.address_of(held.list_name, Kind.MODERATE, code),
            attach=(raw or None) if attach_original else None,  # a request from the web has no original
        )

    def _notice_context(
        self,
        session: Session,
        held: Held,
        code: str,
        raw: bytes,
        post: Post,
        identity: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        language = self.settings.lists[held.list_name].language
        lines = post.text.splitlines()
        name, country = identity if identity is not None else identity_of(session, held.sender)
        return {
            "kind": held.kind,
            "code": code,
            "sender_name": name or held.sender_name,
            "sender": held.sender,
            "country": countries.label(country, language),
            "subject": held.subject,
            "reasons": [vocabulary.reason_text(self.templates, r, language) for r in held.reasons],
            "size": f"{max(1, round(len(raw) / 1024))} KB",
            "attachments": list(post.attachments),
            "excerpt": "\n".join(lines[:EXCERPT_LINES]),
            "truncated": len(lines) > EXCERPT_LINES,
            "expires_at": self.templates.date(held.expires_at, language),
            "moderate_address": self.book.address_of(held.list_name, Kind.MODERATE, code),
            "words": vocabulary.command_words(self.templates, language),
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
        now = self.clock()
        attempt = AuditEntry(
            action, "", held.list_name, actor, channel, held.id, detail=reason, message_id=message_id
        )
        if held.state == "held" and now > held.expires_at:
            self.audit(session, replace(attempt, result="expired", detail=""))
            return Decision("expired", held)
        if held.kind == ERASURE and channel != "cli" and not self.is_chief(actor):
            self.audit(session, replace(attempt, result="not_chief"))
            return Decision("not_chief", held)
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
        self.audit(session, replace(attempt, result=result))
        if won:
            consequence = self.consequences.get((action, held.kind)) or self.consequences.get(
                (action, ANY_KIND)
            )
            if consequence is not None:
                consequence(session, held, reason)
            log.info(
                "%s %s on %s by %s via %s", STATE_OF[action], held.message_id, held.list_name, actor, channel
            )
        return Decision(result, held)

    def is_chief(self, address: str) -> bool:
        return address.strip().lower() in {chief.lower() for chief in self.settings.chief_moderators}

    def audit(self, session: Session, entry: AuditEntry) -> None:
        record(session, entry, self.clock())


def tell_sender_rejected(notifier: Notifier) -> Consequence:
    """A rejected post or proposal: its sender learns why, in the list's language."""

    def tell(session: Session, held: Held, reason: str) -> None:
        if held.sender:
            notifier.send(
                session,
                "sender_rejected.txt",
                held.list_name,
                [held.sender],
                {"subject": held.subject, "reason": reason},
            )

    return tell
