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
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.addresses import AddressBook, Kind
from listserv.mail.rawmime import LINE_END, SubjectHeader, has_long_line, subject_field
from listserv.mail.templates import MailTemplates, RenderedMail
from listserv.outgoing import notice_bytes
from listserv.outgoing.outbox import enqueue_all

log = logging.getLogger(__name__)
Notice = tuple[str, str, list[str], bytes]  # (purpose, envelope sender, recipients, bytes): an outbox row


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
    ) -> list[bytes]:
        """One personal message per recipient, in the list's language; the bytes queued. All are
        built before any is queued: a notice that cannot be built leaves the session untouched, so a
        caller can send a simpler one instead without a savepoint around this."""
        notices = self.compose(template, list_name, recipients, context, reply_to, attach, envelope)
        self.queue(session, notices)
        return [raw for *_, raw in notices]

    def compose(
        self,
        template: str,
        list_name: str,
        recipients: list[str],
        context: dict[str, Any],
        reply_to: str | None = None,
        attach: bytes | None = None,
        envelope: str | None = None,
    ) -> list[Notice]:
        """``send`` without the queueing: the notices, for ``queue`` to put in the outbox with others."""
        language = self.settings.lists[list_name].language
        rendered = self.templates.render(template, language, **self.common(list_name), **context)
        bounces = envelope or self.book.address_of(list_name, Kind.BOUNCES)
        notices = []
        for recipient in recipients:
            raw = self._build(list_name, recipient, rendered, reply_to, attach, inline=True)
            if raw is None:  # the original cannot travel as message/rfc822: as a file, same bytes
                raw = self._build(list_name, recipient, rendered, reply_to, attach, inline=False)
                assert raw is not None  # a file attachment is not checked: it always builds
            notices.append((template.removesuffix(".txt"), bounces, [recipient], raw))
        return notices

    def queue(self, session: Session, notices: list[Notice]) -> None:
        """Put composed notices in the outbox, in the session's transaction, in one statement."""
        enqueue_all(session, notices, self.clock())

    def _build(
        self,
        list_name: str,
        recipient: str,
        rendered: RenderedMail,
        reply_to: str | None,
        attach: bytes | None,
        inline: bool,
    ) -> bytes | None:
        """The notice's bytes; None when ``attach`` was to go inline and the result cannot be sent so
        (checked on the whole notice: one serialisation instead of two). The usual shapes are written
        as bytes (``notice_bytes``); the others go through the email package, which gives the same."""
        fields = self._fields(list_name, recipient, rendered.subject)
        if inline and not self.templates.is_right_to_left(rendered.language):
            raw = self._write(fields, rendered, reply_to, attach)
            if raw is not None:
                return raw
        return self._email_package(fields, rendered, reply_to, attach, inline)

    def _email_package(
        self,
        fields: list[tuple[str, Any]],
        rendered: RenderedMail,
        reply_to: str | None,
        attach: bytes | None,
        inline: bool,
    ) -> bytes | None:
        """The notice built with ``EmailMessage``: every shape, the right-to-left one included."""
        message = EmailMessage()
        for name, value in fields:
            message[name] = value
        message.set_content(rendered.body, charset="utf-8")
        if self.templates.is_right_to_left(rendered.language):
            message.add_alternative(right_to_left_html(rendered.body, rendered.language), subtype="html")
        if reply_to:
            message["Reply-To"] = reply_to
        if attach is not None:
            inline = attach_original(message, attach, inline)
        # Last: set_content and make_mixed move or drop Content-* headers set before them.
        message["Content-Language"] = rendered.language
        if attach is None or not inline:
            return message.as_bytes(policy=email.policy.SMTP)
        try:
            raw = message.as_bytes(policy=email.policy.SMTP)
            if has_long_line(raw):
                raise ValueError("a line over 998 octets once serialised")
        except Exception as error:
            log.warning("original cannot be attached as message/rfc822 (%s); attaching it as a file", error)
            return None
        return raw

    def _fields(self, list_name: str, recipient: str, subject: str) -> list[tuple[str, Any]]:
        owner = self.book.address_of(list_name, Kind.OWNER)
        return [
            ("From", _from_header(self.settings.lists[list_name].title, owner)),
            ("To", _header("To", recipient)),
            ("Subject", SubjectHeader(subject)),
            ("Date", _plain("Date", format_datetime(self.clock()))),
            ("Message-ID", _plain("Message-ID", make_msgid(domain=self.book.domain))),
            # RFC 3834: responders must not answer us, and our loop rule recognises our own mail.
            ("Auto-Submitted", _header("Auto-Submitted", "auto-generated")),
            ("X-Loop", _header("X-Loop", self.book.loop_marker)),
        ]

    @staticmethod
    def _write(
        fields: list[tuple[str, Any]], rendered: RenderedMail, reply_to: str | None, attach: bytes | None
    ) -> bytes | None:
        """The notice written as bytes (``notice_bytes``), or None for a shape it does not write."""
        original = None
        if attach is not None:
            crlf = LINE_END.sub(b"\r\n", attach)
            original = notice_bytes.single_part_original(crlf) or notice_bytes.generated_original(crlf)
            if original is None:
                return None
        head = b"".join(_folded(name, value) for name, value in fields)
        reply = b""
        if reply_to:
            line = f"Reply-To: {reply_to}"
            if not (notice_bytes.SIMPLE_ADDRESS.fullmatch(reply_to) and len(line) <= 78):
                return None
            reply = line.encode("ascii") + b"\r\n"
        return notice_bytes.compose(head, rendered.body, rendered.language, reply, original)


