"""Shared parts of the property-based fuzz tests (issue 20, bad input): the hypothesis settings, the
strategies that write hostile mail, and the checks every piece of outgoing mail must pass.

CI runs a fixed, reproducible set of cases (``derandomize``: the same examples on every run, so a red CI
is a real regression, not a dice roll). ``LISTSERV_FUZZ_EXAMPLES=20000 pytest -m security -k fuzz`` runs
each target long; hypothesis then reports what it found, shrunk to a small example.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
import quopri
from email.message import Message

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

MAX_LINE = 998  # octets without CRLF (RFC 5322 §2.1.1)
CI_EXAMPLES = 60
EXAMPLES = int(os.environ.get("LISTSERV_FUZZ_EXAMPLES", CI_EXAMPLES))

settings.register_profile(
    "listserv-fuzz",
    deadline=None,  # a shared 2-core CI machine: time per case varies, a slow case is not a failure
    derandomize=True,  # reproducible in CI; a long run (more examples) still explores further
    max_examples=EXAMPLES,
    database=None,  # nothing written under the work tree; the seed is the examples' reproduction
    print_blob=True,  # a failure prints the @reproduce_failure line
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FUZZ = settings.get_profile("listserv-fuzz")

# --- strategies ----------------------------------------------------------------------------------------

LINE_ENDS = st.sampled_from([b"\r\n", b"\n", b"\r"])
# Control characters, line breaks, bidi overrides, non-characters and astral characters with the rest.
HOSTILE_CHARS = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(["\r", "\n", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff", "\ufffd"]),
)
HOSTILE_TEXT = st.text(HOSTILE_CHARS, max_size=120)
LONG_TEXT = st.builds(
    lambda unit, count: unit * count, st.text(HOSTILE_CHARS, min_size=1, max_size=8), st.integers(100, 700)
)
CHARSETS = st.sampled_from(
    ["utf-8", "iso-8859-1", "windows-1252", "gb2312", "gbk", "big5", "shift_jis", "iso-2022-jp", "koi8-r",
     "utf-7", "utf-16", "x-unknown", "", "utf-8*fr", "us-ascii", "windows-1256", "../../etc/passwd",
     "utf\x00-8"]
)  # fmt: skip
HEADER_NAMES = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Reply-To",
     "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-Language", "MIME-Version",
     "Sender", "List-Id", "X-Loop", "Bcc", "Return-Path", "DKIM-Signature", "X-Random"]
)  # fmt: skip
ADDRESSES = st.sampled_from(
    [b"ana@example.org", b"Ana <ana@example.org>", b"<>", b"", b"a@b@c", b'"x\r\nBcc: e@vil" <a@b.org>',
     b"=?utf-8?q?Ana=0D=0ABcc:_evil@x?= <ana@example.org>", b"ana@example.org, ben@example.org",
     b"undisclosed-recipients:;", b"\xff\xfe@\xc3.org", b"(comment", b"Ana <ana@[127.0.0.1]>"]
)  # fmt: skip


@st.composite
def encoded_words(draw: st.DrawFn) -> bytes:
    """An RFC 2047 word, well formed or not: any charset label, B or Q, a valid or broken payload."""
    charset = draw(CHARSETS)
    text = draw(HOSTILE_TEXT)
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        payload = base64.b64encode(raw) if draw(st.booleans()) else draw(st.binary(max_size=30))
        return b"=?" + charset.encode() + b"?B?" + payload + b"?="
    payload = quopri.encodestring(raw, header=True) if draw(st.booleans()) else draw(st.binary(max_size=30))
    return b"=?" + charset.encode() + b"?Q?" + payload + b"?="


DATES = st.builds(
    lambda day, year, zone: f"{day} Jun {year} 10:00:00 {zone}".encode(),
    st.sampled_from(["Mon, 03", "31", "00", "99", ""]),
    st.sampled_from(["2024", "0001", "9999", "24", "-1", "99999999999999999999"]),
    st.one_of(
        st.sampled_from(["+0000", "-2359", "+2400", "GMT", "", "+0033333333333333333333"]),
        st.text(max_size=8),
    ),
)
HEADER_VALUES = st.one_of(
    DATES,
    HOSTILE_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
    LONG_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.lists(encoded_words(), min_size=1, max_size=4).map(b" ".join),
    st.binary(max_size=200),
    ADDRESSES,
)


@st.composite
def header_fields(draw: st.DrawFn) -> list[bytes]:
    fields = [
        draw(HEADER_NAMES).encode() + b": " + draw(HEADER_VALUES) for _ in range(draw(st.integers(0, 8)))
    ]
    if draw(st.booleans()):  # what a post usually has, so the deeper paths run
        fields = [b"From: " + draw(ADDRESSES), b"Subject: " + draw(HEADER_VALUES), *fields]
    return fields


@st.composite
def leaf_parts(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
    kind = draw(
        st.sampled_from(["text/plain", "text/html", "application/pdf", "image/png", "message/rfc822"])
    )
    charset = draw(CHARSETS)
    transfer = draw(
        st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "binary", "x-uuencode", ""])
    )
    text = draw(st.one_of(HOSTILE_TEXT, LONG_TEXT))
    body = text.encode("utf-8", "surrogatepass")
    if transfer == "base64" and draw(st.booleans()):
        body = base64.encodebytes(body)
    elif transfer == "quoted-printable" and draw(st.booleans()):
        body = quopri.encodestring(body)
    fields = [f"Content-Type: {kind}; charset={charset}".encode()]
    if transfer:
        fields.append(b"Content-Transfer-Encoding: " + transfer.encode())
    if draw(st.booleans()):
        fields.append(b"Content-Disposition: attachment; filename=" + draw(HEADER_VALUES))
    return fields, body


def multipart_of(
    children: st.SearchStrategy[tuple[list[bytes], bytes]],
) -> st.SearchStrategy[tuple[list[bytes], bytes]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[list[bytes], bytes]:
        subtype = draw(st.sampled_from(["mixed", "alternative", "related", "signed", "digest", "report"]))
        boundary = draw(st.sampled_from([b"b1", b"b2", b"", b"b1 b2", b"--", b"=_x" * 30]))
        parts = draw(st.lists(children, max_size=4))
        end = draw(LINE_ENDS)
        body = b"preamble" + end
        for fields, part_body in parts:
            body += b"--" + boundary + end + end.join(fields) + end + end + part_body + end
        if draw(st.booleans()):  # a closing delimiter, or none (truncated mail)
            body += b"--" + boundary + b"--" + end
        header = b"Content-Type: multipart/" + subtype.encode() + b'; boundary="' + boundary + b'"'
        return [header], body

    return build()


MIME_TREES = st.recursive(leaf_parts(), multipart_of, max_leaves=6)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """Mail shaped like mail, with every part of it hostile: headers, encodings, charsets, trees, lines."""
    end = draw(LINE_ENDS)
    fields = draw(header_fields())
    mime_fields, body = draw(MIME_TREES)
    head = end.join([*fields, b"MIME-Version: 1.0", *mime_fields])
    return head + end + end + body


ANY_MAIL = st.one_of(hostile_messages(), st.binary(max_size=3000))

# --- checks --------------------------------------------------------------------------------------------


def longest_line(raw: bytes) -> int:
    return max(len(line) for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"))


def reparse(raw: bytes, what: str, line_limit: bool = True) -> Message:
    """Outgoing mail: no line over 998 octets, no bare CR or LF, and the stdlib reads every part back."""
    assert not line_limit or longest_line(raw) <= MAX_LINE, f"{what}: a line of {longest_line(raw)} octets"
    assert raw.count(b"\r") == raw.count(b"\r\n") == raw.count(b"\n"), f"{what}: a bare CR or LF"
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    for part in parsed.walk():
        part.get_payload(decode=True)
    return parsed


def header_names(message: Message) -> list[str]:
    return [name.lower() for name in message]


def assert_clean_headers(message: Message, what: str) -> None:
    """Every header value reads as one line: no CR or LF survives unfolding (no injected field)."""
    for name, value in message.items():
        text = str(value)
        assert "\r" not in text and "\n" not in text, f"{what}: {name} carries a line break: {text!r}"


def structural_defects(message: Message) -> list[str]:
    """The defects of the parts we wrote: a message/rfc822 part carries the sender's bytes, whose own
    defects are the sender's and are left out."""
    found: list[str] = []
    stack = [message]
    while stack:
        part = stack.pop()
        found += [type(defect).__name__ for defect in part.defects]
        if part.get_content_type() == "message/rfc822":
            continue
        if part.is_multipart():
            stack += part.get_payload()
    return found
