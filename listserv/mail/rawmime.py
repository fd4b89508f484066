"""A message edited as bytes: header fields one by one (folding kept), MIME entities and the byte spans
of their parts, transfer encodings undone and redone, address and Subject fields written out.

Re-serialising with the stdlib rewrites what it touches (folding, quoting, line ends, signed parts), and
mail that is re-written can break its signatures or lose bytes the sender meant; so the copy members
receive and the digests are composed by editing the received bytes and copying the rest. Pure: bytes in,
bytes out, CRLF line ends, nothing list-specific.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.policy
import email.quoprimime
import re
from dataclasses import dataclass, replace
from email.errors import MessageError
from email.header import Header, decode_header, make_header
from email.message import Message
from email.utils import formataddr, getaddresses

from listserv.mail.addresses import encoded_words_quoted

CRLF = b"\r\n"
LINE_END = re.compile(rb"\r\n|\r|\n")
HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]*:|[ \t]|From ")  # what the stdlib's parser takes for one
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
BAD_QP = re.compile(rb"=(?![0-9A-Fa-f]{2}|[ \t]*(?:\r\n|$))")
MAX_NAME = 64
MAX_LINE_LENGTH = 78  # the SMTP policy's: a header line it would fold
# Visible ASCII words, one space between them: a Subject the stdlib's folder writes back unchanged
# when it fits on one line (tests/test_notice_bytes.py checks it against the folder).
PLAIN_SUBJECT = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")


@dataclass(frozen=True)
class Entity:
    """A message or a MIME part: raw header fields (continuation lines and CRLF included), then a body."""

    fields: tuple[bytes, ...]
    body: bytes

    def first(self, name: str) -> bytes | None:
        """The raw value of the first field called ``name`` (lower case), folding kept."""
        return next((f.split(b":", 1)[1][:-2] for f in self.fields if field_name(f) == name), None)

    def without(self, *names: str) -> Entity:
        return replace(self, fields=tuple(f for f in self.fields if field_name(f) not in names))

    def set(self, name: str, field: bytes) -> Entity:
        """Replace the first field called ``name`` in place (dropping any others), or append it."""
        names = [field_name(f) for f in self.fields]
        at = names.index(name) if name in names else len(names)
        kept = tuple(f for f, n in zip(self.fields, names, strict=True) if n != name)
        return replace(self, fields=(*kept[:at], field, *kept[at:]))

    def to_bytes(self) -> bytes:
        return b"".join(self.fields) + CRLF + self.body


MAX_LINE = 998  # octets, without CRLF (RFC 5322 §2.1.1): relays refuse longer lines


def has_long_line(data: bytes) -> bool:
    return any(len(line) > MAX_LINE for line in LINE_END.split(data))


def within_line_limit(entity: Entity) -> tuple[Entity, tuple[str, ...]]:
    """Header fields with a line over the limit are folded at white space (which unfolding undoes);
    a field that cannot be folded so is dropped. Returns the entity and the names it dropped."""
    fields, dropped = [], []
    for field in entity.fields:
        if not has_long_line(field):
            fields.append(field)
        elif (folded := fold_field(field)) is not None:
            fields.append(folded)
        else:
            dropped.append(field_name(field))
    return replace(entity, fields=tuple(fields)), tuple(dropped)


def fold_field(field: bytes) -> bytes | None:
    """A field re-folded before white space so that no line passes the limit; None when it cannot be."""
    words = re.split(rb"(?=[ \t])", b"".join(LINE_END.split(field.rstrip(b"\r\n"))))
    lines = [b""]
    for word in words:
        if lines[-1] and len(lines[-1]) + len(word) > 78:
            lines.append(b"")
        lines[-1] += word
    if any(len(line) > MAX_LINE for line in lines):
        return None
    return CRLF.join(lines) + CRLF


def field_name(field: bytes) -> str:
    return field.split(b":", 1)[0].strip().lower().decode("latin-1") if b":" in field else ""


def split_entity(data: bytes) -> Entity:
    """Fields up to the blank line; a line that is no header starts the body, as in the stdlib parser,
    which also skips mbox "From " lines and a continuation line before any field."""
    fields: list[bytes] = []
    position = 0
    while position < len(data):
        end = data.find(CRLF, position)
        end = len(data) if end < 0 else end + 2
        line = data[position:end]
        if line == CRLF or not HEADER_LINE.match(line):
            return Entity(tuple(fields), data[end if line == CRLF else position :])
        line = line if line.endswith(CRLF) else line + CRLF
        if line[:1] in b" \t" and fields:
            fields[-1] += line
        elif line[:1] not in b" \t" and not line.startswith(b"From "):
            fields.append(line)
        position = end
    return Entity(tuple(fields), b"")


def header_text(value: bytes) -> str:
    """A raw header value → text: RFC 2047 decoded, raw 8-bit read as UTF-8 (else Latin-1), on one line."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("latin-1")
    with contextlib.suppress(LookupError, UnicodeError, ValueError, AssertionError, MessageError):
        text = str(make_header(decode_header(text)))
    return " ".join(CONTROL.sub(" ", text).split())


def decoded_text(value: bytes) -> str:
    """A raw header value as a mail client shows it: unfolded and decoded, control characters kept."""
    text = LINE_END.sub(b"", value).decode("utf-8", "replace")
    with contextlib.suppress(LookupError, UnicodeError, ValueError, AssertionError, MessageError):
        text = str(make_header(decode_header(text)))
    return text


def fold_items(name: str, items: list[str]) -> bytes:
    separator = ", " if len(name) + sum(len(item) + 2 for item in items) <= 76 else ",\r\n "
    return f"{name}: {separator.join(items)}".encode() + CRLF


