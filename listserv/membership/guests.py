"""Guests for one discussion: an outside person invited to one thread of one list, for a time.

Asked for by a member (a line ``invite EMAIL NAME`` to ``<list>-owner@``, in reply to a message of the
thread: held for the moderators, decided by reply code like a post) or invited by a moderator (command
line, web). Once approved the guest gets an invitation in the list's language with a link to set a
password; from then on ``store/guests`` answers who receives, may post to and may read the thread, until
the invitation expires or is revoked. Every step leaves an audit row (action ``guest``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.archive.posts import find_parent
from listserv.archive.urls import password_url, protocol_url, thread_url
from listserv.config import Settings
from listserv.mail.addresses import normalise_address
from listserv.mail.message import Post, parse_post
from listserv.mail.templates import FALLBACK, MailTemplates
from listserv.membership.guest_text import Invitation, invite_words, read_invitations
from listserv.moderation.audit import AuditEntry
from listserv.moderation.queue import Moderation
from listserv.moderation.rules import Reason, Submission, is_automatic, looks_automatic, looks_like_loop
from listserv.outgoing.notices import Notifier
from listserv.store.directory import find_member
from listserv.store.keys import password_link_token
from listserv.store.models import ArchivedPost, Guest, Held, ListRow, Member, Received, Route, Subscription

log = logging.getLogger(__name__)
GUEST = "guest"  # the kind of a held invitation request
GUEST_DAYS = 30  # an invitation's default length
EXCERPT_LINES = 40


class GuestError(Exception):
    """Why an invitation cannot be made: ``key`` names it for the requester's mail (``problem`` in
    ``member_guest_problem.txt``); the text is for the operator."""

    def __init__(self, key: str, text: str) -> None:
        super().__init__(text)
        self.key = key


@dataclass(eq=False)
class Guests:
    settings: Settings
    moderation: Moderation
    notifier: Notifier
    templates: MailTemplates
    secret: bytes
    clock: Callable[[], datetime]
    words: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        languages = [FALLBACK, *(ml.language for ml in self.settings.lists.values())]
        self.words = invite_words(self.templates.catalogue(lang, "guests.yaml") for lang in languages)

    # -- a moderator invites -------------------------------------------------------------------------

    def invite(
        self,
        session: Session,
        list_name: str,
        message_id: str,
        address: str,
        name: str,
        until: datetime | None,
        actor: str,
        channel: str,
    ) -> Guest:
        """Invite at once (a moderator, or the operator): no request to decide."""
        if list_name not in self.settings.lists:
            raise GuestError("no_list", f"there is no list {list_name!r}")
        root = self.thread_root(session, list_name, message_id)
        if root is None:
            raise GuestError("no_thread", f"no archived message {message_id} on {list_name}")
        guest = self._request(session, list_name, root, address, name, actor, until)
        self._activate(session, guest, root, actor, channel, until)
        return guest

    def thread_root(self, session: Session, list_name: str, message_id: str) -> ArchivedPost | None:
        """The first post of the thread a message (any of it) belongs to."""
        wanted = message_id.strip()
        wanted = wanted if wanted.startswith("<") else f"<{wanted}>"
        post = session.scalars(
            select(ArchivedPost).where(ArchivedPost.list_name == list_name, ArchivedPost.message_id == wanted)
        ).first()
        return session.get(ArchivedPost, post.thread_id or post.id) if post is not None else None

    # -- a member asks, by mail to -owner ------------------------------------------------------------

    def handle_owner(
        self, session: Session, received: Received, post: Post, route: Route, sub: Submission
    ) -> bool:
        """An ``invite EMAIL NAME`` line from a member: held for the moderators (True). Anything else —
        no such line, none with an address ("Invite everyone to…" is a sentence for people), a stranger,
        automatic mail — is left to the ordinary forwarding to people (False): nothing is lost."""
        if looks_like_loop(sub) or is_automatic(sub) or looks_automatic(sub):
            return False
        invitations = [found for found in read_invitations(received.raw, self.words) if found.address]
        sender = sub.sender
        if not invitations or not (sender.is_member or sender.is_moderator or sender.is_chief):
            return False
        list_name = route.list_name or ""
        parent = find_parent(session, list_name, post, "", self.clock())  # named by In-Reply-To/References
        root = session.get(ArchivedPost, parent.thread_id or parent.id) if parent is not None else None
        try:
            if root is None:
                raise GuestError("no_thread", "not in reply to a message of the list")
            guest = self._requested(session, list_name, root, invitations[0], post.sender)
        except GuestError as error:
            self._tell_problem(session, list_name, post.sender, error.key, invitations[0].line)
            self._audit(session, list_name, "refused", post.sender, "email", error.key, received.message_id)
            return True
        reasons = [Reason("guest_request", {"sender": post.sender})]
        facts = self._notice_facts(session, guest, root)
        shown = replace(post, subject=root.subject)  # held with the thread's subject
        self.moderation.hold(
            session, received, shown, route, reasons, GUEST, "moderator_guest_request.txt", facts
        )
        guest.held_id = session.scalar(select(Held.id).where(Held.route_id == route.id))
        detail = f"{invitations[0].address} {root.message_id}"
        self._audit(session, list_name, "requested", post.sender, "email", detail, received.message_id)
        return True

    def _requested(
        self, session: Session, list_name: str, root: ArchivedPost, invitation: Invitation, sender: str
    ) -> Guest:
        address = invitation.address or ""  # lines without one were left to people
        return self._request(session, list_name, root, address, invitation.name, sender, None)

    def _notice_facts(self, session: Session, guest: Guest, root: ArchivedPost) -> dict[str, str]:
        member = session.get(Member, guest.member_id)
        language = self.settings.lists[guest.list_name].language
        return {
            "guest_name": member.name if member else "",
            "guest_address": member.email if member else "",
            "thread_subject": root.subject,
            "thread_url": thread_url(self.settings.site.base_url, guest.list_name, root.message_id),
            "guest_days": str(GUEST_DAYS),
            "until": self.templates.date(guest.until, language),
        }

    # -- what a decision leads to (forum.decision_consequences) -------------------------------------

    def approve(self, session: Session, held: Held, reason: str) -> None:
        guest = session.scalars(select(Guest).where(Guest.held_id == held.id)).first()
        if guest is None or guest.state != "requested":
            return  # erased meanwhile, or invited again by a moderator: nothing left to do
        root = session.get(ArchivedPost, guest.thread_id)
        if root is None:
            return
        self._activate(session, guest, root, held.decided_by or "", "", None)

    def reject(self, session: Session, held: Held, reason: str) -> None:
        guest = session.scalars(select(Guest).where(Guest.held_id == held.id)).first()
        if guest is not None and guest.state == "requested":
            guest.state, guest.ended_at = "rejected", self.clock()
        if held.sender:
            self._tell_problem(session, held.list_name, held.sender, "refused", reason)

    # -- ending ------------------------------------------------------------------------------------

    def revoke(
        self, session: Session, address: str, message_id: str | None, actor: str, channel: str
    ) -> list[Guest]:
        """End a person's invitations now: every one, or the one to the thread of ``message_id``."""
        member = find_member(session, address)
        if member is None:
            raise GuestError("no_guest", f"{address} is not a guest")
        query = select(Guest).where(Guest.member_id == member.id, Guest.state.in_(("active", "requested")))
        found = list(session.scalars(query))
        if message_id is not None:
            roots = {self.thread_root(session, guest.list_name, message_id) for guest in found}
            found = [g for g in found if g.thread_id in {root.id for root in roots if root is not None}]
        if not found:
            raise GuestError(
                "no_guest", f"{address} has no invitation to end" + (" there" if message_id else "")
            )
        now = self.clock()
        for guest in found:
            guest.state, guest.ended_at = "revoked", now
            self._audit(
                session,
                guest.list_name,
                "revoked",
                actor,
                channel,
                f"{member.email} {guest.thread_message_id}",
            )
        return found

    def expire(self, session: Session, now: datetime) -> int:
        """Invitations past ``until`` become ``expired`` (access already stopped: ``store/guests``
        checks ``until``); one audit row each."""
        ended = list(session.scalars(select(Guest).where(Guest.state == "active", Guest.until <= now)))
        for guest in ended:
            guest.state, guest.ended_at = "expired", now
            member = session.get(Member, guest.member_id)
            detail = f"{member.email if member else ''} {guest.thread_message_id}"
            self._audit(session, guest.list_name, "expired", "system", "system", detail)
        return len(ended)

    # -- the steps -----------------------------------------------------------------------------------

    def _request(
        self,
        session: Session,
        list_name: str,
        root: ArchivedPost,
        address: str,
        name: str,
        invited_by: str,
        until: datetime | None,
    ) -> Guest:
        """The guest row (``requested``), and the person's member row if they have none."""
        normalised = normalise_address(address)
        if normalised is None:
            raise GuestError("bad_address", f"not an address: {address!r}")
        member = find_member(session, normalised)
        if member is None:
            member = Member(email=normalised, email_key=normalised.lower(), name=name, role="guest")
            session.add(member)
            session.flush()
        elif _is_subscribed(session, member.id, list_name):
            raise GuestError("already_member", f"{normalised} is already a member of {list_name}")
        guest = session.scalars(
            select(Guest).where(
                Guest.member_id == member.id, Guest.list_name == list_name, Guest.thread_id == root.id
            )
        ).first()
        if guest is not None and guest.state == "active" and guest.until > self.clock():
            raise GuestError("already_guest", f"{normalised} is already a guest of this discussion")
        if guest is None:
            guest = Guest(member_id=member.id, list_name=list_name, thread_id=root.id)
            session.add(guest)
        guest.thread_message_id, guest.state, guest.invited_by = root.message_id, "requested", invited_by
        guest.until = until or self.clock() + timedelta(days=GUEST_DAYS)
        guest.created_at, guest.approved_at, guest.ended_at, guest.held_id = self.clock(), None, None, None
        session.flush()
        return guest

    def _activate(
        self,
        session: Session,
        guest: Guest,
        root: ArchivedPost,
        actor: str,
        channel: str,
        until: datetime | None,
    ) -> None:
        now = self.clock()
        guest.state, guest.approved_at = "active", now
        guest.until = until or now + timedelta(days=GUEST_DAYS)  # a request's time starts at approval
        member = session.get(Member, guest.member_id)
        assert member is not None
        self._send_invitation(session, guest, member, root)
        if channel:  # a decision by reply code is audited by ``decide`` itself
            self._audit(
                session, guest.list_name, "invited", actor, channel, f"{member.email} {root.message_id}"
            )
        log.info(
            "%s invited to %s on %s until %s", member.email, root.message_id, guest.list_name, guest.until
        )

    def _send_invitation(self, session: Session, guest: Guest, member: Member, root: ArchivedPost) -> None:
        """In the list's language: the protocol, the thread's opening message (quoted and attached), how
        to reply, and a link to set a password that lasts as long as the invitation."""
        language = self.settings.lists[guest.list_name].language
        base = self.settings.site.base_url
        token = password_link_token(self.secret, member.id, member.password_hash, guest.until - self.clock())
        lines = parse_post(root.raw).text.splitlines()
        context = {
            "name": member.name,
            "subject": root.subject,
            "thread_url": thread_url(base, guest.list_name, root.message_id),
            "password_url": password_url(base, token),
            "protocol_url": protocol_url(base, language),
            "until": self.templates.date(guest.until, language),
            "excerpt": "\n".join(lines[:EXCERPT_LINES]),
            "truncated": len(lines) > EXCERPT_LINES,
        }
        self.notifier.send(
            session, "guest_invitation.txt", guest.list_name, [member.email], context, attach=root.raw
        )

    def _tell_problem(self, session: Session, list_name: str, to: str, problem: str, detail: str) -> None:
        self.notifier.send(
            session, "member_guest_problem.txt", list_name, [to], {"problem": problem, "detail": detail}
        )

    def _audit(
        self,
        session: Session,
        list_name: str,
        result: str,
        actor: str,
        channel: str,
        detail: str,
        message_id: str | None = None,
    ) -> None:
        self.moderation.audit(
            session,
            AuditEntry("guest", result, list_name, actor, channel or "system", None, detail, message_id),
        )


def _is_subscribed(session: Session, member_id: int, list_name: str) -> bool:
    found = session.scalar(
        select(Subscription.id)
        .join(ListRow, ListRow.id == Subscription.list_id)
        .where(Subscription.member_id == member_id, ListRow.name == list_name)
    )
    return found is not None


def guest_rows(session: Session, list_name: str | None = None) -> list[tuple[Guest, Member]]:
    """Every invitation, newest first (``listserv guests list``)."""
    query = select(Guest, Member).join(Member, Member.id == Guest.member_id).order_by(Guest.id.desc())
    if list_name:
        query = query.where(Guest.list_name == list_name)
    return [(guest, member) for guest, member in session.execute(query)]
