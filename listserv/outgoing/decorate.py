"""The copy members receive (step 8): list headers (RFC 2369, 2919, 8058, 5064), subject prefix, footer in
the list's language, DMARC mitigation. Pure: bytes in, bytes out; the archived bytes are never touched.

The message is edited as bytes with ``mail.rawmime``, not re-serialised: the header block field by field,
and only the MIME part that receives the footer is decoded and re-encoded; every other byte (attachments,
signed entities, forwarded messages) is copied as received. What cannot be edited safely — signed or
encrypted content, an unknown charset or transfer encoding, broken MIME — is kept whole as the first part
of a new multipart/mixed whose second part is the footer. Nothing here raises on bad mail.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace
from email.header import Header
from typing import Literal

from listserv.mail.addresses import parse_mailboxes
from listserv.mail.message import find_message_id
from listserv.mail.rawmime import (
    CONTROL,
    CRLF,
    LINE_END,
    Content,
    Entity,
    address_field,
    content_type_field,
    decode_transfer,
    decoded_text,
    encode_transfer,
    field_name,
    fold_items,
    header_text,
    mailboxes,
    read_content,
    split_entity,
    split_parts,
    subject_field,
    within_line_limit,
)
from listserv.mail.subjects import prefix_subject
from listserv.mail.text import clean_text

log = logging.getLogger(__name__)

INJECTED = {"archived-at", "precedence", "return-path", "delivered-to", "x-original-to", "x-original-from"}
DMARC_KEEP = {"to", "cc", "reply-to", "date", "message-id", "in-reply-to", "references", "subject", "x-loop"}
EDITABLE = ("multipart/alternative", "multipart/mixed", "multipart/related")  # not signed, not encrypted
MAX_DEPTH = 8


@dataclass(frozen=True)
class Decoration:
    list_name: str  # "ta-en"
    list_title: str  # "Technical Assistance"
    domain: str  # "forum.example.org"
    list_address: str
    request_address: str
    owner_address: str
    archive_url: str
    message_url: str  # stable archive URL of this message, for Archived-At
    unsubscribe_url: str  # https target of the RFC 8058 one-click POST
    subject_prefix: str  # "[TA-EN]"; "" = none
    reply_to: Literal["list", "sender"]
    dmarc: Literal["munge", "wrap", "off"]
    munge: bool  # the caller decided the sender's domain needs DMARC mitigation
    footer_text: str  # rendered in the list's language
    footer_html: str  # the same, an HTML fragment (already escaped)
    loop_marker: str  # X-Loop value


def decorate(raw: bytes, decoration: Decoration) -> bytes:
    data = LINE_END.sub(CRLF, raw)
    original = with_clean_from(split_entity(data))
    munged = decoration.munge and decoration.dmarc != "off"
    if munged and decoration.dmarc == "wrap":
        message = wrap_message(data, original, decoration.footer_text)
    else:
        message = add_footer_or_wrap(original, decoration, data)
    message = set_subject(set_list_fields(message, decoration), decoration.subject_prefix)
    message, dropped = within_line_limit(set_sender_fields(message, original, decoration, munged))
    if "from" in dropped and (sender := mailboxes(original.first("from"))[:1]):
        # A copy without From is refused downstream: rewrite it, the name re-encoded (and shortened).
        message = message.set("from", address_field("From", sender))
        dropped = tuple(name for name in dropped if name != "from")
    if dropped:
        log.warning(
            "%s: header field(s) %s too long to send, left out of the copy", decoration.list_name, dropped
        )
    return message.to_bytes()


LINE_BREAKS = re.compile("[\r\n\x85\u2028\u2029]")


def with_clean_from(original: Entity) -> Entity:
    """The author's From as written when it reads as one mailbox whose name shows no line break; else
    rebuilt from the mailbox the forum took for the sender. Written otherwise (an encoded CR/LF, a raw
    U+2028, a group "Hi\u2028Bcc: x@evil" around the address), a client could show or reply to
    what the moderators never saw, and a DMARC munge would take its first address for Reply-To."""
    field = original.first("from")
    valid = parse_mailboxes(field.decode("utf-8", "replace")) if field else []
    if field is None or not valid:
        return original
    written = mailboxes(field)
    if (
        len(written) == 1
        and written[0][1].lower() == valid[0][1].lower()
        and not LINE_BREAKS.search(decoded_text(field))
    ):
        return original
    name = clean_text(header_text(valid[0][0].encode()))
    return original.set("from", address_field("From", [(name, valid[0][1])]))


def list_id(decoration: Decoration) -> bytes:
    """RFC 2919: the title as a quoted phrase, or RFC 2047 words when it is not ASCII."""
    title = " ".join(CONTROL.sub(" ", decoration.list_title).split())
    if title.isascii():
        phrase = '"' + title.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        phrase = Header(title, "utf-8", header_name="List-Id").encode(linesep="\r\n")
    return f"List-Id: {phrase} <{decoration.list_name}.{decoration.domain}>".encode() + CRLF


def set_list_fields(message: Entity, decoration: Decoration) -> Entity:
    """Incoming copies go first (a sender must not inject them); X-Loop values of other systems stay."""
    ours = decoration.loop_marker.strip().lower().encode()
    kept = [f for f in message.fields if not is_injected(field_name(f), f.split(b":", 1)[-1], ours)]
    request, one_click = decoration.request_address, decoration.unsubscribe_url
    table = {
        "List-Post": [f"<mailto:{decoration.list_address}>"],
        "List-Help": [f"<mailto:{request}?subject=help>"],
        "List-Owner": [f"<mailto:{decoration.owner_address}>"],
        # RFC 8058's one-click URL first (as its examples and the big receivers show it), then mailto.
        "List-Unsubscribe": [f"<{one_click}>"] * bool(one_click)
        + [f"<mailto:{request}?subject=unsubscribe>"],
        "List-Unsubscribe-Post": ["List-Unsubscribe=One-Click"] * bool(one_click),
        "List-Archive": [f"<{decoration.archive_url}>"] * bool(decoration.archive_url),
        "Archived-At": [f"<{decoration.message_url}>"] * bool(decoration.message_url),
        "Precedence": ["list"],
        "X-Loop": [decoration.loop_marker],
    }
    added = [fold_items(name, items) for name, items in table.items() if items]
    return Entity((*kept, list_id(decoration), *added), message.body)


def is_injected(name: str, value: bytes, our_loop_marker: bytes) -> bool:
    if name == "x-loop":
        return value.strip().lower() == our_loop_marker
    return name.startswith("list-") or name in INJECTED


def set_subject(message: Entity, prefix: str) -> Entity:
    """Prefixed once; left byte for byte as it was when it already reads right."""
    raw = message.first("subject")
    current = header_text(raw or b"")
    wanted = prefix_subject(current, prefix) if prefix else current
    if raw is not None and raw.isascii() and wanted == current:
        return message
    return message.set("subject", subject_field(wanted))


def set_sender_fields(message: Entity, original: Entity, decoration: Decoration, munged: bool) -> Entity:
    """From (munged for DMARC when asked), X-Original-From, and Reply-To per the list's policy: the
    sender's own Reply-To is kept, the list added after it."""
    sender = mailboxes(original.first("from"))[:1]
    if munged:
        name, addr = sender[0] if sender else ("", "")
        who, tag = name or addr.split("@")[0], decoration.list_name.upper()
        display = f"{who} via {tag}" if who else tag
        message = message.set("from", address_field("From", [(display, decoration.list_address)]))
        if (original_from := original.first("from")) is not None:
            message = message.set("x-original-from", b"X-Original-From:" + original_from + CRLF)
    theirs = message.first("reply-to")
    theirs = theirs if theirs and theirs.strip() else None
    adding = [] if theirs or not munged else sender
    if decoration.reply_to == "list":
        present = {addr.lower() for _, addr in mailboxes(theirs)}
        adding += [("", decoration.list_address)] * (decoration.list_address.lower() not in present)
    if not adding:
        return message
    field = address_field("Reply-To", adding)
    if theirs is not None:
        field = b"Reply-To:" + theirs + b",\r\n " + field.split(b":", 1)[1].lstrip()
    return message.set("reply-to", field)