def _folded(name: str, value: Any) -> bytes:
    """A header line as ``policy.SMTP`` writes it."""
    if isinstance(value, Precompiled):
        return value.folded.encode("utf-8")
    if isinstance(value, SubjectHeader):
        return subject_field(str(value))
    return email.policy.default.header_factory(name, value).fold(policy=email.policy.SMTP).encode("utf-8")


class Precompiled(str):
    """A header folded once and reused: the policy hands a value that has a ``name`` to its own
    ``fold`` (as ``SubjectHeader`` does), so a notice's fixed headers — From, To, X-Loop… — are not
    parsed and refolded by the email package for every notice. Folded for ``policy.SMTP``, the one
    notices are written with; any other policy gets the email package's own folding."""

    name: str
    folded: str

    def __new__(cls, name: str, value: str, folded: str) -> Precompiled:
        header = super().__new__(cls, value)
        header.name = name
        header.folded = folded
        return header

    def fold(self, *, policy: email.policy.Policy) -> str:
        if policy is email.policy.SMTP:
            return self.folded
        return email.policy.default.header_factory(self.name, str(self)).fold(policy=policy)


@lru_cache(maxsize=4096)
def _header(name: str, value: str) -> Precompiled:
    return _precompile(email.policy.default.header_factory(name, value))


@lru_cache(maxsize=256)
def _from_header(title: str, owner: str) -> Precompiled:
    return _precompile(email.policy.default.header_factory("From", Address(title, addr_spec=owner)))


def _precompile(header: Any) -> Precompiled:
    return Precompiled(header.name, str(header), header.fold(policy=email.policy.SMTP))


def _plain(name: str, value: str) -> Precompiled | str:
    """A short ASCII value (a Date, a Message-ID we made) folds to itself: written as is."""
    line = f"{name}: {value}"
    if value.isascii() and value.isprintable() and len(line) <= 78:
        return Precompiled(name, value, line + "\r\n")
    return value


def right_to_left_html(body: str, language: str) -> str:
    """The same text, marked right to left: plain text has no direction of its own, and mail clients
    guess it per paragraph from its first strong letter, so a line that opens with an address or a
    code would be laid out left to right. An HTML alternative says it once for the whole notice."""
    return (
        f'<!DOCTYPE html><html lang="{language}" dir="rtl"><body>'
        f'<div dir="rtl" style="white-space: pre-wrap">{html.escape(body)}</div></body></html>'
    )


def attach_original(message: EmailMessage, raw: bytes, inline: bool = True) -> bool:
    """Attach the held message as message/rfc822 — exactly its bytes, 8-bit and all — or, when those
    bytes cannot travel so (a line over 998 octets; message/rfc822 may not be transfer-encoded,
    RFC 2046 §5.2.1) or ``inline`` is False, as a base64 file with the same bytes. Whether the
    message/rfc822 form can be serialised and sent is the caller's check, on the whole notice.
    Returns whether it went inline."""
    # A bare CR or LF cannot travel in SMTP (RFC 5321 §2.3.8; strict relays refuse the whole notice):
    # message/rfc822 is text, so its lines end in CRLF like the notice's own.
    raw = LINE_END.sub(b"\r\n", raw)
    part = MIMEPart(policy=email.policy.SMTP)
    part["Content-Type"] = "message/rfc822"
    part["Content-Disposition"] = 'attachment; filename="original.eml"'
    try:
        if not inline:
            raise ValueError("not sendable as message/rfc822")
        if has_long_line(raw):
            raise ValueError("a line over 998 octets")
        part.set_payload([email.message_from_bytes(raw, policy=email.policy.compat32)])
    except Exception as error:
        if inline:
            log.warning("original cannot be attached as message/rfc822 (%s); attaching it as a file", error)
        part = MIMEPart(policy=email.policy.SMTP)
        part.set_content(raw, maintype="application", subtype="octet-stream", filename="original.eml")
        inline = False
    message.make_mixed()
    message.attach(part)
    return inline