def subject_field(text: str) -> bytes:
    """RFC 2047 for just the words that need it (the stdlib's folder), unless that loses text: it drops
    the space between two encoded words it splits a run of non-ASCII words into ("رسالة بانتظار الإشراف"
    came back as "…بانتظارالإشراف"; Russian and Greek likewise), so a non-ASCII fold is read back and,
    when it differs, the words from the first non-ASCII one on go through ``Header``'s encoder (whole
    encoded words, spaces kept inside), the ASCII words before them (a prefix, a code) left readable."""
    if len(text) <= MAX_LINE_LENGTH - len("Subject: ") and PLAIN_SUBJECT.fullmatch(text) and "=?" not in text:
        return b"Subject: " + text.encode("ascii") + CRLF  # what the folder gives back, without it
    policy = email.policy.SMTP
    try:
        folded = policy.header_factory("Subject", text).fold(policy=policy).encode("ascii")
        unfolded = folded.decode("ascii").removeprefix("Subject:").replace("\r\n", "")
        if text.isascii() or str(policy.header_factory("Subject", unfolded)).strip() == text.strip():
            return folded
    except (LookupError, UnicodeError, ValueError, MessageError):
        pass
    words = text.split(" ")
    plain = next((i for i, word in enumerate(words) if not word.isascii() or "=?" in word), len(words))
    head, rest = " ".join(words[:plain]), " ".join(words[plain:])
    lead = f"Subject: {head} " if head else "Subject: "
    encoded = Header(rest, "utf-8", header_name=lead.rstrip(": ")).encode(linesep="\r\n")
    return lead.encode() + encoded.encode() + CRLF


class SubjectHeader(str):
    """A Subject for ``EmailMessage`` written by ``subject_field``: the policy hands a value that has a
    ``name`` its own ``fold`` (the stdlib's folder loses spaces, see ``subject_field``)."""

    name = "Subject"

    def fold(self, *, policy: email.policy.Policy) -> str:
        return subject_field(str(self)).decode("ascii").replace("\r\n", policy.linesep)


def mailboxes(value: bytes | None) -> list[tuple[str, str]]:
    """(decoded display name, address) pairs that have an address."""
    text = encoded_words_quoted((value or b"").decode("utf-8", "replace").replace("\r\n", ""))
    return [(header_text(name.encode()), addr) for name, addr in getaddresses([text]) if "@" in addr]


def address_field(name: str, pairs: list[tuple[str, str]]) -> bytes:
    formatted = []
    for display, addr in pairs:
        try:
            formatted.append(formataddr((display[:MAX_NAME], addr), charset="utf-8"))
        except UnicodeError:  # an RFC 6531 address: written as it came, its name dropped
            formatted.append(f"<{addr}>")
    return f"{name}: ".encode() + ",\r\n ".join(formatted).encode() + CRLF


@dataclass(frozen=True)
class Content:
    kind: str  # "text/plain"…; "" when the declared Content-Type cannot be read
    boundary: bytes | None
    charset: str
    inline: bool


def read_content(entity: Entity) -> Content:
    wanted = b"".join(f for f in entity.fields if field_name(f) in ("content-type", "content-disposition"))
    headers = email.message_from_bytes(wanted + CRLF, policy=email.policy.compat32)
    kind, boundary, named = headers.get_content_type(), headers.get_boundary(), True
    with contextlib.suppress(LookupError, UnicodeError, ValueError):
        named = bool(headers.get_filename())
    return Content(
        kind=kind if str(headers.get("content-type", kind)).split(";")[0].strip().lower() == kind else "",
        boundary=boundary.encode("ascii", "replace") if boundary else None,
        charset=headers.get_content_charset() or "us-ascii",
        inline=headers.get_content_disposition() != "attachment" and not named,
    )


def split_parts(body: bytes, boundary: bytes) -> list[tuple[int, int]] | None:
    """Byte spans of the body parts (RFC 2046 §5.1.1); None without a closing delimiter."""
    delimiter = re.compile(rb"(?:^|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|$)")
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            spans.append((min(start, match.start()), match.start()))
        if match.group(1):
            return spans
        start = match.end() + 2
    return None


def decode_transfer(body: bytes, transfer: str) -> bytes | None:
    """Payload bytes; None for an unknown or damaged encoding (editing it would corrupt it)."""
    if transfer in ("", "7bit", "8bit", "binary"):
        return body
    if transfer == "quoted-printable":
        return None if BAD_QP.search(body) else binascii.a2b_qp(body)
    with contextlib.suppress(binascii.Error):
        return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True) if transfer == "base64" else None
    return None


def encode_transfer(data: bytes, transfer: str) -> tuple[str, bytes]:
    """Text with LF line ends → (encoding, CRLF wire form): the same encoding unless the lines are too
    long or 8-bit where only 7-bit was declared; then quoted-printable."""
    if transfer == "base64":
        return transfer, base64.encodebytes(data.replace(b"\n", CRLF)).replace(b"\n", CRLF)
    fits = max(len(line) for line in data.split(b"\n")) <= 998
    if transfer != "quoted-printable" and fits and (data.isascii() or transfer in ("8bit", "binary")):
        return transfer, data.replace(b"\n", CRLF)
    encoded = email.quoprimime.body_encode(data.decode("latin-1"), maxlinelen=76, eol="\r\n")
    return "quoted-printable", encoded.encode("ascii")


def content_type_field(entity: Entity, charset: str) -> bytes:
    headers = Message()
    headers["Content-Type"] = header_text(entity.first("content-type") or b"") or "text/plain"
    headers.set_param("charset", charset)
    return fold_items("Content-Type", [str(headers["Content-Type"])])
