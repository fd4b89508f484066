"""Announcements: one message to every list of a room at once, each in its language (the English, else
the first given, with a note where a language is missing), archived and delivered like the weekly
prompt and linked as sister threads (``X-Listserv-Sister-Threads``). ``listserv announce FILE.yaml``
and the chief moderators' form on the web (``/announce``) both come here.

The same text sent twice is sent once: its key is a hash of the room, subjects and bodies, recorded in
``job_run`` ("announcement") and in each Message-ID, ``<announce-KEY.ta-fr@domain>``."""

from __future__ import annotations

import email.policy
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import yaml
from sqlalchemy.orm import Session

from listserv.config import MailingList, Settings
from listserv.mail.rawmime import SubjectHeader
from listserv.mail.templates import FALLBACK, MailTemplates
from listserv.outgoing.publish import Publisher
from listserv.store.once import record_once
from listserv.weekly.prompt_mail import FROM_NAME, SISTERS_HEADER, prompt_sender
from listserv.weekly.topics import TopicError, TopicSpec, language_name, read_topic, text_for

TEMPLATE = "member_announcement.txt"
KEYS = ("room", "subjects", "bodies")


@dataclass(frozen=True)
class Sent:
    list_name: str
    message_id: str


def read_announcement(text: str, settings: Settings) -> TopicSpec:
    """An announcement file (room, subjects, bodies per language) → its texts; TopicError with one line
    per problem, naming the key (``subjects.fr: is empty …``)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TopicError([f"not valid YAML{where}: {getattr(error, 'problem', error)}"]) from None
    return announcement_from(raw, settings)


def announcement_from(raw: object, settings: Settings) -> TopicSpec:
    """Checks a mapping of room, subjects and bodies (from a file or the web form)."""
    if not isinstance(raw, dict):
        raise TopicError(["expected a mapping with room, subjects and bodies"])
    unknown = [f"{key}: unknown key (expected one of {', '.join(KEYS)})" for key in raw if key not in KEYS]
    as_topic = {"room": raw.get("room"), "titles": raw.get("subjects"), "bodies": raw.get("bodies")}
    try:
        spec = read_topic(yaml.safe_dump({k: v for k, v in as_topic.items() if v is not None}), settings)
    except TopicError as error:
        renamed = [p.replace("titles", "subjects").replace("title", "subject") for p in error.problems]
        raise TopicError(unknown + renamed) from None
    if unknown:
        raise TopicError(unknown)
    return spec


def announcement_key(spec: TopicSpec) -> str:
    canonical = json.dumps([spec.room, spec.titles, spec.bodies], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(eq=False)
class Announcer:
    settings: Settings
    templates: MailTemplates
    publisher: Publisher

    def message_id(self, key: str, list_name: str) -> str:
        return f"<announce-{key}.{list_name}@{self.settings.site.domain}>"

    def announce(self, session: Session, spec: TopicSpec, now: datetime) -> list[Sent]:
        """Publish to every list of the room; [] when this very announcement was already sent."""
        key = announcement_key(spec)
        if not record_once(session, "announcement", key):
            return []
        lists = [ml for ml in self.settings.lists.values() if ml.room == spec.room]
        ids = {ml.name: self.message_id(key, ml.name) for ml in lists}
        for mailing_list in lists:
            sisters = [mid for name, mid in ids.items() if name != mailing_list.name]
            raw = self.compose(spec, mailing_list, ids[mailing_list.name], sisters, now)
            self.publisher.publish_raw(session, raw, mailing_list.name, now)
        return [Sent(name, mid) for name, mid in ids.items()]

    def compose(
        self, spec: TopicSpec, mailing_list: MailingList, own: str, sisters: list[str], now: datetime
    ) -> bytes:
        language, domain = mailing_list.language, self.settings.site.domain
        subject, body, used = text_for(spec, language)
        shown = language if self.templates.has(TEMPLATE, language) else FALLBACK
        context = {
            "list_title": mailing_list.title,
            "subject": " ".join(subject.split()),
            "body": body,
            "fallback_note": used != language,
            "fallback_language": language_name(used, shown),
            "language_name": language_name(language, shown),
        }
        rendered = self.templates.render(TEMPLATE, language, **context)
        head = self.templates.render_fragment(TEMPLATE, language, **context).partition("\n\n")[0]
        names = [
            line[len(FROM_NAME) :].strip() for line in head.splitlines() if line.lower().startswith(FROM_NAME)
        ]
        list_address = f"{mailing_list.name}@{domain}"
        message = EmailMessage()
        sender = prompt_sender(mailing_list, domain)
        message["From"] = Address(names[0] if names else mailing_list.title, addr_spec=sender)
        message["To"] = Address(mailing_list.title, addr_spec=list_address)
        message["Reply-To"] = list_address
        message["Subject"] = SubjectHeader(rendered.subject or context["subject"])
        message["Date"] = format_datetime(now.astimezone(UTC))
        message["Message-ID"] = own
        if sisters:
            message.set_raw(SISTERS_HEADER, ",\n ".join(sisters))  # folded between IDs, as prompts are
        message.set_content(rendered.body, charset="utf-8")
        message["Content-Language"] = ", ".join(dict.fromkeys([rendered.language, used]))
        return message.as_bytes(policy=email.policy.SMTP)
