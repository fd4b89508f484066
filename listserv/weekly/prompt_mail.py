"""The week's opening post for one list, composed as RFC 5322 bytes. Pure: the caller owns the
transaction and the idempotence key (``SentPrompt``)."""

from __future__ import annotations

import email.policy
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from listserv.config import MailingList
from listserv.mail.rawmime import SubjectHeader
from listserv.mail.templates import FALLBACK, MailTemplates
from listserv.store.models import Topic
from listserv.weekly.topics import language_name, text_for

TOPIC_HEADER = "X-Listserv-Topic"
SISTERS_HEADER = "X-Listserv-Sister-Threads"
FROM_NAME = "from-name:"  # a header line of member_prompt.txt: the moderators' display name
PROMPT_TEMPLATE = "member_prompt.txt"


def prompt_message_id(topic_id: int, list_name: str, domain: str) -> str:
    """``<topic-12.ta-fr@forum.example.org>``: the same for every attempt, so the archive's unique key
    (list, Message-ID) turns a second attempt into a no-op."""
    return f"<topic-{topic_id}.{list_name}@{domain}>"


def prompt_sender(mailing_list: MailingList, domain: str) -> str:
    """The moderators' identity a prompt comes from: the list's first moderator, else its owner address."""
    return mailing_list.moderators[0] if mailing_list.moderators else f"{mailing_list.name}-owner@{domain}"


def compose_prompt(
    topic: Topic,
    mailing_list: MailingList,
    *,
    sender: str,
    domain: str,
    templates: MailTemplates,
    sisters: Mapping[str, str],
    now: datetime,
    site_name: str = "",
    participation: str = "",
) -> bytes:
    """The week's opening post for one list, as RFC 5322 bytes (CRLF, UTF-8 text/plain).

    From the list's moderators (``sender``, named "<list title> — moderation" in the list's language),
    to the list, Subject the topic's title; a note at the top when the list's language is missing.
    ``sisters`` maps list names of the room to their prompts' Message-IDs (this list's own is skipped).
    ``participation`` is last week's line ("42 posts from 17 member states"), "" for none.
    """
    language = mailing_list.language
    title, body, used = text_for(topic, language)
    title = " ".join(title.split())
    # Language names in the language the template will be rendered in (English when it has none).
    shown = language if templates.has(PROMPT_TEMPLATE, language) else FALLBACK
    list_address = f"{mailing_list.name}@{domain}"
    context = {
        "site_name": site_name,
        "list_name": mailing_list.name,
        "list_title": mailing_list.title,
        "list_address": list_address,
        "owner_address": f"{mailing_list.name}-owner@{domain}",
        "request_address": f"{mailing_list.name}-request@{domain}",
        "title": title,
        "body": body,
        "fallback_note": used != language,
        "fallback_language": language_name(used, shown),
        "language_name": language_name(language, shown),
        "propose_address": f"{mailing_list.name}-propose@{domain}",
        "participation": participation,
    }
    rendered = templates.render(PROMPT_TEMPLATE, language, **context)
    head = templates.render_fragment(PROMPT_TEMPLATE, language, **context).partition("\n\n")[0]
    names = [
        line[len(FROM_NAME) :].strip() for line in head.splitlines() if line.lower().startswith(FROM_NAME)
    ]
    own = prompt_message_id(topic.id, mailing_list.name, domain)

    message = EmailMessage()
    message["From"] = Address(names[0] if names else mailing_list.title, addr_spec=sender)
    message["To"] = Address(mailing_list.title, addr_spec=list_address)
    message["Reply-To"] = list_address  # "reply to this message" reaches the list in every reply_to mode
    message["Subject"] = SubjectHeader(rendered.subject or title)
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = own
    message[TOPIC_HEADER] = topic.week
    linked = [_angled(mid) for name, mid in sisters.items() if name != mailing_list.name]
    if linked := [mid for mid in linked if mid != own]:
        # Folded here, between IDs: the stdlib would move the whole list to a continuation line.
        message.set_raw(SISTERS_HEADER, _fold_list(SISTERS_HEADER, linked))
    message.set_content(rendered.body, charset="utf-8")
    # Last: set_content drops Content-* headers set before it.
    message["Content-Language"] = ", ".join(dict.fromkeys([rendered.language, used]))
    return message.as_bytes(policy=email.policy.SMTP)


def _angled(message_id: str) -> str:
    return "<" + "".join(message_id.split()).strip("<>") + ">"


def _fold_list(name: str, items: list[str], width: int = 78) -> str:
    """``a, b, c`` with a line break before an item that would pass ``width`` (RFC 5322 folding)."""
    lines = [items[0]]
    for item in items[1:]:
        first = len(lines) == 1
        if len(lines[-1]) + len(item) + 2 + (len(name) + 2 if first else 0) > width:
            lines[-1] += ","
            lines.append(" " + item)
        else:
            lines[-1] += ", " + item
    return "\n".join(lines)
