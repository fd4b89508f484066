"""Raw bytes → a typed ``Post``: the one place that knows MIME quirks.

Reading uses the stdlib's ``compat32`` policy, not ``policy.default``: it is ~10× faster and never raises
on malformed structure (``policy.default`` raises ``KeyError`` on a multipart without a boundary, and
some header classes raise on bad input). Headers are decoded here, defensively, one at a time. Nothing in
this module raises on bad mail: what is wrong becomes a ``defects`` entry that moderators can read.
"""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import Message

from listserv.mail.addresses import parse_mailboxes
from listserv.mail.text import clean_text, decode_bytes, decode_header, filename, parse_date, payload

MESSAGE_ID = re.compile(rb"^message-id[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
MSGID_TOKEN = re.compile(r"<[^<>\s\x00-\x1f\x7f]+>")  # no controls: a NUL fails PostgreSQL's text
ID_JUNK = re.compile(r"[\s\x00-\x1f\x7f]+")  # never part of an ID written without <>: folds, NUL, tabs
HEADER_END = re.compile(rb"\r?\n\r?\n")
MAX_ID_LENGTH = 250  # indexed columns must stay well below PostgreSQL's B-tree row limit
MAX_TEXT_CHARS = 200_000


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Post:
    message_id: str
    sender: str  # normalised address from From, '' when there is none
    sender_name: str  # decoded, on one line, without control characters
    from_count: int  # addresses in the first From header; a post must have exactly one
    subject: str
    date: datetime | None
    language: str | None  # Content-Language, when the sender's client states it
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str  # the first text part, decoded (HTML-only mail: the HTML source)
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]  # every header, decoded, in order (rules read these)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def header_block(raw: bytes) -> bytes:
    match = HEADER_END.search(raw)
    return raw[: match.start() + 2] if match else raw


def find_message_id(raw: bytes) -> str | None:
    """The Message-ID from the header block alone: cheap enough for the SMTP DATA path."""
    match = MESSAGE_ID.search(header_block(raw))
    if match is None:
        return None
    value = match.group(1).decode("ascii", "replace")
    token = MSGID_TOKEN.search(value)
    # Without <...>, the value as written, minus white space and controls: the ID goes into References
    # and In-Reply-To fields and URLs, where a tab, NUL or line break would corrupt or inject.
    found = token.group(0) if token else ID_JUNK.sub("", value)
    return _bounded_id(found) if found else None


def ensure_message_id(raw: bytes, domain: str) -> tuple[bytes, str]:
    """Return the message, given a Message-ID first when it has none, and that ID."""
    found = find_message_id(raw)
    if found:
        return raw, found
    new_id = f"<{uuid.uuid4().hex}@{domain}>"
    newline = b"\r\n" if b"\r\n" in raw[:1000] or not raw else b"\n"
    return b"Message-ID: " + new_id.encode() + newline + raw, new_id


def _bounded_id(message_id: str) -> str:
    if len(message_id) <= MAX_ID_LENGTH:
        return message_id
    return f"<{uuid.uuid5(uuid.NAMESPACE_URL, message_id).hex}@long-id.invalid>"


def parse_post(raw: bytes) -> Post:
    """Never raises: every oddity becomes a defect."""
    defects: list[str] = []
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    defects += [type(defect).__name__ for defect in message.defects]
    raw_items = [(str(key), value) for key, value in message.raw_items()]
    headers = tuple((key, decode_header(value, defects)) for key, value in raw_items)
    post_headers = {key.lower(): value for key, value in reversed(headers)}  # first occurrence wins
    # Addresses from the header as written; only then are display names decoded (RFC 2047 §5).
    raw_from = next((str(value) for key, value in raw_items if key.lower() == "from"), "")
    senders = parse_mailboxes(raw_from)
    if not senders:
        defects.append("NoValidFromAddress")
    text, attachments = _read_body(message, defects)
    return Post(
        message_id=find_message_id(raw) or "",
        sender=senders[0][1] if senders else "",
        sender_name=clean_text(decode_header(senders[0][0], defects)) if senders else "",
        from_count=len(senders),
        subject=post_headers.get("subject", ""),
        date=parse_date(post_headers.get("date"), defects),
        language=(post_headers.get("content-language") or "").split(",")[0].strip().lower() or None,
        in_reply_to=first_id(post_headers.get("in-reply-to")),
        references=tuple(MSGID_TOKEN.findall(post_headers.get("references", "")))[-100:],
        text=text[:MAX_TEXT_CHARS],
        attachments=tuple(attachments),
        defects=tuple(dict.fromkeys(defects)),
        headers=headers,
    )


def body_text_of(raw: bytes) -> str:
    """``parse_post(raw).text`` without reading the headers (address parsing is most of its cost)."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    return _read_body(message, [])[0][:MAX_TEXT_CHARS]


def first_id(value: str | None) -> str | None:
    """The first ``<id>`` token of In-Reply-To or Message-ID, bounded in length; None when there is none."""
    if not value:
        return None
    match = MSGID_TOKEN.search(value)
    return _bounded_id(match.group(0)) if match else None


def _read_body(message: Message, defects: list[str]) -> tuple[str, list[Attachment]]:
    text: str | None = None
    html: str | None = None
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        name = filename(part, defects)
        data = payload(part, defects)
        if name or part.get_content_disposition() == "attachment":
            attachments.append(Attachment(name or "", content_type, len(data)))
        elif content_type == "text/plain" and text is None:
            text = decode_bytes(data, part.get_content_charset())
        elif content_type == "text/html" and html is None:
            html = decode_bytes(data, part.get_content_charset())
    return (text if text is not None else html or ""), attachments
