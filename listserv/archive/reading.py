"""Raw archived bytes → what a reader sees: decoded headers, text blocks, sanitised HTML, attachments.

Pure and defensive like ``message.py``, whose ``compat32`` parsing and ``mail.text`` helpers it reuses:
bad mail becomes ``defects``, never an exception. Text is not escaped here — the template gets structures
(blocks, lines, link segments) and escapes them; HTML is sanitised here with nh3 and returned as a
``str`` for ``Markup``. Parts are numbered 1, 2, 3… over the leaves of the MIME tree in document order
(a message/rfc822 part is one leaf), by the same code in ``read_message`` and ``attachment``: attachment
URLs stay stable.
"""

from __future__ import annotations

import email
import email.policy
import io
import mimetypes
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.generator import BytesGenerator
from email.message import Message
from email.utils import collapse_rfc2231_value, getaddresses
from typing import NamedTuple

from listserv.archive.mailhtml import AttachmentUrl, html_text, sanitise_html
from listserv.archive.plaintext import Block, blocks
from listserv.mail.message import first_id
from listserv.mail.text import decode_bytes, decode_header, filename, parse_date, payload, unflow

MAX_DEPTH = 64  # deeper MIME nesting is shown as one opaque part
MAX_DISPLAY_CHARS = 1_000_000  # the raw message stays downloadable; a page need not hold more
MAX_FILENAME = 150
CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
FILENAME_RESERVED = re.compile(r'[<>:"/\\|?*]')
EXTENSIONS = {"text/plain": ".txt", "text/html": ".html", "message/rfc822": ".eml"}


@dataclass(frozen=True)
class Address:
    name: str
    address: str


@dataclass(frozen=True)
class Headers:
    sender: Address | None  # From (the first mailbox)
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None  # aware UTC
    subject: str
    message_id: str | None
    in_reply_to: str | None
    list_id: str | None


@dataclass(frozen=True)
class AttachmentInfo:
    index: int
    filename: str  # safe: no path, no control characters, never empty
    content_type: str
    size: int


@dataclass(frozen=True)
class MessageView:
    headers: Headers
    body: tuple[Block, ...]  # the text/plain body; empty when only HTML is shown
    html: str | None  # sanitised HTML, set for HTML-only mail or when asked for with show_html
    has_html: bool  # an HTML part exists: the page may offer "view HTML"
    blocked_images: int  # remote images in ``html`` that were not allowed to load
    text: str  # the body as plain text (HTML-only mail: its text), for summaries
    attachments: tuple[AttachmentInfo, ...]
    defects: tuple[str, ...]


@dataclass(frozen=True)
class AttachmentData:
    filename: str
    content_type: str  # well-formed type/subtype, else application/octet-stream
    charset: str | None
    data: bytes


def read_message(
    raw: bytes,
    *,
    show_html: bool = False,
    attachment_url: AttachmentUrl | None = None,
    remote_image_src: str | None = None,
) -> MessageView:
    """Never raises. ``attachment_url(index)`` maps ``cid:`` images to this message's parts;
    ``remote_image_src`` (a local placeholder image) replaces remote images, which otherwise lose their src.
    """
    defects: list[str] = []
    try:
        return _read(raw, defects, show_html, attachment_url, remote_image_src)
    except Exception as error:  # a page must render whatever the stdlib trips on; the raw stays downloadable
        defects.append(f"Unreadable: {type(error).__name__}")
        return MessageView(
            Headers(None, (), (), None, "", None, None, None), (), None, False, 0, "", (), tuple(defects)
        )


