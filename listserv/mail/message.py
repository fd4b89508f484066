"""Raw bytes → a typed ``Post``: the one place that knows MIME quirks.

Reading uses the stdlib's ``compat32`` policy, not ``policy.default``: it is ~10× faster and never raises
on malformed structure (``policy.default`` raises ``KeyError`` on a multipart without a boundary, and
some header classes raise on bad input). Headers are decoded here, defensively, one at a time. Nothing in
this module raises on bad mail: what is wrong becomes a ``defects`` entry that moderators can read.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parsedate_to_datetime

from listserv.mail.addresses import parse_mailboxes

MESSAGE_ID = re.compile(rb"^message-id[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
MSGID_TOKEN = re.compile(r"<[^<>\s]+>")
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
    sender_name: str
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
    found = token.group(0) if token else value.strip()
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
    headers = tuple((str(key), _decode_header(value, defects)) for key, value in message.raw_items())
    post_headers = {key.lower(): value for key, value in reversed(headers)}  # first occurrence wins
    senders = parse_mailboxes(post_headers.get("from", ""))
    if not senders:
        defects.append("NoValidFromAddress")
    text, attachments = _read_body(message, defects)
    return Post(
        message_id=find_message_id(raw) or "",
        sender=senders[0][1] if senders else "",
        sender_name=senders[0][0] if senders else "",
        subject=post_headers.get("subject", ""),
        date=_parse_date(post_headers.get("date"), defects),
        language=(post_headers.get("content-language") or "").split(",")[0].strip().lower() or None,
        in_reply_to=_first_id(post_headers.get("in-reply-to")),
        references=tuple(MSGID_TOKEN.findall(post_headers.get("references", "")))[-100:],
        text=text[:MAX_TEXT_CHARS],
        attachments=tuple(attachments),
        defects=tuple(dict.fromkeys(defects)),
        headers=headers,
    )


def _decode_header(value: object, defects: list[str]) -> str:
    """An RFC 2047 header value → text; raw 8-bit bytes are read as UTF-8, else Latin-1."""
    if not isinstance(value, str):
        value = str(value)
    if any("\udc80" <= char <= "\udcff" for char in value):
        # compat32 smuggles undecodable 8-bit bytes as surrogates: recover them. Other non-ASCII
        # (U+FFFD, say) may sit beside them, so encode as UTF-8, not ASCII.
        value = _decode_bytes(value.encode("utf-8", "surrogateescape"), "utf-8")
    try:
        text = str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, AssertionError, MessageError):
        defects.append("UndecodableHeader")
        text = value
    return " ".join(text.replace("\x00", "").split())


def _first_id(value: str | None) -> str | None:
    if not value:
        return None
    match = MSGID_TOKEN.search(value)
    return _bounded_id(match.group(0)) if match else None


def _parse_date(value: str | None, defects: list[str]) -> datetime | None:
    if not value:
        defects.append("MissingDate")
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        defects.append("InvalidDate")
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _read_body(message: Message, defects: list[str]) -> tuple[str, list[Attachment]]:
    text: str | None = None
    html: str | None = None
    attachments = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        filename = _filename(part, defects)
        payload = _payload(part, defects)
        if filename or part.get_content_disposition() == "attachment":
            attachments.append(Attachment(filename or "", content_type, len(payload)))
        elif content_type == "text/plain" and text is None:
            text = _decode_bytes(payload, part.get_content_charset())
        elif content_type == "text/html" and html is None:
            html = _decode_bytes(payload, part.get_content_charset())
    return (text if text is not None else html or ""), attachments


def _payload(part: Message, defects: list[str]) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, LookupError, AssertionError):
        defects.append("UndecodablePayload")
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _filename(part: Message, defects: list[str]) -> str:
    try:
        name = part.get_filename()
    except (LookupError, UnicodeError, ValueError, TypeError):
        defects.append("UndecodableFilename")
        return ""
    if name and "\ufffd" in name:
        name = _raw_filename(part) or name
    if not name:
        return ""
    # Only the last path element: a filename is never a path (``../../etc/passwd``).
    return _decode_header(name, defects).replace("\\", "/").rsplit("/", 1)[-1]


def _raw_filename(part: Message) -> str | None:
    """compat32 hands over a raw 8-bit name ("café.pdf" unencoded, common) with U+FFFD in place of its
    bytes: read it again from the raw headers, as UTF-8, else Latin-1."""
    fixed = Message()
    try:
        for key, value in part.raw_items():
            if key.lower() in ("content-type", "content-disposition"):
                fixed[key] = _decode_bytes(str(value).encode("utf-8", "surrogateescape"), "utf-8")
        return fixed.get_filename()
    except (LookupError, UnicodeError, ValueError, TypeError):
        return None


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Declared charset, else UTF-8, else Latin-1 (which cannot fail)."""
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            codecs.lookup(candidate)
            return data.decode(candidate).replace("\x00", "")
        except (LookupError, UnicodeError):
            continue
    return data.decode("latin-1").replace("\x00", "")
