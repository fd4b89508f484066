"""A notice written straight as bytes, the email package's own output without the email package.

Holding a post composes two notices, and building them through ``EmailMessage`` (header objects,
``set_content``, ``make_mixed``, a parse and a re-serialisation of the original, the generator) was
~40 % of the worker's time. The shapes notices take are few, so they are written here from their
parts: the fixed header lines folded once per process (``notices.Precompiled``), the text part encoded
the way ``email.contentmanager`` chooses (7bit, 8bit, quoted-printable or base64), the original attached
as message/rfc822 verbatim when the email package would write it back unchanged. The bytes are those
``EmailMessage.as_bytes(policy=SMTP)`` gives for the same notice (``tests/test_notice_bytes.py``
compares them on the corpus of hard messages); anything outside these shapes — a right-to-left notice
with its HTML alternative, an original the email package would refold or re-generate, an address that
needs folding — returns None and goes through the email package as before.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import email.quoprimime
import io
import random
import re
import sys
from email.generator import BytesGenerator

from listserv.mail.rawmime import has_long_line

MAX_LINE_LENGTH = 78  # email.policy.default's, which chooses a text part's encoding
CRLF = b"\r\n"
# A header line the stdlib's parser and the SMTP policy write back as they are: a name, a colon, one
# space, a value starting with a visible character; or a continuation. No control characters (the
# policy splits a value at \v, \f and \x1c-\x1e), no line over MAX_LINE_LENGTH (it refolds those).
VERBATIM_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+: [^\x00-\x20\x7f][^\x00-\x08\x0a-\x1f\x7f]*")
VERBATIM_CONTINUATION = re.compile(rb"[ \t][^\x00-\x08\x0a-\x1f\x7f]*")
SIMPLE_ADDRESS = re.compile(r"[A-Za-z0-9.+_=-]+@[A-Za-z0-9.-]+")
_TOKEN_WIDTH = len(repr(sys.maxsize - 1))  # the email package's boundaries: 19 digits, zero-padded


def text_part(body: str) -> tuple[bytes, bytes]:
    """(Content-Transfer-Encoding, encoded body with CRLF line ends) of ``set_content(body,
    charset="utf-8")`` under ``policy.default``: 7bit or 8bit when every line fits, else whichever of
    quoted-printable or base64 is shorter on the first ten lines."""
    lines = body.encode("utf-8").splitlines()
    if max((len(line) for line in lines), default=0) <= MAX_LINE_LENGTH:
        normal = CRLF.join(lines) + CRLF
        return (b"7bit" if normal.isascii() else b"8bit"), normal
    sniff = b"\n".join(lines[:10]) + b"\n"
    sniff_qp = email.quoprimime.body_encode(sniff.decode("latin-1"), MAX_LINE_LENGTH)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        whole = b"\n".join(lines) + b"\n"
        step = MAX_LINE_LENGTH // 4 * 3
        encoded = b"".join(binascii.b2a_base64(whole[i : i + step]) for i in range(0, len(whole), step))
        return b"base64", encoded.replace(b"\n", CRLF)
    normal_text = (b"\n".join(lines) + b"\n").decode("latin-1")
    quoted = sniff_qp if len(lines) <= 10 else email.quoprimime.body_encode(normal_text, MAX_LINE_LENGTH)
    return b"quoted-printable", _crlf(quoted.encode("latin-1"))


def _crlf(data: bytes) -> bytes:
    """The generator's line ends: every line break CRLF; no CRLF added after a last partial line."""
    lines = re.split(rb"\r\n|\r|\n", data)
    return CRLF.join(lines)


def single_part_original(raw: bytes) -> bytes | None:
    """What the email package writes for ``raw`` (line ends already CRLF) attached as message/rfc822
    under ``policy.SMTP``, when ``raw`` is a single-part message with a plain header: its bytes, each
    field with a line over MAX_LINE_LENGTH refolded as the policy refolds it. Otherwise None (a
    multipart or message/* original is generated again part by part: ``generated_original``)."""
    head, blank, body = raw.partition(CRLF + CRLF)
    if not blank or has_long_line(raw):
        return None
    fields: list[list[bytes]] = []
    for line in head.split(CRLF):
        if line[:1] in (b" ", b"\t") and fields:
            if not VERBATIM_CONTINUATION.fullmatch(line):
                return None
            fields[-1].append(line)
        elif VERBATIM_FIELD.fullmatch(line):
            fields.append([line])
        else:
            return None
    written = []
    for field in fields:
        name = field[0].split(b":", 1)[0]
        if name.lower() == b"content-type" and any(
            b"multipart" in line.lower() or b"message" in line.lower() for line in field
        ):
            return None
        if all(len(line) <= MAX_LINE_LENGTH for line in field):
            written.append(CRLF.join(field) + CRLF)
            continue
        value = b"".join(field)[len(name) + 2 :].decode("ascii", "surrogateescape")
        try:
            header = email.policy.SMTP.header_factory(name.decode("ascii"), value)
            written.append(header.fold(policy=email.policy.SMTP).encode("ascii", "surrogateescape"))
        except Exception:  # hostile input; the email package path decides what to do
            return None
    header = b"".join(written)
    return None if has_long_line(header) else header + CRLF + body


def generated_original(raw: bytes) -> bytes | None:
    """What the email package writes for ``raw`` (line ends CRLF) attached as message/rfc822 under
    ``policy.SMTP`` — parsed with compat32 and generated again, part by part — or None when that fails
    or a line of it is over 998 octets, before or after (the original then travels as a file)."""
    if has_long_line(raw):
        return None
    try:
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        out = io.BytesIO()
        BytesGenerator(out, False, None, policy=email.policy.SMTP).flatten(parsed, False, "\r\n")
    except Exception:  # hostile input; the email package path decides and logs what to do
        return None
    generated = out.getvalue()
    return None if has_long_line(generated) else generated


def boundary_for(text: bytes) -> bytes:
    """A random boundary like the email package's, which appears nowhere in ``text``."""
    boundary = ("=" * 15 + f"{random.randrange(sys.maxsize):0{_TOKEN_WIDTH}d}" + "==").encode("ascii")
    candidate, counter = boundary, 0
    while b"--" + candidate in text:
        candidate = boundary + b"." + str(counter).encode("ascii")
        counter += 1
    return candidate


def compose(head: bytes, body: str, language: str, reply_to: bytes, original: bytes | None) -> bytes | None:
    """The notice: ``head`` (From … X-Loop, folded), the text part, ``reply_to`` (a folded Reply-To
    line or b""), the original as message/rfc822 when given (``single_part_original``,
    ``generated_original``). None in the one case the email package would fold our own Content-Type:
    a boundary that had to be changed (it appeared in the text) grown past the line's length."""
    cte, encoded = text_part(body)
    text_headers = b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: ' + cte + CRLF
    language_line = b"Content-Language: " + language.encode("ascii") + CRLF
    if original is None:
        return head + text_headers + b"MIME-Version: 1.0\r\n" + reply_to + language_line + CRLF + encoded
    first = text_headers + CRLF + encoded
    second = b'Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename="original.eml"\r\n'
    second += CRLF + original
    boundary = boundary_for(first + CRLF + second)
    content_type = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"'
    if len(content_type) > MAX_LINE_LENGTH:
        return None
    return b"".join(
        (
            head,
            b"MIME-Version: 1.0\r\n",
            reply_to,
            content_type + CRLF,
            language_line,
            CRLF,
            b"--" + boundary + CRLF,
            first,
            CRLF + b"--" + boundary + CRLF,
            second,
            CRLF + b"--" + boundary + b"--" + CRLF,
        )
    )
