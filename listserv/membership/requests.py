"""Mail to ``<list>-request@``: help, subscribe, unsubscribe, digest, nomail/mail, language, whoami.

Every answer goes to the sender in the list's language. The list is closed, so ``subscribe`` is held
for the moderators exactly like a post (same reply codes, same ``decide()``); ``unsubscribe`` asks
for a confirmation token, single-use and expiring, sent back by a plain reply. Settings take effect
at once and are confirmed. Automatic mail is never answered.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from listserv.archive.urls import list_url, protocol_url
from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.message import Post
from listserv.mail.templates import MailTemplates
from listserv.membership.request_text import Request, first_words, read_requests, vocabulary_from
from listserv.membership.standing import RECONFIRM, Standing, protocol_link, protocol_token
from listserv.moderation.queue import Moderation
from listserv.moderation.rules import Reason, Submission, is_automatic, looks_automatic, looks_like_loop
from listserv.outgoing.notices import Notifier
from listserv.store import countries
from listserv.store.directory import find_member, subscribe
from listserv.store.models import Confirmation, Held, Member, Received, Route, Subscription
from listserv.weekly.topics import language_name

log = logging.getLogger(__name__)
CONFIRM_DAYS = 7
STATE_GIVEN = "state_given"  # the reason that carries "subscribe CL" to the moderators and the welcome
MEMBERS_ONLY = {"unsubscribe", "digest", "nomail", "mail", "language", "whoami", "erase", "accept"}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


class Requests:
    def __init__(
        self,
        settings: Settings,
        moderation: Moderation,
        notifier: Notifier,
        book: AddressBook,
        templates: MailTemplates,
        clock: Callable[[], datetime],
        standing: Standing | None = None,  # protocol acceptance and reconfirmation; None: not offered
        secret: bytes = b"",  # signs the welcome's protocol link
    ) -> None:
        self.standing = standing
        self.secret = secret
        self.settings = settings
        self.moderation = moderation  # a subscription is held like a post
        self.notifier = notifier
        self.book = book
        self.templates = templates
        self.clock = clock
        languages = ["en", *self.settings.languages]
        self.vocabulary, self.periods = vocabulary_from(
            templates.catalogue(lang, "requests.yaml") for lang in languages
        )

    def handle(self, session: Session, received: Received, post: Post, route: Route, sub: Submission) -> None:
        if looks_like_loop(sub) or is_automatic(sub) or looks_automatic(sub):
            log.info("automatic mail %s to %s-request: not answered", received.message_id, route.list_name)
            return
        address = post.sender
        if not address:
            return
        reading = read_requests(received.raw, self.vocabulary, self.periods)
        member = find_member(session, address)
        for request in reading.requests:
            self._one(session, received, post, route, member, request)
        if reading.unknown:
            self._problem(session, route.list_name or "", address, "unknown_command", list(reading.unknown))

    def _one(
        self,
        session: Session,
        received: Received,
        post: Post,
        route: Route,
        member: Member | None,
        request: Request,
    ) -> None:
        list_name = route.list_name or ""
        subscription = _subscription_of(member, list_name)
        if request.verb in MEMBERS_ONLY and subscription is None:
            self._problem(session, list_name, post.sender, "not_member")
            return
        log.info("%s from %s to %s-request (%s)", request.verb, post.sender, list_name, received.message_id)
        if request.verb == "help":
            self._send(session, "member_help.txt", list_name, post.sender)
        elif request.verb == "subscribe":
            self._subscribe(session, received, post, route, subscription, request.argument)
        elif request.verb == "unsubscribe":
            self._ask_confirmation(session, list_name, post.sender)
        elif request.verb == "confirm":
            self._confirm(session, list_name, post.sender, request.argument)
        elif request.verb == "erase":
            self._erase(session, received, post, route)
        elif request.verb == "accept" and member is not None and self.standing is not None:
            self.standing.accept_protocol(session, member, "email")
            self._send(session, "member_protocol_accepted.txt", list_name, member.email)
        elif request.verb == "whoami":
            self._whoami(session, list_name, member)
        else:
            self._change(session, list_name, member, subscription, request)

    def _subscribe(
        self,
        session: Session,
        received: Received,
        post: Post,
        route: Route,
        subscription: Subscription | None,
        state: str = "",
    ) -> None:
        list_name = route.list_name or ""
        if subscription is not None:
            self._whoami(session, list_name, subscription.member)
            return
        if state and countries.normalise(state) is None:  # "subscribe XX": say so, hold nothing
            self._problem(session, list_name, post.sender, "bad_country", [f"{state}"])
            return
        language = self.settings.lists[list_name].language
        given = (
            [Reason(STATE_GIVEN, {"country": countries.label(state, language), "code": state})]
            if state
            else []
        )
        self.moderation.hold(session, received, post, route, given)
        self._send(session, "member_subscribe_pending.txt", list_name, post.sender, sender=post.sender)

    def _erase(self, session: Session, received: Received, post: Post, route: Route) -> None:
        """Erasure cannot be undone: held for the chief moderators, who confirm by reply code."""
        self.moderation.hold(session, received, post, route, [], kind="erasure")
        self._send(
            session, "member_erasure_pending.txt", route.list_name or "", post.sender, sender=post.sender
        )

    def _ask_confirmation(self, session: Session, list_name: str, address: str) -> None:
        token = secrets.token_urlsafe(18)
        now = self.clock()
        session.add(
            Confirmation(
                token_hash=token_hash(token),
                list_name=list_name,
                address=address.lower(),
                action="unsubscribe",
                created_at=now,
                expires_at=now + timedelta(days=CONFIRM_DAYS),
            )
        )
        language = self.settings.lists[list_name].language
        request_address = self.book.address_of(list_name, Kind.REQUEST)
        self._send(  # a plain reply must reach -request, not the owner address notices come from
            session,
            "member_unsubscribe_confirm.txt",
            list_name,
            address,
            reply_to=request_address,
            token=token,
            confirm_address=request_address,
            expires_at=self.templates.date(now + timedelta(days=CONFIRM_DAYS), language),
        )

    def _confirm(self, session: Session, list_name: str, address: str, token: str) -> None:
        now = self.clock()
        used = session.execute(  # single use, also when two confirmations race
            update(Confirmation)
            .where(
                Confirmation.token_hash == token_hash(token),
                Confirmation.list_name == list_name,
                Confirmation.used_at.is_(None),
                Confirmation.expires_at > now,
            )
            .values(used_at=now)
            .returning(Confirmation.address, Confirmation.action)
        ).first()
        if used is None:
            self._problem(session, list_name, address, "bad_token")
            return
        member = find_member(session, used.address)
        if used.action == RECONFIRM and member is not None and self.standing is not None:
            self.standing.renew(session, member, "email")
            self._send(session, "member_reconfirmed.txt", list_name, member.email)
            return
        subscription = _subscription_of(member, list_name)
        if member is not None and subscription is not None:
            member.subscriptions.remove(subscription)
        self._send(session, "member_unsubscribed.txt", list_name, used.address)

    def _change(
        self,
        session: Session,
        list_name: str,
        member: Member | None,
        subscription: Subscription | None,
        request: Request,
    ) -> None:
        assert member is not None and subscription is not None
        setting, value = request.verb, request.argument
        if setting == "digest":
            subscription.delivery = "each" if value == "off" else "digest"
            subscription.digest_period = value if value in ("daily", "weekly") else subscription.digest_period
        elif setting == "nomail":
            subscription.delivery = "none"
        elif setting == "mail":  # also the way back after a bounce suspension (not a lapsed reconfirmation)
            subscription.delivery = "each" if subscription.delivery == "none" else subscription.delivery
            if subscription.disabled_reason is None:
                subscription.disabled_at, subscription.bounce_score, subscription.probe_sent_at = (
                    None,
                    0.0,
                    None,
                )
        elif value in self.settings.languages:
            member.language = value
        else:
            self._problem(session, list_name, member.email, "bad_argument", [f"{setting} {value}"])
            return
        self._send(
            session, "member_settings_changed.txt", list_name, member.email, setting=setting, value=value
        )

    def _whoami(self, session: Session, list_name: str, member: Member | None) -> None:
        assert member is not None
        self._send(
            session,
            "member_whoami.txt",
            list_name,
            member.email,
            email=member.email,
            name=member.name,
            country=countries.label(member.country, self.settings.lists[list_name].language),
            language=member.language or "",
            subscriptions=[
                {
                    "list_name": s.mailing_list.name,
                    "delivery": s.delivery,
                    "digest_period": s.digest_period,
                    "disabled": s.disabled_at is not None,
                }
                for s in member.subscriptions
            ],
        )

    def welcome(self, session: Session, held: Held, reason: str) -> None:
        """An approved subscription: the member is subscribed and welcomed."""
        given = [r for r in held.reasons or [] if r.get("key") == STATE_GIVEN]
        state = str((given[0].get("params") or {}).get("code", "")) if given else ""
        subscribe(session, held.sender, held.sender_name, held.list_name, countries.normalise(state) or "")
        self.send_welcome(session, held.list_name, held.sender, held.sender_name)

    def send_welcome(self, session: Session, list_name: str, address: str, name: str) -> None:
        """To a new member (imported, or a subscription approved): how the forum works, in its language."""
        language = self.settings.lists[list_name].language
        base = self.settings.site.base_url
        context = {
            "name": name,
            "protocol_url": protocol_url(base, language),
            "archive_url": list_url(base, list_name),
            "accept_url": "",
            **request_words(self.templates, language),
        }
        reply_to = None
        member = find_member(session, address)
        required = self.settings.lists[list_name].moderation.require_protocol
        if required and member is not None and member.protocol_accepted_at is None:
            context["accept_url"] = protocol_link(base, protocol_token(self.secret, member.id))
            reply_to = self.book.address_of(list_name, Kind.REQUEST)  # a reply "accept" reaches -request
        self.notifier.send(session, "member_welcome.txt", list_name, [address], context, reply_to=reply_to)

    def refuse(self, session: Session, held: Held, reason: str) -> None:
        """A refused subscription: the requester learns why."""
        self.notifier.send(
            session, "member_subscribe_refused.txt", held.list_name, [held.sender], {"reason": reason}
        )

    def _problem(
        self, session: Session, list_name: str, address: str, problem: str, lines: list[str] | None = None
    ) -> None:
        self._send(
            session, "member_request_problem.txt", list_name, address, problem=problem, lines=lines or []
        )

    def _send(
        self,
        session: Session,
        template: str,
        list_name: str,
        address: str,
        reply_to: str | None = None,
        **context: Any,
    ) -> None:
        language = self.settings.lists[list_name].language
        words = request_words(self.templates, language) | site_languages(self.settings.languages, language)
        self.notifier.send(session, template, list_name, [address], words | context, reply_to=reply_to)


def request_words(templates: MailTemplates, language: str) -> dict[str, Any]:
    """The -request command words a template shows, in ``language``."""
    words, periods = first_words(templates.catalogue(language, "requests.yaml"))
    return {"words": words, "periods": periods}


def site_languages(codes: list[str], language: str) -> dict[str, Any]:
    """The configured languages as the help names them — codes with names in ``language`` (Babel),
    never a list written into a template — and one to give as an example (another than the list's)."""
    others = [code for code in codes if code != language]
    return {
        "languages": [{"code": code, "name": language_name(code, language)} for code in codes],
        "example_language": (others or [language])[0],
    }


def _subscription_of(member: Member | None, list_name: str) -> Subscription | None:
    if member is None:
        return None
    return next((s for s in member.subscriptions if s.mailing_list.name == list_name), None)
