"""The two digest formats, built from a ``DigestIssue`` alone (pure: no database, no clock).

``build_mime_digest``: RFC 2046 ``multipart/mixed`` — first a text/plain part (the week's topic, then
the contents grouped by thread: each post's sender, time and archive URL), then a ``multipart/digest``
holding every post as ``message/rfc822``: its archived bytes unchanged (line ends made CRLF), so that
replying to a part answers the original post (``Re: <its subject>``, In-Reply-To its Message-ID) and
the reply joins its thread in the archive.

``build_plain_digest``: RFC 1153 — the preamble ending in the "Topics:" list, a line of 70 hyphens,
then each message (Date, From, Subject, Message-ID, Archived-At, blank line, its text; HTML-only mail
made text) followed by a line of 30 hyphens, then "End of … Digest, Vol …, Issue …" over a line of
asterisks. A body line that could pass for a separator is stuffed with "- " (RFC 934).

Every word comes from ``templates/mail/<lang>/digest_header.txt`` (Subject, preamble, contents) and
``digest_end.txt`` (the plain trailer). The messages are composed as bytes, like ``decorate``: the
stdlib would re-serialise the attached posts. The copy members receive is this, decorated.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from babel.dates import format_skeleton, format_time

from digests.issue import DigestIssue, DigestPost, Format, Thread, group_threads, in_reading_order
from listserv.mail.rawmime import CRLF, LINE_END, address_field, encode_transfer, has_long_line, subject_field
from listserv.mail.templates import MailTemplates, RenderedMail

HEADER_TEMPLATE = "digest_header.txt"
END_TEMPLATE = "digest_end.txt"
PREAMBLE_SEPARATOR = "-" * 70  # RFC 1153
MESSAGE_SEPARATOR = "-" * 30
LOOKS_LIKE_SEPARATOR = re.compile(r"^-{30}", re.MULTILINE)


@dataclass(frozen=True)
class ContentsEntry:
    """One post as the contents show it; ``time`` is already formatted in the list's language."""

    number: int
    subject: str
    sender_name: str
    sender: str
    time: str
    url: str


@dataclass(frozen=True)
class ContentsThread:
    subject: str
    posts: tuple[ContentsEntry, ...]


def build_mime_digest(issue: DigestIssue, templates: MailTemplates) -> bytes:
    threads = group_threads(issue.posts, issue.subject_prefix)
    mail = render_header(issue, templates, "mime", threads)
    messages = [message_part(post.raw) for post in in_reading_order(threads)]
    seed = digest_message_id(issue, "mime").encode()
    digest_fields, digest_body = multipart("digest", messages, seed + b"/digest")
    parts = [text_part(mail.body), digest_fields + CRLF + digest_body]
    fields, body = multipart("mixed", parts, seed)
    return head(issue, mail, "mime", templates) + fields + CRLF + body


def build_plain_digest(issue: DigestIssue, templates: MailTemplates) -> bytes:
    threads = group_threads(issue.posts, issue.subject_prefix)
    mail = render_header(issue, templates, "plain", threads)
    end = " ".join(templates.render_fragment(END_TEMPLATE, issue.language, **context(issue)).split())
    lines = [mail.body.rstrip("\n"), "", PREAMBLE_SEPARATOR, ""]
    for post in in_reading_order(threads):
        text = stuff(post.text).rstrip("\n")
        lines += [*plain_fields(post, templates), "", text, "", MESSAGE_SEPARATOR, ""]
    lines += [end, "*" * len(end), ""]
    return head(issue, mail, "plain", templates) + text_part("\n".join(lines), inline=False)


def digest_message_id(issue: DigestIssue, fmt: Format) -> str:
    """One per (list, period, format, key), as the issue itself: a rebuild names the same message."""
    return f"<digest.{issue.key}.{issue.period}.{fmt}.{issue.list_name}@{issue.domain}>"


def context(issue: DigestIssue) -> dict[str, Any]:
    return {
        "site_name": issue.site_name,
        "list_name": issue.list_name,
        "list_title": issue.list_title,
        "list_address": issue.list_address,
        "owner_address": issue.owner_address,
        "request_address": issue.request_address,
        "period": issue.period,
        "volume": issue.volume,
        "number": issue.number,
        "count": len(issue.posts),
        "participation": issue.participation,
    }


def render_header(
    issue: DigestIssue, templates: MailTemplates, fmt: Format, threads: list[Thread]
) -> RenderedMail:
    contents = [
        ContentsThread(
            one_line(thread.subject),
            tuple(
                ContentsEntry(
                    number,
                    one_line(post.subject),
                    one_line(post.sender_name),
                    post.sender,
                    short_time(post.date, issue.language, templates),
                    post.url,
                )
                for number, post in thread.posts
            ),
        )
        for thread in threads
    ]
    return templates.render(
        HEADER_TEMPLATE,
        issue.language,
        **context(issue),
        format=fmt,
        date=templates.date(issue.date, issue.language),
        topic_title=one_line(issue.topic_title),
        topic_body=issue.topic_body.replace("\r\n", "\n").strip("\n"),
        threads=contents,
    )


