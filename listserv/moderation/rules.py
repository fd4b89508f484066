"""The posting policy: a table of small rules, read top to bottom (after Mailman's chains).

Each rule looks at a ``Submission`` and returns a ``Reason`` (why it fired) or None. DISCARD, REJECT and
ACCEPT end the walk at the first rule that fires; HOLD rules add their reason and the walk goes on, so a
moderator sees every reason, and an authenticity failure keeps even a pre-approved sender held (ACCEPT is
ignored once a HOLD reason is recorded). The last rule always holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import authres

from listserv.config import MailingList
from listserv.mail.message import Post
from listserv.outgoing.windows import is_open, next_opening
from listserv.store.senders import Sender

AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|absence|réponse automatique"
    r"|respuesta automática|abwesenheit|vacation)\b",
    re.IGNORECASE,
)
PROTOCOL_NOT_ACCEPTED = "protocol_not_accepted"
ROOM_CLOSED = "room_closed"
DAEMON_SENDER = re.compile(r"^(mailer-daemon|postmaster|noreply|no-reply|bounces?)[@+-]", re.IGNORECASE)


class Verdict(StrEnum):
    DISCARD = "discard"
    REJECT = "reject"
    HOLD = "hold"
    ACCEPT = "accept"


@dataclass(frozen=True)
class Reason:
    """A sentence for humans, kept as a catalogue key and its parameters so each reader gets it in
    their own language (templates/mail/<lang>/reasons.yaml)."""

    key: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    post: Post
    mail_from: str  # envelope sender; '' for bounces
    mailing_list: MailingList
    sender: Sender
    list_id: str  # our List-Id value for this list, to recognise our own mail coming back
    loop_marker: str  # our X-Loop value
    raw: bytes = b""
    verify_dkim: Callable[[bytes], str | None] | None = None  # dkimpy: the verified d= domain, or None
    thread_id: int | None = None  # the archived thread it replies to; looked up for guests only
    now: datetime | None = None  # when it arrived: the room's open window (rooms[].open) is checked
    timezone: str = "UTC"  # the site's, in which a window's days are counted


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reasons: tuple[Reason, ...]


Rule = Callable[[Submission], Reason | None]


def looks_like_loop(sub: Submission) -> Reason | None:
    list_id = sub.post.header("List-Id") or ""
    if sub.list_id.lower() in list_id.lower() or sub.post.header("X-Loop") == sub.loop_marker:
        return Reason("loop")
    return None


def is_automatic(sub: Submission) -> Reason | None:
    """Only what headers prove: RFC 3834 Auto-Submitted, Precedence, responders' own marks, delivery
    reports. A discard is silent, so a subject or a sender's name never decides it (see
    ``looks_automatic``): "Vacation policy for civil servants" is a real post."""
    headers = sub.post
    auto_submitted = (headers.header("Auto-Submitted") or "no").split(";")[0].strip().lower()
    precedence = (headers.header("Precedence") or "").strip().lower()
    if auto_submitted != "no" or precedence in ("bulk", "junk", "list"):
        return Reason("automatic")
    if any(headers.header(name) for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response")):
        return Reason("automatic")
    if (headers.header("Content-Type") or "").strip().lower().startswith("multipart/report"):
        return Reason("automatic")  # a delivery or disposition report (RFC 6522)
    return None


def looks_automatic(sub: Submission) -> Reason | None:
    """Subject words, daemon-like senders and an empty envelope sender suggest a machine, but prove
    nothing: the post is held with a reason the moderator reads, never discarded."""
    if AUTO_SUBJECT.match(sub.post.subject) or is_null_sender(sub.mail_from):
        return Reason("looks_automatic")
    if DAEMON_SENDER.match(sub.sender.address) or DAEMON_SENDER.match(sub.mail_from):
        return Reason("looks_automatic")
    return None


def is_null_sender(mail_from: str) -> bool:
    """``MAIL FROM:<>`` (aiosmtpd keeps the brackets): delivery reports and other automatic mail."""
    return not mail_from.strip().strip("<>").strip()


def has_unclear_sender(sub: Submission) -> Reason | None:
    """A post must come from exactly one address: none, or several, leaves nobody to credit or answer."""
    if sub.post.from_count == 1 and sub.post.sender:
        return None
    if sub.post.from_count > 1:
        return Reason("several_senders", {"count": str(sub.post.from_count)})
    return Reason("no_sender")


def is_only_guest(sub: Submission) -> bool:
    """Invited to discussions of this list, and no member or moderator of it."""
    sender = sub.sender
    return bool(sender.guest_threads) and not (sender.is_member or sender.is_moderator or sender.is_chief)


def is_guest_new_thread(sub: Submission) -> Reason | None:
    """A guest writes only in the discussion they were invited to: anything else is refused, politely."""
    if is_only_guest(sub) and sub.thread_id not in sub.sender.guest_threads:
        return Reason("guest_new_thread", {"sender": sub.sender.address})
    return None


def is_guest_post(sub: Submission) -> Reason | None:
    """A guest's reply in their discussion: always held, whatever the list's hold policy."""
    if is_only_guest(sub) and sub.thread_id in sub.sender.guest_threads:
        return Reason("guest_post", {"sender": sub.sender.address})
    return None


def sender_not_member(sub: Submission) -> Reason | None:
    if has_unclear_sender(sub) is not None:
        return None  # held for the moderators instead: there is nobody to refuse
    if sub.sender.is_member or sub.sender.is_moderator or sub.sender.is_chief or is_only_guest(sub):
        return None
    return Reason("not_member", {"sender": sub.sender.address or "?", "list_name": sub.mailing_list.name})


def fails_authenticity(sub: Submission) -> Reason | None:
    """DMARC or DKIM failure for the From domain, as reported by the MTA we trust (RFC 8601)."""
    trusted = sub.mailing_list.moderation.trusted_authserv_id
    domain = sub.sender.address.rpartition("@")[2].lower()
    if trusted is None or not domain:
        return None
    for name, value in sub.post.headers:
        if name.lower() != "authentication-results":
            continue
        for method, result, header_domain in _auth_results(value, trusted):
            if method == "dmarc" and result == "fail" and header_domain in ("", domain):
                return Reason("dmarc_failed", {"domain": domain, "authserv_id": trusted})
            if method == "dkim" and result == "fail" and header_domain == domain:
                return Reason("dkim_failed", {"domain": domain})
    return None


def _auth_results(value: str, trusted: str) -> list[tuple[str, str, str]]:
    try:
        parsed = authres.AuthenticationResultsHeader.parse_value(value)
    except Exception:  # authres raises its own syntax errors; an unreadable header proves nothing
        return []
    if str(parsed.authserv_id).lower() != trusted.lower():
        return []  # anyone can write this header; only our MTA's counts
    found = []
    for result in parsed.results:
        domains = [p.value for p in result.properties or [] if p.name in ("d", "from")]
        found.append((result.method, result.result, (domains[0] if domains else "").lower()))
    return found


def fails_local_dkim(sub: Submission) -> Reason | None:
    """With ``moderation.verify_dkim``: a DKIM signature present but not verifiable here."""
    if not sub.mailing_list.moderation.verify_dkim or sub.verify_dkim is None:
        return None
    if not any(name.lower() == "dkim-signature" for name, _ in sub.post.headers):
        return None  # unsigned mail proves nothing either way; DMARC (above) judges the domain's policy
    if sub.verify_dkim(sub.raw):
        return None
    return Reason("dkim_failed_local", {"domain": sub.sender.address.rpartition("@")[2].lower()})


def room_is_closed(sub: Submission) -> Reason | None:
    """Outside the room's open window a post waits: released at the opening (``moderation/openings``)."""
    window = sub.mailing_list.open
    if window is None or sub.now is None or is_open(window, sub.now, sub.timezone):
        return None
    opening = next_opening(window, sub.now, sub.timezone)
    when = f"{opening:%Y-%m-%d %H:%M} ({sub.timezone})" if opening else "—"
    return Reason(ROOM_CLOSED, {"opens_at": when})


