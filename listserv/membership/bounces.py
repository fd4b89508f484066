"""Delivery reports to ``<list>-bounces[+TOKEN]@``: who failed, a score per subscription, and
suspension only when a probe proves the address dead.

A report to a personal copy's VERP envelope (``ta-en-bounces+TOKEN@``, ``outgoing/personal.py``) counts
for the member its token names, even when no parser can read it (soft only if it says temporary).

A hard failure (5xx, RFC 3464 ``failed``) scores 1.0, a soft one (``delayed``, 4xx) 0.5 at most once a
day; a score older than ``STALE_DAYS`` starts again from zero. At ``delivery.bounce_threshold`` a probe
goes out with a VERP envelope (``ta-en-bounces+p<sig>-user=example.org@``): if that probe bounces,
delivery is suspended and the member and the list's moderators are told; if not, the score decays.
DSN parsing is flufl.bounce's (RFC 3464 and the common non-standard formats). A report nobody can
read goes to the list's moderators, never to the list.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.outgoing.notices import Notifier
from listserv.outgoing.outbox import enqueue
from listserv.outgoing.personal import MemberTokens
from listserv.store import countries
from listserv.store.directory import email_key
from listserv.store.models import ListRow, Member, Received, Route, Subscription

log = logging.getLogger(__name__)
HARD, SOFT = 1.0, 0.5
STALE_DAYS = 7
PROBE_PREFIX = "p"


@dataclass(frozen=True)
class BounceReport:
    permanent: frozenset[str]
    temporary: frozenset[str]


def read_bounce(raw: bytes) -> BounceReport:
    # Late: flufl.bounce's thirty-odd detector modules wait for the first bounce, not in an idle serve.
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(email.message_from_bytes(raw, policy=email.policy.compat32))
    except Exception:  # flufl.bounce's detectors raise on some malformed reports: then nobody is named
        return BounceReport(frozenset(), frozenset())
    return BounceReport(_decoded(permanent), _decoded(temporary) - _decoded(permanent))


def _decoded(addresses: frozenset[bytes]) -> frozenset[str]:
    return frozenset(a.decode("ascii", "replace").strip("<>").lower() for a in addresses if b"@" in a)


@dataclass(eq=False)
class Bounces:
    settings: Settings
    notifier: Notifier
    book: AddressBook
    secret: bytes
    tokens: MemberTokens
    clock: Callable[[], datetime]

    def probe_token(self, list_name: str, address: str) -> str:
        signature = hmac.new(self.secret, f"probe:{list_name}:{address.lower()}".encode(), hashlib.sha256)
        return f"{PROBE_PREFIX}{signature.hexdigest()[:12]}-{address.lower().replace('@', '=')}"

    def probed_address(self, list_name: str, token: str) -> str | None:
        """The member a probe's VERP token names, if the token is ours."""
        _, _, encoded = token.partition("-")
        address = encoded.replace("=", "@")
        if "@" in address and hmac.compare_digest(token.lower(), self.probe_token(list_name, address)):
            return address
        return None

    def handle(self, session: Session, received: Received, route: Route) -> None:
        list_name = route.list_name or ""
        now = self.clock()
        probed = self.probed_address(list_name, route.detail) if route.detail else None
        if probed is not None:
            self._probe_failed(session, list_name, probed, now)
            return
        report = read_bounce(received.raw)
        if (member := self._verp_member(session, list_name, route.detail)) is not None:
            # The envelope names the member: their failure, whatever the report says or fails to say.
            weight = SOFT if report.temporary and not report.permanent else HARD
            log.info("bounce %s to the VERP address of %s on %s", received.message_id, member, list_name)
            self.record(session, list_name, member, weight, now)
            return
        if not report.permanent and not report.temporary:
            log.info(
                "unrecognised delivery report %s for %s: to the moderators", received.message_id, list_name
            )
            enqueue(
                session,
                "bounce_unrecognised",
                self.book.address_of(list_name, Kind.BOUNCES),
                self.settings.moderators_of(list_name),
                received.raw,
                now,
            )
            return
        for address in report.permanent:
            self.record(session, list_name, address, HARD, now)
        for address in report.temporary:
            self.record(session, list_name, address, SOFT, now)

    def _verp_member(self, session: Session, list_name: str, detail: str | None) -> str | None:
        """The address of the member a personal copy's envelope (``-bounces+TOKEN@``) names, when
        the token is ours and was made for this list."""
        named = self.tokens.read(detail) if detail else None
        if named is None:
            return None
        row = session.get(ListRow, named.list_id)
        member = session.get(Member, named.member_id)
        if row is None or row.name != list_name or member is None:
            return None
        return member.email

    def record(self, session: Session, list_name: str, address: str, weight: float, now: datetime) -> None:
        """Score one failure; at the threshold, send a probe (once)."""
        subscription = _subscription(session, list_name, address)
        if subscription is None or subscription.disabled_at is not None:
            return
        last = subscription.last_bounce_at
        if last is not None and now - last > timedelta(days=STALE_DAYS):
            subscription.bounce_score = 0.0  # the address recovered (and any probe went through)
            subscription.probe_sent_at = None
        if weight == SOFT and last is not None and now - last < timedelta(days=1):
            return  # soft failures count once a day
        subscription.bounce_score += weight
        subscription.last_bounce_at = now
        log.info("bounce for %s on %s: score %.1f", address, list_name, subscription.bounce_score)
        threshold = self.settings.lists[list_name].delivery.bounce_threshold
        if subscription.bounce_score >= threshold and subscription.probe_sent_at is None:
            self._send_probe(session, list_name, address, now)
            subscription.probe_sent_at = now

    def _send_probe(self, session: Session, list_name: str, address: str, now: datetime) -> None:
        envelope = self.book.address_of(list_name, Kind.BOUNCES, self.probe_token(list_name, address))
        self.notifier.send(
            session, "member_bounce_probe.txt", list_name, [address], {"address": address}, envelope=envelope
        )

    def _probe_failed(self, session: Session, list_name: str, address: str, now: datetime) -> None:
        subscription = _subscription(session, list_name, address)
        if subscription is None or subscription.disabled_at is not None:
            return
        subscription.disabled_at = now
        member = session.get(Member, subscription.member_id)
        log.warning("delivery to %s on %s suspended: the probe bounced", address, list_name)
        self.notifier.send(
            session,
            "moderator_bounce_disabled.txt",
            list_name,
            self.settings.moderators_of(list_name),
            {
                "address": address,
                "name": member.name if member else "",
                "country": countries.label(member.country, self.settings.lists[list_name].language)
                if member
                else "",
                "score": f"{subscription.bounce_score:.1f}",
                "last_error": "",
            },
        )


def _subscription(session: Session, list_name: str, address: str) -> Subscription | None:
    return session.scalars(
        select(Subscription)
        .join(Member, Member.id == Subscription.member_id)
        .join(ListRow, ListRow.id == Subscription.list_id)
        .where(ListRow.name == list_name, Member.email_key == email_key(address))
    ).first()
