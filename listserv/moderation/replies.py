"""A moderator's reply to ``<list>-moderate[+CODE]@``: who may decide, with which code, and the answers.

Refusals are deliberate about who hears of them: an address that is not a moderator gets no answer at
all (it could be probing codes), a real moderator gets an explanation. Wrong codes count against the
sender and the list; past ``moderation.max_bad_codes_per_hour`` further attempts are refused unread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.message import Post
from listserv.mail.own_text import own_lines
from listserv.mail.templates import MailTemplates
from listserv.moderation.audit import AuditEntry, count_entries
from listserv.moderation.codes import find_held
from listserv.moderation.proposals import Proposals, translation_from
from listserv.moderation.queue import ACTION_OF, Moderation
from listserv.moderation.reply_text import Action, Command, find_code, read_reply
from listserv.moderation.rules import (
    Submission,
    fails_authenticity,
    fails_local_dkim,
    is_automatic,
    looks_automatic,
    looks_like_loop,
)
from listserv.moderation.vocabulary import command_words, standalone_words, vocabulary
from listserv.outgoing.notices import Notifier
from listserv.store.directory import email_key
from listserv.store.models import Audit, Held, Received, Route

log = logging.getLogger(__name__)
BAD_CODE_RESULTS = ("unknown_code", "expired", "not_your_list")
FAILED_REPLIES = (*BAD_CODE_RESULTS, "not_moderator", "unauthenticated")  # what the chiefs hear of daily


class ModeratorMail:
    def __init__(
        self,
        settings: Settings,
        moderation: Moderation,
        proposals: Proposals,
        notifier: Notifier,
        templates: MailTemplates,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.moderation = moderation
        self.proposals = proposals
        self.notifier = notifier
        self.templates = templates
        self.clock = clock
        self.vocabulary: dict[str, Action] = vocabulary(templates, settings.languages)
        self.standalone = standalone_words(templates, settings.languages)

    def handle(self, session: Session, received: Received, post: Post, route: Route, sub: Submission) -> None:
        list_name = route.list_name or ""
        actor = post.sender
        refusal = self._refusal(session, sub, actor, list_name)
        if refusal is not None:
            self.moderation.audit(
                session,
                AuditEntry(
                    "reply",
                    refusal,
                    list_name,
                    actor or received.mail_from,
                    "email",
                    message_id=received.message_id,
                ),
            )
            log.warning(
                "moderator reply %s to %s refused: %s (from %s)",
                received.message_id,
                list_name,
                refusal,
                actor or received.mail_from,
            )
            return
        if self._is_translation(session, received, post, route, actor):
            return
        reading = read_reply(received.raw, self.vocabulary, self.standalone)
        if not reading.understood:
            self.moderation.audit(
                session,
                AuditEntry(
                    "reply",
                    "not_understood",
                    list_name,
                    actor,
                    "email",
                    detail=reading.own_text[:500],
                    message_id=received.message_id,
                ),
            )
            self._explain(session, list_name, actor, "not_understood", own_text=reading.own_text)
            return
        fallback_code = route.detail or find_code(post.subject)
        for command in reading.commands:
            self._apply(session, received, list_name, actor, command, fallback_code)

    def _is_translation(
        self, session: Session, received: Received, post: Post, route: Route, actor: str
    ) -> bool:
        """A reply to a translation request carries a title and a body, not a command."""
        code = route.detail or find_code(post.subject)
        held = find_held(session, code) if code else None
        if held is None or held.kind != "translation" or held.state != "held":
            return False
        translation = translation_from(own_lines(received.raw))
        if translation is None:
            self._explain(session, route.list_name or "", actor, "not_understood")
            return True
        decision = self.moderation.decide(session, held, "approve", actor, "email", "translation")
        if decision.result == "decided":  # a translation approved twice is recorded once
            self.proposals.record_translation(session, held, *translation)
        return True

    def _refusal(self, session: Session, sub: Submission, actor: str, list_name: str) -> str | None:
        """Why this reply must decide nothing, before reading it; None when it may be read."""
        if looks_like_loop(sub) or is_automatic(sub) or looks_automatic(sub):
            return "automatic"  # a vacation message to the moderate address must never approve
        if not actor or not self._may_moderate(actor, list_name):
            return "not_moderator"
        if fails_authenticity(sub) is not None or fails_local_dkim(sub) is not None:
            return "unauthenticated"  # a forged moderator From: as a post from them would be held
        return None

    def _may_moderate(self, actor: str, list_name: str) -> bool:
        key = email_key(actor)
        allowed = [*self.settings.lists[list_name].moderators, *self.settings.chief_moderators]
        return key in {email_key(address) for address in allowed}

    def _bad_codes_last_hour(self, session: Session, actor: str, list_name: str) -> int:
        since = self.clock() - timedelta(hours=1)
        by_actor = (
            session.scalar(
                select(func.count())
                .select_from(Audit)
                .where(Audit.at >= since, Audit.result.in_(BAD_CODE_RESULTS), Audit.actor == actor)
            )
            or 0
        )
        on_list = (
            session.scalar(
                select(func.count())
                .select_from(Audit)
                .where(Audit.at >= since, Audit.result.in_(BAD_CODE_RESULTS), Audit.list_name == list_name)
            )
            or 0
        )
        # A list is attacked from many addresses at once: allow it a few senders' worth.
        return max(by_actor, on_list // 3)

    def _apply(
        self,
        session: Session,
        received: Received,
        list_name: str,
        actor: str,
        command: Command,
        fallback_code: str | None,
    ) -> None:
        code = command.code or fallback_code
        if code is None:
            self._explain(session, list_name, actor, "no_code")
            return
        held = find_held(session, code)
        problem = None
        if held is None:
            problem = "unknown_code"
        elif not self._may_moderate(actor, held.list_name):
            problem = "not_your_list"
        if problem is not None:
            self.moderation.audit(
                session,
                AuditEntry(
                    command.action,
                    problem,
                    list_name,
                    actor,
                    "email",
                    held.id if held else None,
                    detail=code,
                    message_id=received.message_id,
                ),
            )
            self._note_flood(session, actor, list_name)
            self._explain(session, list_name, actor, problem, code=code)
            return
        assert held is not None
        decision = self.moderation.decide(
            session, held, command.action, actor, "email", command.reason, received.message_id
        )
        if decision.result == "expired":
            self._explain(session, list_name, actor, "expired", code=code)
        elif decision.result == "already_decided":
            self._already(session, held.list_name, actor, code, decision.held)

    def _note_flood(self, session: Session, actor: str, list_name: str) -> None:
        """Wrong codes never lock a moderator out (a valid code always decides: 75 bits are not
        guessed); past the limit they are only worth a log line, and the chiefs' daily line."""
        limit = self.settings.lists[list_name].moderation.max_bad_codes_per_hour
        if self._bad_codes_last_hour(session, actor, list_name) >= limit:
            log.warning(
                "wrong reply codes from %s on %s: %d or more within the hour", actor, list_name, limit
            )

    def _explain(
        self, session: Session, list_name: str, actor: str, problem: str, code: str = "", own_text: str = ""
    ) -> None:
        """At most one explanation per address per hour: replies forged from a moderator's address
        must not turn into a flood in that moderator's inbox. The others are logged."""
        if count_entries(session, "explain", actor, self.clock() - timedelta(hours=1)):
            log.info(
                "reply problem %s from %s on %s: already explained within the hour", problem, actor, list_name
            )
            return
        self.moderation.audit(session, AuditEntry("explain", "sent", list_name, actor, "email", detail=actor))
        language = self.settings.lists[list_name].language
        self.notifier.send(
            session,
            "moderator_reply_problem.txt",
            list_name,
            [actor],
            {
                "problem": problem,
                "code": code,
                "own_text": own_text[:1000],
                "words": command_words(self.templates, language),
            },
        )

    def _already(self, session: Session, list_name: str, actor: str, code: str, held: Held) -> None:
        language = self.settings.lists[list_name].language
        decided_at = held.decided_at or self.clock()
        self.notifier.send(
            session,
            "moderator_already_decided.txt",
            list_name,
            [actor],
            {
                "code": code,
                "subject": held.subject,
                "decision": ACTION_OF[held.state],
                "decided_by": held.decided_by or "",
                "decided_at": self.templates.date(decided_at, language),
            },
        )