def head(issue: DigestIssue, mail: RenderedMail, fmt: Format, templates: MailTemplates) -> bytes:
    """The header block up to the body's Content-* fields. No Auto-Submitted: a digest is list mail
    (decorate adds Precedence: list and the List-* fields)."""
    local = issue.date.astimezone(templates.timezone)
    return b"".join(
        [
            address_field("From", [(issue.list_title, issue.owner_address)]),
            f"To: {issue.list_address}\r\n".encode(),
            subject_field(one_line(mail.subject)),
            f"Date: {format_datetime(local)}\r\n".encode(),
            f"Message-ID: {digest_message_id(issue, fmt)}\r\n".encode(),
            f"Content-Language: {mail.language}\r\n".encode(),
            b"MIME-Version: 1.0\r\n",
        ]
    )


def text_part(text: str, inline: bool = True) -> bytes:
    """UTF-8 text with LF line ends → Content-* fields, blank line, body (quoted-printable only when
    a line is too long for SMTP)."""
    data = text.encode("utf-8")
    transfer, body = encode_transfer(data, "7bit" if data.isascii() else "8bit")
    disposition = "Content-Disposition: inline\r\n" if inline else ""
    fields = (
        f'Content-Type: text/plain; charset="utf-8"\r\n{disposition}Content-Transfer-Encoding: {transfer}\r\n'
    )
    return fields.encode() + CRLF + body


def message_part(raw: bytes) -> bytes:
    """A post as message/rfc822: its bytes as archived (RFC 2046 §5.2.1: 8bit declared when needed).
    A post with a line over 998 octets cannot travel so (message/rfc822 is never transfer-encoded): it
    goes as a base64 ``.eml`` file with the same bytes, which mail clients open as a message."""
    data = LINE_END.sub(CRLF, raw)
    if has_long_line(data):
        encoded = base64.encodebytes(data).replace(b"\n", CRLF)
        return (
            b"Content-Type: application/octet-stream\r\n"
            b'Content-Disposition: attachment; filename="message.eml"\r\n'
            b"Content-Transfer-Encoding: base64\r\n" + CRLF + encoded
        )
    eight_bit = b"" if data.isascii() else b"Content-Transfer-Encoding: 8bit\r\n"
    return b"Content-Type: message/rfc822\r\n" + eight_bit + CRLF + data


def multipart(subtype: str, parts: list[bytes], seed: bytes) -> tuple[bytes, bytes]:
    """(Content-* fields, body) of a multipart whose boundary occurs in none of ``parts``."""
    boundary = "=_digest_" + hashlib.sha256(seed).hexdigest()[:24]
    while any(f"--{boundary}".encode() in part for part in parts):
        boundary = "=_digest_" + hashlib.sha256(boundary.encode()).hexdigest()[:24]
    delimiter = b"--" + boundary.encode()
    body = b"".join(delimiter + CRLF + part + CRLF for part in parts) + delimiter + b"--" + CRLF
    fields = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'.encode()
    if not body.isascii():  # RFC 2045 §6.4: a composite entity with 8-bit content says so
        fields += b"Content-Transfer-Encoding: 8bit\r\n"
    return fields, body


def plain_fields(post: DigestPost, templates: MailTemplates) -> list[str]:
    name = one_line(post.sender_name)
    sender = f"{name} <{post.sender}>" if name else post.sender
    fields = [
        f"Date: {format_datetime(post.date.astimezone(templates.timezone))}",
        f"From: {sender}",
        f"Subject: {one_line(post.subject)}",
        f"Message-ID: {post.message_id}",
    ]
    return fields + [f"Archived-At: <{post.url}>"] * bool(post.url)


def stuff(text: str) -> str:
    # A bare CR (a decoded body may hold one) would go out bare: relays refuse it (RFC 5321 §2.3.8).
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return LOOKS_LIKE_SEPARATOR.sub(lambda match: "- " + match.group(0), text)


def short_time(moment: datetime, language: str, templates: MailTemplates) -> str:
    """``Mon, Nov 23, 09:00`` in the list's language and the site's zone (named once, in the header)."""
    local = moment.astimezone(templates.timezone)
    day = format_skeleton("MMMEd", local, locale=language)
    return f"{day}, {format_time(local, 'short', locale=language)}"


def one_line(text: str) -> str:
    return " ".join(text.split())