def has_not_accepted_protocol(sub: Submission) -> Reason | None:
    """With ``moderation.require_protocol``: a member's posts wait until they accept the usage protocol
    (a reply ``accept`` to the welcome, or its link); moderators are not asked to."""
    if not sub.mailing_list.moderation.require_protocol or sub.sender.protocol_accepted:
        return None
    if not sub.sender.is_member or sub.sender.is_moderator or sub.sender.is_chief:
        return None
    return Reason(PROTOCOL_NOT_ACCEPTED, {"sender": sub.sender.address})


def is_preapproved(sub: Submission) -> Reason | None:
    moderation = sub.mailing_list.moderation
    if moderation.hold == "none":
        return Reason("moderation_off")
    if moderation.preapprove_moderators and (sub.sender.is_moderator or sub.sender.is_chief):
        return Reason("preapproved_moderator")
    if moderation.hold == "non_staff" and sub.sender.is_staff:
        return Reason("preapproved_staff")
    return None


def is_unverified_privilege(sub: Submission) -> Reason | None:
    """Pre-approval is a privilege of the address, and a From header alone proves nothing: with
    ``moderation.preapprove: authenticated`` it needs DKIM aligned with the From domain, verified here
    or by the trusted MTA. The real moderator approves their own post with one reply; a forger never
    sees the code."""
    if sub.mailing_list.moderation.preapprove != "authenticated":
        return None
    privilege = is_preapproved(sub)
    if privilege is None or privilege.key == "moderation_off" or is_authenticated(sub):
        return None
    return Reason("sender_unverified", {"domain": sub.sender.address.rpartition("@")[2].lower()})


