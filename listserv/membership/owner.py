"""A focal point's mail to ``<list>-owner@``: nominating and withdrawing the delegates of their state.

A member state's focal point (``role: focal_point``, with a country) writes ``nominate EMAIL NAME`` or
``withdraw EMAIL`` (or the words of any configured language, ``owner.yaml``). Each command that is theirs
to make is held for the list's moderators like a subscription — its own reply code, the one
``decide()`` — and a nomination, once approved, makes the nominee a delegate of the focal point's state
on that list, welcomed; a withdrawal removes them from the forum. A From header alone proves nothing,
so nothing happens before a moderator agrees. A focal point cannot act for another state: a nominee
who is already a member of another state, or a line naming another state ("Ana (AR)"), is refused at
once, and so is anyone who is not a focal point. Every answer is in the list's language; every refusal
is audited. Mail with no command is not handled here: it reaches the moderators unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.addresses import AddressBook
from listserv.mail.message import Post, parse_post
from listserv.mail.templates import MailTemplates
from listserv.membership.owner_text import OwnerCommand, first_words, read_commands, vocabulary_from
from listserv.membership.requests import Requests
from listserv.moderation.audit import AuditEntry
from listserv.moderation.codes import held_code, mint_code
from listserv.moderation.queue import Moderation
from listserv.moderation.rules import Submission, is_automatic, looks_automatic, looks_like_loop
from listserv.outgoing.notices import Notifier
from listserv.store import countries
from listserv.store.directory import find_member, is_allowed_domain, remove_member, subscribe
from listserv.store.models import Held, Member, Received, Route

log = logging.getLogger(__name__)
NOMINATION = "nomination"  # the held kind, for both verbs (the reason says which)
FOCAL_POINT = "focal_point"


@dataclass(eq=False)
class OwnerMail:
    settings: Settings
    moderation: Moderation
    notifier: Notifier
    book: AddressBook
    templates: MailTemplates
    requests: Requests  # the welcome of an approved nominee
    secret: bytes
    clock: Callable[[], datetime]
    vocabulary: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        languages = ["en", *self.settings.languages]
        self.vocabulary = vocabulary_from(self.templates.catalogue(lang, "owner.yaml") for lang in languages)

    def handle(self, session: Session, received: Received, post: Post, route: Route, sub: Submission) -> bool:
        """True when the mail held commands and was answered here; False: forward it to people."""
        if looks_like_loop(sub) or is_automatic(sub) or looks_automatic(sub) or not post.sender:
            return False
        commands = read_commands(received.raw, self.vocabulary)
        if not commands:
            return False
        list_name = route.list_name or ""
        focal_point = find_member(session, post.sender)
        if focal_point is None or focal_point.role != FOCAL_POINT or not focal_point.country:
            self._refuse(session, list_name, post.sender, "not_focal_point", commands[0], received)
            return True
        for command in commands:
            self.submit(session, list_name, focal_point, command, received)
        return True

    def submit(
        self,
        session: Session,
        list_name: str,
        focal_point: Member,
        command: OwnerCommand,
        received: Received | None = None,
    ) -> str:
        """One command of a focal point (by mail: ``received``; else from the web, where the page shows
        the outcome and no mail answers a refusal): ``<verb>_pending``, or why it was refused."""
        problem = self._problem(session, focal_point, command)
        if problem:
            self._refuse(
                session, list_name, focal_point.email, problem, command, received, focal_point.country
            )
            return problem
        self._hold(session, received, list_name, focal_point, command)
        return f"{command.verb}_pending"

    def _problem(self, session: Session, focal_point: Member, command: OwnerCommand) -> str | None:
        """Why the command cannot go to the moderators; None when it can."""
        if command.address is None:
            return "bad_address"
        if command.country and command.country != focal_point.country:
            return "other_state"
        nominee = find_member(session, command.address)
        if nominee is not None and nominee.country and nominee.country != focal_point.country:
            return "other_state"
        if nominee is not None and nominee.role != "delegate":
            return "not_a_delegate"  # staff, moderators' colleagues, focal points are not theirs to change
        if command.verb == "withdraw":
            return "not_member" if nominee is None else None
        if not is_allowed_domain(command.address, self.settings.members.allowed_domains):
            return "bad_address"
        return None

    def _hold(
        self,
        session: Session,
        received: Received | None,
        list_name: str,
        focal_point: Member,
        command: OwnerCommand,
    ) -> None:
        """Held like a subscription, with no message of its own to show: the reason says it all."""
        now = self.clock()
        minted = mint_code(self.secret)
        params = {
            "verb": command.verb,
            "nominee": command.address or "",
            "name": command.name,
            "country": focal_point.country,
            "focal_point": focal_point.email,
        }
        held = Held(
            received_id=received.id if received else None,
            list_name=list_name,
            kind=NOMINATION,
            message_id=f"<nomination.{minted.nonce}@{self.book.domain}>",
            sender=focal_point.email,
            sender_name=focal_point.name,
            subject=f"{command.verb} {command.address} {command.name}".strip()[:2000],
            reasons=[{"key": command.verb, "params": params}],
            **held_code(minted, now, self.settings.lists[list_name].moderation.code_ttl_days),
        )
        session.add(held)
        session.flush()
        language = self.settings.lists[list_name].language
        extra = {"verb": command.verb, "nominee": command.address, "nominee_name": command.name}
        extra["state"] = countries.label(focal_point.country, language)
        self.moderation.notify_moderators(
            session, held, b"", parse_post(b""), "moderator_nomination.txt", attach_original=False, **extra
        )
        self._answer(session, list_name, focal_point.email, f"{command.verb}_pending", command)
        log.info(
            "%s %s by %s held on %s as #%d",
            command.verb,
            command.address,
            focal_point.email,
            list_name,
            held.id,
        )

    def _refuse(
        self,
        session: Session,
        list_name: str,
        address: str,
        problem: str,
        command: OwnerCommand,
        received: Received | None,
        country: str = "",
    ) -> None:
        if received is not None:  # by mail: answered by mail; the web page shows it instead
            self._answer(session, list_name, address, problem, command, country)
        entry = AuditEntry("reject", problem, list_name, address, "email" if received else "web")
        detail = f"{command.verb} {command.written}"
        message_id = received.message_id if received else None
        self.moderation.audit(session, replace(entry, detail=detail, message_id=message_id))
        log.info("%s %s by %s refused on %s: %s", command.verb, command.written, address, list_name, problem)

    def _answer(
        self,
        session: Session,
        list_name: str,
        address: str,
        outcome: str,
        command: OwnerCommand,
        country: str = "",
    ) -> None:
        about = {"verb": command.verb, "nominee": command.address or command.written, "name": command.name}
        self._tell(session, list_name, address, outcome, about | {"country": country})

    def _tell(
        self,
        session: Session,
        list_name: str,
        address: str,
        outcome: str,
        about: dict[str, object],
        reason: str = "",
    ) -> None:
        """The focal point's answer, in the list's language: pending, refused (and why), decided."""
        language = self.settings.lists[list_name].language
        context = {
            "outcome": outcome,
            "verb": about["verb"],
            "nominee": about["nominee"],
            "nominee_name": about["name"],
            "state": countries.label(str(about.get("country") or ""), language),
            "reason": reason,
            "words": first_words(self.templates.catalogue(language, "owner.yaml")),
        }
        self.notifier.send(session, "member_focal_point.txt", list_name, [address], context)

    # -- consequences of a decision (forum.decision_consequences) ------------------------------------

    def approve(self, session: Session, held: Held, reason: str) -> None:
        """The nominee becomes a delegate of the focal point's state (welcomed), or is withdrawn."""
        params = nomination_of(held)
        nominee, verb = str(params["nominee"]), str(params["verb"])
        if verb == "withdraw":
            remove_member(session, nominee)
        else:
            member = subscribe(session, nominee, str(params["name"]), held.list_name, str(params["country"]))
            member.country = member.country or str(params["country"])
            self.requests.send_welcome(session, held.list_name, nominee, member.name)
        self._decided(session, held, f"{verb}_approved", "")

    def reject(self, session: Session, held: Held, reason: str) -> None:
        self._decided(session, held, f"{nomination_of(held)['verb']}_rejected", reason)

    def _decided(self, session: Session, held: Held, outcome: str, reason: str) -> None:
        self._tell(session, held.list_name, held.sender, outcome, nomination_of(held), reason)


def nomination_of(held: Held) -> dict[str, object]:
    """What a held nomination or withdrawal is about (kept in its one reason's parameters)."""
    return dict((held.reasons or [{}])[0].get("params") or {})