def add_footer_or_wrap(message: Entity, decoration: Decoration, seed: bytes) -> Entity:
    try:
        edited = add_footer(message, decoration, depth=0)
    except Exception:  # a bug or a message stranger than the corpus: the footer still goes on, safely
        log.exception("footer could not be added in place to %s; wrapping", find_message_id(seed))
        edited = None
    if edited is None:
        return wrap_footer(message, decoration.footer_text, seed)
    if edited.first("mime-version") is None and edited.fields != message.fields:
        edited = replace(edited, fields=(*edited.fields, b"MIME-Version: 1.0\r\n"))
    return edited


def add_footer(entity: Entity, decoration: Decoration, depth: int) -> Entity | None:
    """The entity with the footer added in place, or None when that is not safe. In multipart/alternative
    every text version gets it; in mixed and related, the first part only."""
    content = read_content(entity)
    if content.kind in ("text/plain", "text/html"):
        return add_text_footer(entity, content, decoration) if content.inline else None
    if content.kind not in EDITABLE or not content.boundary or depth >= MAX_DEPTH:
        return None
    if not (spans := split_parts(entity.body, content.boundary)):
        return None
    alternative = content.kind == "multipart/alternative"
    body, edited = entity.body, 0
    for start, end in reversed(spans if alternative else spans[:1]):
        part = split_entity(body[start:end])
        if alternative and read_content(part).kind not in ("text/plain", "text/html", "multipart/related"):
            continue
        if (new := add_footer(part, decoration, depth + 1)) is None:
            return None
        body, edited = body[:start] + new.to_bytes() + body[end:], edited + 1
    return replace(entity, body=body) if edited else None