def is_authenticated(sub: Submission) -> bool:
    """The message is proven to come from its From domain: a trusted Authentication-Results with
    dmarc=pass, or dkim=pass aligned with it; else a DKIM signature verified here, aligned with it."""
    domain = sub.sender.address.rpartition("@")[2].lower()
    if not domain:
        return False
    trusted = sub.mailing_list.moderation.trusted_authserv_id
    if trusted is not None:
        for name, value in sub.post.headers:
            if name.lower() == "authentication-results":
                for method, result, header_domain in _auth_results(value, trusted):
                    if result == "pass" and method in ("dmarc", "dkim") and is_aligned(header_domain, domain):
                        return True
    signed = any(name.lower() == "dkim-signature" for name, _ in sub.post.headers)
    if not signed or sub.verify_dkim is None:
        return False
    return is_aligned(sub.verify_dkim(sub.raw) or "", domain)


def is_aligned(signing_domain: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489 §3.1.1), approximated without a public-suffix list: the same
    domain, or one a parent of the other — but never a bare top-level domain."""
    signing, sender = signing_domain.lower().strip("."), from_domain.lower().strip(".")
    if not signing or "." not in signing or "." not in sender:
        return False
    return signing == sender or sender.endswith("." + signing) or signing.endswith("." + sender)


def always(sub: Submission) -> Reason | None:
    if sub.mailing_list.moderation.hold == "none":
        return None  # reached only when a reason above holds the post: that reason alone is true
    if sub.mailing_list.moderation.hold == "non_staff":
        return Reason("non_staff_held", {"sender": sub.sender.address})
    return Reason("held_by_policy", {"list_name": sub.mailing_list.name})


POLICY: tuple[tuple[Rule, Verdict], ...] = (
    (looks_like_loop, Verdict.DISCARD),
    (is_automatic, Verdict.DISCARD),
    (is_guest_new_thread, Verdict.REJECT),
    (sender_not_member, Verdict.REJECT),
    (has_unclear_sender, Verdict.HOLD),
    (looks_automatic, Verdict.HOLD),
    (fails_authenticity, Verdict.HOLD),
    (fails_local_dkim, Verdict.HOLD),
    (is_unverified_privilege, Verdict.HOLD),
    (is_guest_post, Verdict.HOLD),  # before any ACCEPT: a held reason outranks pre-approval
    (has_not_accepted_protocol, Verdict.HOLD),
    (room_is_closed, Verdict.HOLD),
    (is_preapproved, Verdict.ACCEPT),
    (always, Verdict.HOLD),
)


def evaluate(sub: Submission, policy: tuple[tuple[Rule, Verdict], ...] = POLICY) -> Outcome:
    held: list[Reason] = []
    for rule, verdict in policy:
        reason = rule(sub)
        if reason is None:
            continue
        if verdict is Verdict.HOLD:
            held.append(reason)
        elif verdict is Verdict.ACCEPT and held:
            continue
        else:
            return Outcome(verdict, (reason,))
    return Outcome(Verdict.HOLD, tuple(held))
