"""What each routed message leads to (step 3 onwards of the message's path): posts and proposals go
through the posting policy, moderators' replies decide, mail for the owner reaches the moderators.
Runs inside the worker's transaction, so its effects commit with the ``processed`` mark."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial
from typing import NamedTuple

from sqlalchemy.orm import Session

from listserv.archive.posts import find_parent
from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.message import Post
from listserv.mail.subjects import subject_key
from listserv.membership.bounces import Bounces
from listserv.membership.guests import Guests
from listserv.membership.owner import OwnerMail
from listserv.membership.requests import Requests
from listserv.membership.standing import Standing
from listserv.moderation.audit import AuditEntry, count_entries
from listserv.moderation.openings import Openings
from listserv.moderation.queue import Moderation
from listserv.moderation.replies import ModeratorMail
from listserv.moderation.rules import (
    PROTOCOL_NOT_ACCEPTED,
    ROOM_CLOSED,
    Reason,
    Submission,
    Verdict,
    evaluate,
    is_authenticated,
    is_automatic,
    looks_automatic,
    looks_like_loop,
)
from listserv.outgoing.notices import Notifier
from listserv.outgoing.outbox import enqueue
from listserv.outgoing.publish import Publisher
from listserv.store.models import Received, Route
from listserv.store.senders import sender_status

log = logging.getLogger(__name__)
DnsLookup = Callable[..., bytes | None]
QUIET_DEFECTS = {"MissingDate"}  # common and harmless: not worth a moderator's attention


MAX_SIGNATURES = 5  # each costs a DNS look-up; a real message carries one or two


def verify_dkim(raw: bytes, dns: DnsLookup | None = None) -> str | None:
    """The d= domain of the first DKIM signature that verifies (dkimpy), or None. Any error in an
    unreadable signature or a failed DNS look-up counts as a failure."""
    import dkim  # late: ~0.3 s of imports at start that an idle serve does not need

    try:
        verifier = dkim.DKIM(raw, timeout=5)
        count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
        for index in range(min(count, MAX_SIGNATURES)):
            verified = verifier.verify(index, dnsfunc=dns) if dns else verifier.verify(index)
            if verified:
                return verifier.domain.decode("ascii", "replace").lower()
    except Exception:  # dkimpy raises its own errors for malformed signatures and DNS failures
        return None
    return None


class Handlers(NamedTuple):
    """The handlers of the addresses that are not posts, each owned by its own package."""

    replies: ModeratorMail
    requests: Requests
    bounces: Bounces
    owner: OwnerMail  # a focal point's nominate/withdraw lines; other -owner mail is forwarded
    openings: Openings  # a post outside its room's open window: the sender told when it goes out
    standing: Standing  # a post waiting for the usage protocol: the sender told how to accept it
    guests: Guests  # ``invite`` lines to -owner (membership/guests.py)


@dataclass(eq=False)
class Dispatch:
    settings: Settings
    book: AddressBook
    moderation: Moderation
    publisher: Publisher
    notifier: Notifier
    handlers: Handlers
    clock: Callable[[], datetime]
    dns: DnsLookup | None = None  # tests pass a resolver; serve uses dkimpy's own DNS lookups

    def __call__(self, session: Session, received: Received, post: Post, routes: list[Route]) -> None:
        for route in routes:
            if route.kind == Kind.POSTMASTER:
                self._forward(session, received, post, None, list(self.settings.chief_moderators))
                continue
            if route.list_name not in self.settings.lists:
                log.warning("%s to inactive list %s: kept, not handled", received.message_id, route.list_name)
                continue
            sub = self._submission(session, received, post, route.list_name)
            if route.kind in (Kind.POST, Kind.PROPOSE):
                self._submit(session, received, post, route, sub)
            elif route.kind == Kind.OWNER:
                self._owner(session, received, post, route, sub)
            elif route.kind == Kind.BOUNCES:
                self.handlers.bounces.handle(session, received, route)
            elif route.kind == Kind.MODERATE:
                self.handlers.replies.handle(session, received, post, route, sub)
            elif route.kind == Kind.REQUEST:
                self.handlers.requests.handle(session, received, post, route, sub)

    def _owner(self, session: Session, received: Received, post: Post, route: Route, sub: Submission) -> None:
        """A command line (nominate, withdraw, invite) goes to its owner; other -owner mail reaches people."""
        handlers = self.handlers
        if handlers.owner.handle(session, received, post, route, sub):
            return
        if handlers.guests.handle_owner(session, received, post, route, sub):
            return
        self._forward(session, received, post, sub, self.settings.moderators_of(route.list_name))

    def _submission(self, session: Session, received: Received, post: Post, list_name: str) -> Submission:
        sender = sender_status(session, post.sender, list_name, self.settings, self.clock())
        return Submission(
            post=post,
            mail_from=received.mail_from,
            mailing_list=self.settings.lists[list_name],
            sender=sender,
            thread_id=self._thread_of(session, post, list_name) if sender.guest_threads else None,
            list_id=self.book.list_id(list_name),
            loop_marker=self.book.loop_marker,
            raw=received.raw,
            # Cached for this message: several rules may ask, and each answer costs DNS look-ups.
            verify_dkim=cache(partial(verify_dkim, dns=self.dns)),
            now=self.clock(),
            timezone=self.settings.site.timezone,
        )

    def _thread_of(self, session: Session, post: Post, list_name: str) -> int | None:
        """The archived thread a post replies to, as the archive will thread it (a guest's post)."""
        key = subject_key(post.subject, self.publisher.prefix(self.settings.lists[list_name]))
        parent = find_parent(session, list_name, post, key, self.clock())
        return (parent.thread_id or parent.id) if parent is not None else None

    def _submit(
        self, session: Session, received: Received, post: Post, route: Route, sub: Submission
    ) -> None:
        outcome = evaluate(sub)
        keys = ", ".join(reason.key for reason in outcome.reasons)
        list_name = sub.mailing_list.name
        if outcome.verdict is Verdict.DISCARD:
            log.info("discarded %s to %s: %s", received.message_id, list_name, keys)
            self.moderation.audit(session, self._verdict("discard", keys, list_name, received, post))
        elif outcome.verdict is Verdict.REJECT:
            log.info("rejected %s to %s: %s", received.message_id, list_name, keys)
            self.moderation.audit(session, self._verdict("reject", keys, list_name, received, post))
            self._refuse(session, received, post, sub, outcome.reasons[0].key)
        elif outcome.verdict is Verdict.ACCEPT and route.kind == Kind.POST:
            self.publisher.publish(session, received, list_name, self.clock())
            self.moderation.audit(
                session, AuditEntry("approve", keys, list_name, post.sender, message_id=received.message_id)
            )
        else:
            keys = {reason.key for reason in outcome.reasons}
            told = keys & {ROOM_CLOSED, PROTOCOL_NOT_ACCEPTED}  # a precise notice instead of "held"
            reasons = self._hold_reasons(outcome.reasons, post, route)
            identity = (sub.sender.name, sub.sender.country)  # read already: the notice needs no query
            self.moderation.hold(
                session, received, post, route, reasons, tell_sender=not told, identity=identity
            )
            if ROOM_CLOSED in told:  # when it will be published
                self.handlers.openings.tell_sender(
                    session, list_name, post.sender, post.subject, approved=False
                )
            if PROTOCOL_NOT_ACCEPTED in told:  # how to accept the protocol, then it goes on
                self.handlers.standing.ask_acceptance(session, list_name, post.sender, post.subject)

    def _refuse(self, session: Session, received: Received, post: Post, sub: Submission, why: str) -> None:
        """Tell a non-member (or a guest writing outside their discussion) why, without becoming a
        backscatter source: a forged From would turn us against its owner. Proven senders hear it every
        time, quoting their Subject; others at most once a day per address, quoting nothing; the null
        sender and daemons never (RFC 3834)."""
        list_name = sub.mailing_list.name
        if looks_automatic(sub) is not None:  # the null sender, a daemon: RFC 3834 §2, never answer
            log.info("%s to %s looks automatic: refused without an answer", received.message_id, list_name)
            return
        proven = is_authenticated(sub)
        since = self.clock() - timedelta(days=1)
        if not proven and count_entries(session, "notify", post.sender, since, why):
            log.info(
                "%s: %s was already told today; refused without an answer", received.message_id, post.sender
            )
            return
        context = {"subject": post.subject, "sender": post.sender, "quoted": proven}
        template = "sender_guest_new_thread.txt" if why == "guest_new_thread" else "sender_not_member.txt"
        self.notifier.send(session, template, list_name, [post.sender], context)
        self.moderation.audit(
            session, AuditEntry("notify", why, list_name, detail=post.sender, message_id=received.message_id)
        )

    @staticmethod
    def _verdict(action: str, keys: str, list_name: str, received: Received, post: Post) -> AuditEntry:
        """The posting policy's own verdict: the rules that decided it are its result."""
        return AuditEntry(action, keys, list_name, detail=post.sender, message_id=received.message_id)

    def _hold_reasons(self, reasons: tuple[Reason, ...], post: Post, route: Route) -> list[Reason]:
        shown = [r for r in reasons if not r.key.startswith(("preapproved", "moderation_off"))]
        if route.kind == Kind.PROPOSE:
            shown.insert(0, Reason("proposal", {"sender": post.sender}))
        defects = [d for d in post.defects if d not in QUIET_DEFECTS]
        if defects:
            shown.append(Reason("defects", {"defects": ", ".join(defects)}))
        return shown

    def _forward(
        self, session: Session, received: Received, post: Post, sub: Submission | None, to: list[str]
    ) -> None:
        """Mail for the owner (or postmaster) goes to people, unchanged; automatic mail does not."""
        if sub is not None and (looks_like_loop(sub) or is_automatic(sub) or looks_automatic(sub)):
            log.info("automatic mail %s to the owner address dropped", received.message_id)
            return
        if to:
            list_name = sub.mailing_list.name if sub else None
            envelope = (
                self.book.address_of(list_name, Kind.BOUNCES)
                if list_name
                else f"postmaster@{self.book.domain}"
            )
            enqueue(session, "owner_forward", envelope, to, received.raw, self.clock())