def add_text_footer(entity: Entity, content: Content, decoration: Decoration) -> Entity | None:
    """Decoded, footed, re-encoded in its charset (UTF-8 when the footer does not fit in it) and its
    transfer encoding (quoted-printable when the result needs it); None when it cannot be decoded."""
    transfer = (entity.first("content-transfer-encoding") or b"").strip().lower().decode("latin-1")
    data, charset = decode_transfer(entity.body, transfer), content.charset
    try:
        if data is None or "Az :\n".encode(charset) != b"Az :\n":  # damaged; not ASCII-compatible (UTF-16)
            return None
        text = re.sub(r"\r\n?", "\n", data.decode(charset))
    except (LookupError, UnicodeError, ValueError):
        return None
    if content.kind == "text/html":
        new = insert_html(text, decoration.footer_html).encode(charset, "xmlcharrefreplace")
    else:
        flowed = b"format=flowed" in (entity.first("content-type") or b"").replace(b'"', b"").lower()
        text = append_text(text, decoration.footer_text, flowed)
        try:
            new = text.encode(charset)
        except UnicodeError:
            charset, new = "utf-8", text.encode("utf-8")
    new_transfer, body = encode_transfer(new, transfer)
    if new_transfer != transfer:
        field = b"Content-Transfer-Encoding: " + new_transfer.encode() + CRLF
        entity = entity.set("content-transfer-encoding", field)
    if charset != content.charset:
        entity = entity.set("content-type", content_type_field(entity, charset))
    return replace(entity, body=body)


def append_text(text: str, footer: str, flowed: bool) -> str:
    """A blank line, then the footer; in format=flowed (RFC 3676) its lines end hard and are space-stuffed."""
    lines = footer.replace("\r\n", "\n").rstrip("\n").split("\n")
    if flowed:
        lines = [(" " * line.startswith((" ", ">", "From ")) + line).rstrip(" ") for line in lines]
    text = text if not text or text.endswith("\n") else text + "\n"
    gap = "" if not text or text.endswith("\n\n") else "\n"
    return text + gap + "\n".join(lines) + "\n"


def insert_html(html: str, footer: str) -> str:
    """Before the last </body> (else </html>), else at the end."""
    lowered = html.lower()
    at = next((i for i in (lowered.rfind("</body"), lowered.rfind("</html")) if i >= 0), len(html))
    return html[:at] + "\n" + footer.replace("\r\n", "\n").strip("\n") + "\n" + html[at:]


def wrap_footer(message: Entity, footer: str, seed: bytes) -> Entity:
    """The body left whole (byte-identical) as the first part of a multipart/mixed; the footer second."""
    content = tuple(f for f in message.fields if field_name(f).startswith("content-"))
    inner = b"".join(content) + CRLF + message.body
    return mixed(message.without(*map(field_name, content)), inner, footer, seed)


def wrap_message(data: bytes, original: Entity, footer: str) -> Entity:
    """DMARC wrap: a new message from the list; the original attached as message/rfc822 (RFC 2046 §5.2.1)."""
    kept = Entity(tuple(f for f in original.fields if field_name(f) in DMARC_KEEP), b"")
    eight_bit = b"" if data.isascii() else b"Content-Transfer-Encoding: 8bit\r\n"
    attached = b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n" + eight_bit + CRLF + data
    return mixed(kept, attached, footer, data)


def mixed(message: Entity, first: bytes, footer: str, seed: bytes) -> Entity:
    """multipart/mixed: ``first`` as given, then the footer as text/plain; a boundary absent from both."""
    transfer, text = encode_transfer(footer.replace("\r\n", "\n").encode("utf-8"), "7bit")
    head = 'Content-Type: text/plain; charset="utf-8"\r\nContent-Disposition: inline\r\n'
    parts = [first, f"{head}Content-Transfer-Encoding: {transfer}\r\n\r\n".encode() + text]
    boundary = "===============" + hashlib.sha256(seed).hexdigest()[:24] + "=="
    while any(f"--{boundary}".encode() in part for part in parts):
        boundary = "===============" + hashlib.sha256(boundary.encode()).hexdigest()[:24] + "=="
    delimiter = b"--" + boundary.encode()
    body = b"".join(delimiter + CRLF + part + CRLF for part in parts) + delimiter + b"--" + CRLF
    content_type = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'.encode()
    eight_bit = () if body.isascii() else (b"Content-Transfer-Encoding: 8bit\r\n",)  # RFC 2045 §6.4
    fields = (*message.without("mime-version").fields, b"MIME-Version: 1.0\r\n", content_type, *eight_bit)
    return Entity(fields, body)
