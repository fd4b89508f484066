"""A member's standing: the usage protocol accepted, and the yearly reconfirmation.

Protocol (``moderation.require_protocol``): the welcome asks the member to reply ``accept`` to
``-request@`` or to open a signed link; either records ``member.protocol_accepted_at`` and releases the
posts that waited for nothing else (approved in the member's name, audited like any decision).

Reconfirmation (``membership.reconfirm_days``, 0 = off): a member whose last confirmation (or joining) is
older gets one mail, in their language, with a single-use token (``confirmation`` row, action
``reconfirm``) to send back (``confirm TOKEN``, a plain reply) or to open as a link. After
``membership.reconfirm_grace_days`` without an answer, delivery stops on each of their lists
(``disabled_reason`` reconfirmation), their state's focal points are told, and the audit says so. A
late confirmation renews the member and resumes delivery. The scheduler runs ``Standing.reconfirm``
each tick; it is idempotent by the member's own columns.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from listserv.archive.urls import list_url, protocol_url
from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.templates import MailTemplates
from listserv.membership.request_text import first_words
from listserv.moderation.audit import AuditEntry
from listserv.moderation.queue import Moderation
from listserv.moderation.rules import PROTOCOL_NOT_ACCEPTED
from listserv.outgoing.notices import Notifier
from listserv.store import countries
from listserv.store.directory import find_member
from listserv.store.models import Confirmation, Held, Member, Subscription

log = logging.getLogger(__name__)
RECONFIRMATION = "reconfirmation"  # subscription.disabled_reason
RECONFIRM = "reconfirm"  # confirmation.action
# Members asked (or stopped) per tick: each mail costs 11–20 ms to compose (Notifier), and the tick's one
# transaction holds SQLite's write lock, which the intake spool needs (bench/standing.py).
BATCH = 100
PROTOCOL_SALT = "protocol-accept"


def protocol_token(secret: bytes, member_id: int) -> str:
    """The signed part of the welcome's link: it names the member, and nobody can forge another's."""
    return URLSafeSerializer(secret, salt=PROTOCOL_SALT).dumps(member_id)


def protocol_member(secret: bytes, token: str) -> int | None:
    try:
        found = URLSafeSerializer(secret, salt=PROTOCOL_SALT).loads(token)
    except BadSignature:
        return None
    return found if isinstance(found, int) else None


def protocol_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/protocol-accept/{token}"


def reconfirm_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/reconfirm/{token}"


@dataclass(eq=False)
class Standing:
    settings: Settings
    moderation: Moderation  # releases the posts held for the protocol alone
    notifier: Notifier
    book: AddressBook
    templates: MailTemplates
    clock: Callable[[], datetime]
    secret: bytes  # signs the protocol link

    # -- the usage protocol ----------------------------------------------------------------------

    def accept_protocol(self, session: Session, member: Member, channel: str) -> int:
        """Record the acceptance (the first one counts) and release what waited for it; returns how
        many posts were released."""
        now = self.clock()
        if member.protocol_accepted_at is None:
            member.protocol_accepted_at = now
            self.moderation.audit(session, AuditEntry("accept", "protocol", None, member.email, channel))
            log.info("%s accepted the usage protocol (%s)", member.email, channel)
        waiting = session.scalars(
            select(Held).where(
                Held.state == "held", Held.kind == "post", func.lower(Held.sender) == member.email_key
            )
        )
        released = 0
        for held in list(waiting):
            if [reason.get("key") for reason in held.reasons or []] == [PROTOCOL_NOT_ACCEPTED]:
                self.moderation.decide(session, held, "approve", member.email, channel, "protocol accepted")
                released += 1
        return released

    def ask_acceptance(self, session: Session, list_name: str, address: str, subject: str) -> None:
        """A post held for the protocol: its sender learns how to accept it (reply or link)."""
        member = find_member(session, address)
        if member is None:
            return
        language = self.settings.lists[list_name].language
        base = self.settings.site.base_url
        words, _ = first_words(self.templates.catalogue(language, "requests.yaml"))
        context = {
            "subject": subject,
            "words": words,
            "protocol_url": protocol_url(base, language),
            "accept_url": protocol_link(base, protocol_token(self.secret, member.id)),
        }
        request_address = self.book.address_of(list_name, Kind.REQUEST)
        self.notifier.send(
            session, "sender_protocol_needed.txt", list_name, [address], context, reply_to=request_address
        )

    # -- yearly reconfirmation -------------------------------------------------------------------

    def reconfirm(self, session: Session, now: datetime) -> int:
        """Ask whoever is due, stop whoever did not answer in time; returns the mails queued."""
        days = self.settings.membership.reconfirm_days
        if days == 0:
            return 0
        return self._ask(session, now, now - timedelta(days=days)) + self._stop(session, now)  # BATCH each

    def _ask(self, session: Session, now: datetime, due: datetime) -> int:
        members = session.scalars(
            select(Member)
            .where(
                func.coalesce(Member.confirmed_at, Member.created_at) <= due,
                Member.reconfirm_sent_at.is_(None),
                Member.subscriptions.any(),
                Member.role != "staff",  # the secretariat's own people and the moderators are not
                Member.email_key.not_in(self._moderators()),  # designated by a state: nothing to renew
            )
            .order_by(Member.id)
            .limit(BATCH)
            .options(selectinload(Member.subscriptions).selectinload(Subscription.mailing_list))
        )
        asked = 0
        grace = timedelta(days=self.settings.membership.reconfirm_grace_days)
        for member in members:
            list_name = self._list_in_language(member)
            if list_name is None:
                continue
            token = secrets.token_urlsafe(18)
            session.add(
                Confirmation(
                    token_hash=_hash(token),
                    list_name=list_name,
                    address=member.email.lower(),
                    action=RECONFIRM,
                    created_at=now,
                    expires_at=now + grace + timedelta(days=365),  # a late answer still renews
                )
            )
            member.reconfirm_sent_at = now
            language = self.settings.lists[list_name].language
            request_address = self.book.address_of(list_name, Kind.REQUEST)
            words, _ = first_words(self.templates.catalogue(language, "requests.yaml"))
            context = {
                "words": words,
                "name": member.name,
                "token": token,
                "link": reconfirm_link(self.settings.site.base_url, token),
                "deadline": self.templates.date(now + grace, language),
                "lists": sorted(s.mailing_list.name for s in member.subscriptions),
                "archive_url": list_url(self.settings.site.base_url, list_name),
            }
            self.notifier.send(
                session, "member_reconfirm.txt", list_name, [member.email], context, reply_to=request_address
            )
            asked += 1
        return asked

    def _stop(self, session: Session, now: datetime) -> int:
        late = now - timedelta(days=self.settings.membership.reconfirm_grace_days)
        members = session.scalars(
            select(Member)
            .where(
                Member.reconfirm_sent_at <= late,
                Member.subscriptions.any(
                    or_(
                        Subscription.disabled_reason.is_(None), Subscription.disabled_reason != RECONFIRMATION
                    )
                ),
            )
            .order_by(Member.id)
            .limit(BATCH)
            .options(selectinload(Member.subscriptions).selectinload(Subscription.mailing_list))
        )
        told = 0
        for member in members:
            for subscription in member.subscriptions:
                subscription.disabled_at = subscription.disabled_at or now
                subscription.disabled_reason = RECONFIRMATION
                self.moderation.audit(
                    session,
                    AuditEntry("stop", RECONFIRMATION, subscription.mailing_list.name, detail=member.email),
                )
            log.warning("delivery to %s stopped: membership not reconfirmed", member.email)
            told += self._tell_focal_points(session, member)
        return told

    def _tell_focal_points(self, session: Session, member: Member) -> int:
        if not member.country:
            return 0
        focal_points = session.scalars(
            select(Member)
            .where(Member.role == "focal_point", Member.country == member.country)
            .options(selectinload(Member.subscriptions).selectinload(Subscription.mailing_list))
        ).all()
        for focal_point in focal_points:
            list_name = self._list_in_language(focal_point) or self._list_in_language(member)
            if list_name is None:
                continue
            language = self.settings.lists[list_name].language
            context = {
                "name": member.name,
                "address": member.email,
                "state": countries.label(member.country, language),
            }
            self.notifier.send(
                session, "member_focal_point_lapsed.txt", list_name, [focal_point.email], context
            )
        return len(focal_points)

    def renew(self, session: Session, member: Member, channel: str) -> None:
        """A confirmation, by mail or link: a year more, and delivery resumes where it had stopped."""
        now = self.clock()
        member.confirmed_at, member.reconfirm_sent_at = now, None
        for subscription in member.subscriptions:
            if subscription.disabled_reason == RECONFIRMATION:
                subscription.disabled_at = subscription.disabled_reason = None
        self.moderation.audit(session, AuditEntry("confirm", RECONFIRMATION, None, member.email, channel))

    def _usable(self, token: str, now: datetime) -> list[ColumnElement[bool]]:
        return [
            Confirmation.token_hash == _hash(token),
            Confirmation.action == RECONFIRM,
            Confirmation.used_at.is_(None),
            Confirmation.expires_at > now,
        ]

    def reconfirm_pending(self, session: Session, token: str) -> bool:
        """May this reconfirmation link still be used? (The form's page; it changes nothing.)"""
        return session.scalar(select(Confirmation.id).where(*self._usable(token, self.clock()))) is not None

    def renew_by_token(self, session: Session, token: str, channel: str) -> Member | None:
        """The reconfirmation link: its token, single use, renews its member; None when unknown."""
        now = self.clock()
        address = session.execute(
            update(Confirmation)
            .where(*self._usable(token, now))
            .values(used_at=now)
            .returning(Confirmation.address)
        ).scalar()
        member = find_member(session, address) if address else None
        if member is not None:
            self.renew(session, member, channel)
        return member

    def _moderators(self) -> set[str]:
        found = {address for ml in self.settings.lists.values() for address in ml.moderators}
        return {address.lower() for address in found | set(self.settings.chief_moderators)}

    def _list_in_language(self, member: Member) -> str | None:
        """The member's list in their language (their mail is written in it), else their first list."""
        names = [
            s.mailing_list.name for s in member.subscriptions if s.mailing_list.name in self.settings.lists
        ]
        preferred = [n for n in names if self.settings.lists[n].language == member.language]
        return (preferred or sorted(names) or [None])[0]


def _hash(token: str) -> str:
    """As ``requests.token_hash`` (which answers the reply): only the hash is stored."""
    return hashlib.sha256(token.strip().encode()).hexdigest()