def attachment(raw: bytes, index: int) -> AttachmentData | None:
    """Part ``index`` as listed by ``read_message``; None when there is no such attachment."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        leaves = _leaves(message, [])
        if index in _body_indexes(leaves) or not 1 <= index <= len(leaves):
            return None
        part, content_type, name = leaves[index - 1]
        charset = part.get_content_charset()
        return AttachmentData(
            filename=_safe_filename(name, index, content_type),
            content_type=content_type if CONTENT_TYPE.fullmatch(content_type) else "application/octet-stream",
            charset=charset if charset and re.fullmatch(r"[a-z0-9_.:+-]{1,40}", charset) else None,
            data=_part_bytes(part, []),
        )
    except Exception:  # same contract as read_message: a bad part is a 404, not a 500
        return None


def _read(
    raw: bytes, defects: list[str], show_html: bool, url: AttachmentUrl | None, remote: str | None
) -> MessageView:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    leaves = _leaves(message, defects)
    text_index, html_index = _body_indexes(leaves)
    attachments, content_ids = [], {}
    for index, (part, content_type, name) in enumerate(leaves, start=1):
        if index in (text_index, html_index):
            continue
        filename = _safe_filename(name, index, content_type)
        attachments.append(AttachmentInfo(index, filename, content_type, len(_part_bytes(part, defects))))
        content_id = str(part.get("content-id", "")).strip().strip("<>").lower()
        if content_id:
            content_ids.setdefault(content_id, index)
    text, body = "", ()
    if text_index is not None:
        part = leaves[text_index - 1].part
        lines = _decode_text(part, defects).splitlines()
        if _param(part, "format").lower() == "flowed":
            lines = unflow(lines, delsp=_param(part, "delsp").lower() == "yes")
        text, body = "\n".join(lines).rstrip(), blocks(lines)
    html, blocked = None, 0
    if html_index is not None and (show_html or text_index is None):
        source = _decode_text(leaves[html_index - 1].part, defects)
        html, blocked = sanitise_html(source, content_ids, url, remote)
        if text_index is None:
            text, body = html_text(source), ()
    return MessageView(
        headers=_headers(message, defects),
        body=body,
        html=html,
        has_html=html_index is not None,
        blocked_images=blocked,
        text=text,
        attachments=tuple(attachments),
        defects=tuple(dict.fromkeys(defects)),
    )


def _headers(message: Message, defects: list[str]) -> Headers:
    wanted = {"from", "to", "cc", "date", "subject", "message-id", "in-reply-to", "list-id"}
    raw: dict[str, str] = {}
    for key, value in message.raw_items():
        if key.lower() in wanted:
            raw.setdefault(key.lower(), str(value))  # the first occurrence wins, as in message.py
    senders = _addresses(raw.get("from", ""), defects)
    return Headers(
        sender=senders[0] if senders else None,
        to=_addresses(raw.get("to", ""), defects),
        cc=_addresses(raw.get("cc", ""), defects),
        date=parse_date(raw.get("date"), defects),
        subject=_text(raw.get("subject", ""), defects),
        message_id=first_id(raw.get("message-id")),
        in_reply_to=first_id(raw.get("in-reply-to")),
        list_id=_text(raw["list-id"], defects) if "list-id" in raw else None,
    )


def _text(value: str, defects: list[str]) -> str:
    if value.isascii() and "=?" not in value:  # most headers: skip the RFC 2047 machinery
        return " ".join(value.replace("\x00", "").split())
    return decode_header(value, defects)


def _addresses(value: str, defects: list[str]) -> tuple[Address, ...]:
    # Split before decoding: a decoded display name may contain the commas that separate addresses.
    # The stdlib, not flanker: display needs tolerance and speed, not validation.
    pairs = getaddresses([value]) if value else []
    found = (Address(_text(name, defects), _text(addr, defects)) for name, addr in pairs)
    return tuple(address for address in found if address.name or address.address)


class _Leaf(NamedTuple):
    part: Message
    content_type: str  # looked up once: the stdlib re-parses the header on every call
    name: str  # the filename, as message.py reads it; '' when none


def _leaves(message: Message, defects: list[str]) -> list[_Leaf]:
    """The leaves of the MIME tree in document order, without recursion (nesting may be hostile)."""
    leaves: list[_Leaf] = []
    stack = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        defects += [type(defect).__name__ for defect in part.defects]
        children, content_type = part.get_payload(), part.get_content_type().lower()
        if isinstance(children, list) and not content_type.startswith("message/"):
            if depth < MAX_DEPTH:
                stack.extend((child, depth + 1) for child in reversed(children))
                continue
            defects.append("NestingTooDeep")
        leaves.append(_Leaf(part, content_type, filename(part, defects)))
    return leaves


def _body_indexes(leaves: list[_Leaf]) -> tuple[int | None, int | None]:
    """The first inline text/plain and text/html leaves: the body; every other leaf is an attachment."""
    text_index = html_index = None
    for index, (part, content_type, name) in enumerate(leaves, start=1):
        if part.get_content_disposition() == "attachment":
            continue
        # A name makes a part an attachment (as in message.py), except in a one-part message: there it
        # is a client's stray ``name=`` on the only text there is.
        if len(leaves) > 1 and name:
            continue
        # A multipart that failed to split (no boundary) is a leaf of raw text: show it as text.
        if text_index is None and (content_type == "text/plain" or content_type.startswith("multipart/")):
            text_index = index
        elif html_index is None and content_type == "text/html":
            html_index = index
    return text_index, html_index


def _part_bytes(part: Message, defects: list[str]) -> bytes:
    if not isinstance(part.get_payload(), list):
        return payload(part, defects)
    # message/*: serialise the enclosed message(s), then drop this part's own header block.
    buffer = io.BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False).flatten(part)
    except Exception:  # the generator has many failure modes on malformed trees; an empty part is enough
        defects.append("UnserialisablePart")
        return b""
    flattened = buffer.getvalue()
    return flattened[1:] if flattened.startswith(b"\n") else flattened.partition(b"\n\n")[2]


def _param(part: Message, name: str) -> str:
    value = part.get_param(name, "")
    return collapse_rfc2231_value(value) if isinstance(value, tuple) else str(value)


def _decode_text(part: Message, defects: list[str]) -> str:
    data, charset = payload(part, defects), part.get_content_charset()
    if charset:
        try:
            text = data.decode(charset).replace("\x00", "")
        except (LookupError, ValueError):  # ValueError: a NUL in the label, as UnicodeError
            defects.append(f"UndecodableCharset: {charset[:40]}")
            text = decode_bytes(data, None)
    else:
        text = decode_bytes(data, None)
    if len(text) > MAX_DISPLAY_CHARS:
        defects.append("TruncatedForDisplay")
    return text[:MAX_DISPLAY_CHARS]


def _safe_filename(name: str, index: int, content_type: str) -> str:
    # text.filename already kept the last path element; drop control and bidi-override characters (a
    # right-to-left override makes "gpj.exe" look like "exe.jpg"), characters filesystems refuse, and
    # leading dots (hidden files, "..").
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = FILENAME_RESERVED.sub("_", name).strip(" .")
    if len(name) > MAX_FILENAME:
        stem, dot, extension = name.rpartition(".")
        name = (stem[: MAX_FILENAME - 21] + dot + extension[:20]) if dot and stem else name[:MAX_FILENAME]
    if name:
        return name
    extension = EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type) or ".bin"
    return f"attachment-{index}{extension}"
