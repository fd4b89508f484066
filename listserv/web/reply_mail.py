"""A reply or a new discussion written on the web, as the RFC 5322 mail its author would have sent:
From the member, To the list, In-Reply-To and References continuing the parent's. Pure."""

from __future__ import annotations

import email.policy
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid

REPLY_PREFIX = re.compile(r"^\s*re\s*:", re.I)
MAX_REFERENCES = 20  # RFC 5322 §3.6.4 lets a long chain be trimmed; keep the first and the latest


def reply_subject(parent_subject: str) -> str:
    subject = " ".join(parent_subject.split())
    return subject if REPLY_PREFIX.match(subject) else f"Re: {subject}"


def references_of(parent_raw: bytes, parent_id: str) -> list[str]:
    """The parent's References (or its In-Reply-To) followed by the parent itself."""
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(parent_raw)
    chain = re.findall(r"<[^<>\s]+>", str(headers.get("References") or headers.get("In-Reply-To") or ""))
    chain = [mid for mid in chain if mid != parent_id] + [parent_id]
    return chain if len(chain) <= MAX_REFERENCES else [chain[0], *chain[-(MAX_REFERENCES - 1) :]]


def compose_web_mail(
    *,
    author: str,
    author_name: str,
    list_address: str,
    list_title: str,
    subject: str,
    text: str,
    domain: str,
    now: datetime,
    parent: tuple[str, bytes] | None = None,  # (Message-ID, raw bytes) of the message replied to
) -> tuple[bytes, str]:
    """(raw bytes, Message-ID)."""
    message = EmailMessage()
    stamp = format_datetime(now.astimezone(UTC))
    message["Received"] = f"from web (signed-in session) by {domain} with HTTP; {stamp}"
    message["From"] = Address(author_name, addr_spec=author) if author_name else author
    message["To"] = Address(list_title, addr_spec=list_address)
    message["Subject"] = " ".join(subject.split())
    message["Date"] = stamp
    message["Message-ID"] = message_id = make_msgid(domain=domain)
    if parent is not None:
        parent_id, parent_raw = parent
        message["In-Reply-To"] = parent_id
        message["References"] = " ".join(references_of(parent_raw, parent_id))
    message.set_content(text.replace("\r\n", "\n").rstrip() + "\n", charset="utf-8")
    return message.as_bytes(policy=email.policy.SMTP), message_id
