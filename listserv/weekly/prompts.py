"""The weekly topic: the Monday prompt to every list of a room, the translation check three days
before, the moderators' weekly summary. Each function is idempotent by its own records
(``sent_prompt``, ``topic.flagged_at``, ``job_run``), so the scheduler may call it every minute, after
a restart, or from a second process, and nothing is sent twice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from listserv.config import MailingList, Settings
from listserv.mail.addresses import AddressBook
from listserv.mail.templates import MailTemplates
from listserv.outgoing.notices import Notifier
from listserv.outgoing.publish import Publisher
from listserv.store.models import SentPrompt, Topic
from listserv.store.once import record_once
from listserv.weekly.calendar import iso_week, prompt_time
from listserv.weekly.participation import participation_line
from listserv.weekly.prompt_mail import compose_prompt, prompt_message_id, prompt_sender
from listserv.weekly.summary import weekly_summary
from listserv.weekly.topics import missing_languages, text_for

log = logging.getLogger(__name__)
FLAG_DAYS_BEFORE = 3


@dataclass(eq=False)
class Weekly:
    settings: Settings
    notifier: Notifier
    book: AddressBook
    templates: MailTemplates
    publisher: Publisher

    def prompt_due_at(self, week: str) -> datetime:
        when = self.settings.schedule.prompt
        return prompt_time(week, when.day, when.time, self.settings.site.timezone)

    def send_prompts(self, session: Session, now: datetime) -> int:
        """This week's topic to each list of its room, once; a prompt missed by more than the grace
        period is skipped and the moderators told (once)."""
        week = iso_week(now, self.settings.site.timezone)
        due = self.prompt_due_at(week)
        if now < due:
            return 0
        sent = 0
        for topic in session.scalars(select(Topic).where(Topic.week == week)):
            lists = [ml for ml in self.settings.lists.values() if ml.room == topic.room]
            done = set(session.scalars(select(SentPrompt.list_name).where(SentPrompt.topic_id == topic.id)))
            waiting = [ml for ml in lists if ml.name not in done]
            if not waiting:
                continue
            if now - due > timedelta(hours=self.settings.schedule.prompt_grace_hours):
                sent += self._skipped(session, topic, waiting, now - due)
                continue
            sisters = {ml.name: self._prompt_id(topic, ml.name) for ml in lists}
            for mailing_list in waiting:
                sent += self._send_prompt(session, topic, mailing_list, sisters, now)
        return sent

    def _prompt_id(self, topic: Topic, list_name: str) -> str:
        return prompt_message_id(topic.id, list_name, self.book.domain)

    def _send_prompt(
        self,
        session: Session,
        topic: Topic,
        mailing_list: MailingList,
        sisters: dict[str, str],
        now: datetime,
    ) -> int:
        name = mailing_list.name
        sender = prompt_sender(mailing_list, self.book.domain)
        others = {list_name: mid for list_name, mid in sisters.items() if list_name != name}
        raw = compose_prompt(
            topic,
            mailing_list,
            sender=sender,
            domain=self.book.domain,
            templates=self.templates,
            sisters=others,
            now=now,
            participation=participation_line(session, self.templates, name, mailing_list.language, now),
        )
        try:  # the key first: a process losing the race to another sends nothing
            with session.begin_nested():
                session.add(
                    SentPrompt(topic_id=topic.id, list_name=name, message_id=sisters[name], sent_at=now)
                )
                session.flush()
        except IntegrityError:
            return 0
        self.publisher.publish_raw(session, raw, name, now)
        log.info("weekly prompt %s (%s) sent to %s", topic.week, sisters[name], name)
        return 1

    def _skipped(self, session: Session, topic: Topic, waiting: list[MailingList], late: timedelta) -> int:
        if not record_once(session, "prompt_skipped", f"{topic.id}"):
            return 0
        for mailing_list in waiting:
            name = mailing_list.name
            title, _, _ = text_for(topic, mailing_list.language)
            self.notifier.send(
                session,
                "moderator_prompt_skipped.txt",
                name,
                self.settings.moderators_of(name),
                {"week": topic.week, "title": title, "hours": int(late.total_seconds() // 3600)},
            )
        log.warning("weekly prompt %s skipped: %s late", topic.week, late)
        return len(waiting)

    def flag_missing_translations(self, session: Session, now: datetime) -> int:
        """Three days before its week, a topic missing a language is flagged to those lists' moderators."""
        soon = iso_week(now + timedelta(days=FLAG_DAYS_BEFORE), self.settings.site.timezone)
        flagged = 0
        for topic in session.scalars(select(Topic).where(Topic.week == soon, Topic.flagged_at.is_(None))):
            room_lists = [ml for ml in self.settings.lists.values() if ml.room == topic.room]
            missing = missing_languages(topic, [ml.language for ml in room_lists])
            for mailing_list in (ml for ml in room_lists if ml.language in missing):
                title, _, _ = text_for(topic, mailing_list.language)
                self.notifier.send(
                    session,
                    "moderator_translation_missing.txt",
                    mailing_list.name,
                    self.settings.moderators_of(mailing_list.name),
                    {"week": topic.week, "title": title, "missing": missing},
                )
                flagged += 1
            topic.flagged_at = now
        return flagged

    def send_summaries(self, session: Session, now: datetime) -> int:
        when = self.settings.schedule.summary
        week = iso_week(now, self.settings.site.timezone)
        if now < prompt_time(week, when.day, when.time, self.settings.site.timezone):
            return 0
        if not record_once(session, "weekly_summary", week):
            return 0
        for name, mailing_list in self.settings.lists.items():
            summary = weekly_summary(session, name, mailing_list.room, now, self.settings.site.timezone)
            self.notifier.send(
                session, "moderator_weekly_summary.txt", name, self.settings.moderators_of(name), summary
            )
        return len(self.settings.lists)
