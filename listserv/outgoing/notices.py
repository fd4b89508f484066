"""Notices (to moderators, to senders): render in the list's language, compose, put in the outbox."""

from __future__ import annotations

import email.policy
import html
import logging
from collections.abc import Callable
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.rawmime import SubjectHeader, has_long_line
from listserv.mail.templates import MailTemplates
from listserv.outgoing.outbox import enqueue

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self, settings: Settings, book: AddressBook, templates: MailTemplates, clock: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.book = book
        self.templates = templates
        self.clock = clock

    def common(self, list_name: str) -> dict[str, Any]:
        """What every template may use."""
        return {
            "site_name": self.settings.site.name,
            "list_name": list_name,
            "list_title": self.settings.lists[list_name].title,
            "list_address": self.book.address_of(list_name),
            "owner_address": self.book.address_of(list_name, Kind.OWNER),
            "request_address": self.book.address_of(list_name, Kind.REQUEST),
        }

    def send(
        self,
        session: Session,
        template: str,
        list_name: str,
        recipients: list[str],
        context: dict[str, Any],
        reply_to: str | None = None,
        attach: bytes | None = None,
        envelope: str | None = None,
    ) -> None:
        """One personal message per recipient, in the list's language."""
        language = self.settings.lists[list_name].language
        rendered = self.templates.render(template, language, **self.common(list_name), **context)
        bounces = envelope or self.book.address_of(list_name, Kind.BOUNCES)
        for recipient in recipients:
            message = self._compose(list_name, recipient, rendered.subject, rendered.body)
            if self.templates.is_right_to_left(rendered.language):
                message.add_alternative(right_to_left_html(rendered.body, rendered.language), subtype="html")
            if reply_to:
                message["Reply-To"] = reply_to
            if attach is not None:
                attach_original(message, attach)
            # Last: set_content and make_mixed move or drop Content-* headers set before them.
            message["Content-Language"] = rendered.language
            raw = message.as_bytes(policy=email.policy.SMTP)
            enqueue(session, template.removesuffix(".txt"), bounces, [recipient], raw, self.clock())

    def _compose(self, list_name: str, recipient: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        owner = self.book.address_of(list_name, Kind.OWNER)
        message["From"] = Address(self.settings.lists[list_name].title, addr_spec=owner)
        message["To"] = recipient
        message["Subject"] = SubjectHeader(subject)
        message["Date"] = format_datetime(self.clock())
        message["Message-ID"] = make_msgid(domain=self.book.domain)
        # RFC 3834: responders must not answer us, and our loop rule recognises our own mail.
        message["Auto-Submitted"] = "auto-generated"
        message["X-Loop"] = self.book.loop_marker
        message.set_content(body, charset="utf-8")
        return message


def right_to_left_html(body: str, language: str) -> str:
    """The same text, marked right to left: plain text has no direction of its own, and mail clients
    guess it per paragraph from its first strong letter, so a line that opens with an address or a
    code would be laid out left to right. An HTML alternative says it once for the whole notice."""
    return (
        f'<!DOCTYPE html><html lang="{language}" dir="rtl"><body>'
        f'<div dir="rtl" style="white-space: pre-wrap">{html.escape(body)}</div></body></html>'
    )


def attach_original(message: EmailMessage, raw: bytes) -> None:
    """Attach the held message as message/rfc822 — exactly its bytes, 8-bit and all — or, when those
    bytes cannot travel so (a line over 998 octets; message/rfc822 may not be transfer-encoded,
    RFC 2046 §5.2.1) or cannot be serialised, as a base64 file with the same bytes."""
    part = MIMEPart(policy=email.policy.SMTP)
    part["Content-Type"] = "message/rfc822"
    part["Content-Disposition"] = 'attachment; filename="original.eml"'
    try:
        if has_long_line(raw):
            raise ValueError("a line over 998 octets")
        part.set_payload([email.message_from_bytes(raw, policy=email.policy.compat32)])
        if has_long_line(part.as_bytes()):  # can this be serialised, and sent? some messages cannot
            raise ValueError("a line over 998 octets once serialised")
    except Exception as error:
        log.warning("original cannot be attached as message/rfc822 (%s); attaching it as a file", error)
        part = MIMEPart(policy=email.policy.SMTP)
        part.set_content(raw, maintype="application", subtype="octet-stream", filename="original.eml")
    message.make_mixed()
    message.attach(part)
