"""The copy members receive: list headers, subject prefix, footer, DMARC (listserv/outgoing/decorate.py).

Byte-identity checks (attachments, signed entities, forwarded messages) cut the parts out of the input and
the output with a regex on the literal boundary, independently of the code under test."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import html
import re
from collections.abc import Callable
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from textwrap import dedent

import jinja2
import pytest

from listserv.mail.subjects import prefix_subject, strip_prefix
from listserv.outgoing.decorate import Decoration, decorate

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "messages").glob("*.eml"))
FOOTER = (
    "______________________________\nArchives : https://forum.example.org/lists/ta-en/\nRéunions à Genève\n"
)
FOOTER_HTML = '<div><a href="https://forum.example.org/lists/ta-en/">Archives</a> — Réunions à Genève</div>'
LIST = Decoration(
    list_name="ta-en",
    list_title="Technical Assistance",
    domain="forum.example.org",
    list_address="ta-en@forum.example.org",
    request_address="ta-en-request@forum.example.org",
    owner_address="ta-en-owner@forum.example.org",
    archive_url="https://forum.example.org/lists/ta-en/",
    message_url="https://forum.example.org/lists/ta-en/message/abc123/",
    unsubscribe_url="https://forum.example.org/unsubscribe/t0k3n",
    subject_prefix="[TA-EN]",
    reply_to="list",
    dmarc="munge",
    munge=False,
    footer_text=FOOTER,
    footer_html=FOOTER_HTML,
    loop_marker="listserv@forum.example.org",
)
HEAD = """\
    From: Delegate One <delegate@example.org>
    To: ta-en@forum.example.org
    Subject: Budget workshop
    Date: Mon, 03 Jun 2024 10:00:00 +0000
    Message-ID: <post-1@example.org>
    MIME-Version: 1.0
"""
PDF = b"%PDF-1.4\r\n%\xe2\xe3\xcf\xd3\r\n1 0 obj << /Type /Catalog >> endobj\r\n%%EOF"


def mail(text: str, encoding: str = "utf-8") -> bytes:
    """An inline message: dedented, CRLF line ends."""
    return dedent(text).lstrip("\n").replace("\n", "\r\n").encode(encoding)


def simple(body: str = "Hello.\n", *, headers: str = "", content: str = "text/plain; charset=utf-8") -> bytes:
    return mail(HEAD + headers + f"    Content-Type: {content}\n") + b"\r\n" + mail(body)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "us-ascii").replace("\r\n", "\n")


def header(raw: bytes, name: str) -> list[str]:
    values = parse(raw).get_all(name, [])
    return [str(make_header(decode_header(re.sub(r"\r?\n(?=[ \t])", "", value)))) for value in values]


def part_between(raw: bytes, boundary: bytes, index: int) -> bytes:
    """The bytes of body part ``index`` of the multipart with this boundary (RFC 2046 delimiters)."""
    delimiter = re.escape(b"\r\n--" + boundary)
    chunks = re.split(delimiter + rb"(?:--)?[ \t]*(?=\r\n)", b"\r\n" + raw)
    return chunks[index + 1].removeprefix(b"\r\n")


# --- headers -------------------------------------------------------------------------------------------

INJECTED = simple(
    headers="""\
    Return-Path: <delegate@example.org>
    Delivered-To: ta-en@forum.example.org
    X-Original-To: ta-en@forum.example.org
    X-Original-From: President <president@example.org>
    List-Id: Fake <fake.example.org>
    List-Unsubscribe: <https://evil.example.org/>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click
    List-Subscribe: <https://evil.example.org/>
    Archived-At: <https://evil.example.org/>
    Precedence: bulk
    X-Loop: listserv@forum.example.org
    X-Loop: other-list@lists.example.net
    DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from:subject; bh=abc=; b=def=
"""
)
EXPECTED_FIELDS = {
    "List-Id": '"Technical Assistance" <ta-en.forum.example.org>',
    "List-Post": "<mailto:ta-en@forum.example.org>",
    "List-Help": "<mailto:ta-en-request@forum.example.org?subject=help>",
    "List-Owner": "<mailto:ta-en-owner@forum.example.org>",
    "List-Archive": "<https://forum.example.org/lists/ta-en/>",
    "List-Unsubscribe": "<https://forum.example.org/unsubscribe/t0k3n>, "
    "<mailto:ta-en-request@forum.example.org?subject=unsubscribe>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "Archived-At": "<https://forum.example.org/lists/ta-en/message/abc123/>",
    "Precedence": "list",
}


@pytest.mark.parametrize(("name", "value"), EXPECTED_FIELDS.items())
def test_each_list_header_is_present_once(name: str, value: str) -> None:
    for raw in (simple(), INJECTED):
        assert header(decorate(raw, LIST), name) == [value]


def test_injected_headers_are_removed_and_dkim_kept() -> None:
    out = parse(decorate(INJECTED, LIST))
    for name in ("Return-Path", "Delivered-To", "X-Original-To", "X-Original-From", "List-Subscribe"):
        assert out.get_all(name) is None, name
    assert out.get_all("X-Loop") == ["other-list@lists.example.net", "listserv@forum.example.org"]
    assert len(out.get_all("DKIM-Signature", [])) == 1
    assert b"evil" not in decorate(INJECTED, LIST)


def test_a_non_ascii_title_is_encoded_in_list_id() -> None:
    raw = decorate(simple(), dataclasses.replace(LIST, list_title="Assistance técnica"))
    field = next(line for line in raw.split(b"\r\n") if line.startswith(b"List-Id:"))
    assert field.isascii() and b"=?utf-8?" in field
    assert header(raw, "List-Id") == ["Assistance técnica <ta-en.forum.example.org>"]


def test_optional_urls_leave_their_headers_out() -> None:
    bare = dataclasses.replace(LIST, archive_url="", message_url="", unsubscribe_url="")
    out = parse(decorate(simple(), bare))
    assert out["List-Unsubscribe"] == "<mailto:ta-en-request@forum.example.org?subject=unsubscribe>"
    assert out["List-Unsubscribe-Post"] is None and out["List-Archive"] is None and out["Archived-At"] is None


# --- subject --------------------------------------------------------------------------------------------

SUBJECTS = [
    (b"Budget workshop", "[TA-EN] Budget workshop"),
    (b"Re: [TA-EN] Budget workshop", "Re: [TA-EN] Budget workshop"),
    (b"Re: [TA-EN] Re: [TA-EN] Budget", "Re: [TA-EN] Budget"),
    (b"RE: [ta-en] RE: Budget", "RE: [TA-EN] Budget"),
    (b"[TA-EN] Re: Budget", "Re: [TA-EN] Budget"),
    (b"Re[2]: Fwd: Budget", "Re: [TA-EN] Budget"),
    (b"AW: Budget", "AW: [TA-EN] Budget"),
    (b"TR: [TA-EN] Compte rendu de la r\xc3\xa9union", "TR: [TA-EN] Compte rendu de la réunion"),
    (b"RV: Re: [TA-EN] Acta de la reuni\xc3\xb3n", "RV: [TA-EN] Acta de la reunión"),
    (b"=?utf-8?q?R=C3=A9union_du_comit=C3=A9?=", "[TA-EN] Réunion du comité"),
    (b"Re: =?iso-8859-1?q?[TA-EN]_R=E9union?=", "Re: [TA-EN] Réunion"),
    (b"R\xc3\xa9union brute", "[TA-EN] Réunion brute"),  # raw UTF-8, no RFC 2047
    (b"R\xe9union brute", "[TA-EN] Réunion brute"),  # raw Latin-1
    (b"", "[TA-EN]"),
    (None, "[TA-EN]"),
]


@pytest.mark.parametrize(("subject", "expected"), SUBJECTS)
def test_subject_prefix(subject: bytes | None, expected: str) -> None:
    raw = b"From: a@example.org\r\n" + (b"Subject: " + subject + b"\r\n" if subject is not None else b"")
    out = decorate(raw + b"\r\nBody\r\n", LIST)
    fields = [
        line for line in out.split(b"\r\n\r\n")[0].split(b"\r\n") if line.lower().startswith(b"subject")
    ]
    assert len(fields) == 1 and fields[0].isascii()
    assert header(out, "Subject") == [expected]


@pytest.mark.parametrize(
    "subject",
    [b"=?utf-8?b?QUJDR?=", b"=?utf\xff-8?q?abc?=", b"=?unknown-8bit?q?R=E9union?=", b"\xff\xfe\x00"],
)
def test_a_broken_subject_is_prefixed_without_raising(subject: bytes) -> None:
    out = decorate(b"From: a@example.org\r\nSubject: " + subject + b"\r\n\r\nBody\r\n", LIST)
    assert re.search(rb"\r\nSubject: \[TA-EN\] [\x21-\x7e]", out)


def test_a_subject_that_already_reads_right_is_left_byte_for_byte() -> None:
    raw = mail("Subject: Re:  [TA-EN]   Budget\nFrom: a@example.org\n\nBody\n")
    assert b"Subject: Re:  [TA-EN]   Budget\r\n" in decorate(raw, LIST)


def test_no_prefix_leaves_the_subject_alone() -> None:
    raw = mail("Subject: =?utf-8?q?R=C3=A9union?=\nFrom: a@example.org\n\nBody\n")
    assert b"Subject: =?utf-8?q?R=C3=A9union?=\r\n" in decorate(
        raw, dataclasses.replace(LIST, subject_prefix="")
    )


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: [TA-EN] Re: [TA-EN] x", "x"),
        ("[TA-EN] x", "x"),
        ("Fwd: RE: [ta-en]  Réunion  à Genève", "Réunion à Genève"),
        ("TR: Ordre du jour", "Ordre du jour"),
        ("RV: Acta", "Acta"),
        ("Remarks: not a marker", "Remarks: not a marker"),
        ("", ""),
    ],
)
def test_strip_prefix_for_threading(subject: str, expected: str) -> None:
    assert strip_prefix(subject, "[TA-EN]") == expected


def test_prefix_subject_never_stacks() -> None:
    subject = "x"
    for _ in range(3):
        subject = prefix_subject("Re: " + subject, "[TA-EN]")
    assert subject == "Re: [TA-EN] x"


# --- footer in a single text part ----------------------------------------------------------------------

PLAIN_CASES = {
    "utf8-8bit": (b"charset=utf-8", b"8bit", "Caf\xe9 \u00e0 Gen\xe8ve.\n".encode(), "8bit", "utf-8"),
    "ascii-7bit": (b"charset=us-ascii", b"7bit", b"Plain text.\n", "quoted-printable", "utf-8"),
    "no-header": (b"", b"", b"Plain text, no charset.\n", "quoted-printable", "utf-8"),
    "qp": (
        b"charset=utf-8",
        b"quoted-printable",
        b"Caf=C3=A9 soft=\r\nbreak.\r\n",
        "quoted-printable",
        "utf-8",
    ),
    "base64": (b"charset=utf-8", b"base64", b"Q2Fmw6kgw6AgR2Vuw6h2ZS4K\r\n", "base64", "utf-8"),
    "latin1-8bit": (b"charset=iso-8859-1", b"8bit", b"Caf\xe9 \xe0 Gen\xe8ve.\n", "8bit", "iso-8859-1"),
    "koi8r-8bit": (b"charset=koi8-r", b"8bit", "Привет.\n".encode("koi8-r"), "8bit", "utf-8"),
    "long-line": (b"charset=us-ascii", b"7bit", b"word " * 400 + b"\n", "quoted-printable", "utf-8"),
}
ORIGINAL_TEXT = {
    "utf8-8bit": "Café à Genève.",
    "ascii-7bit": "Plain text.",
    "no-header": "Plain text, no charset.",
    "qp": "Café softbreak.",
    "base64": "Café à Genève.",
    "latin1-8bit": "Café à Genève.",
    "koi8r-8bit": "Привет.",
    "long-line": ("word " * 400).strip(),
}


@pytest.mark.parametrize("case", PLAIN_CASES)
def test_footer_in_a_text_plain_body(case: str) -> None:
    charset, cte, body, wanted_cte, wanted_charset = PLAIN_CASES[case]
    head = b"From: a@example.org\r\nSubject: x\r\n"
    if charset:
        head += b"MIME-Version: 1.0\r\nContent-Type: text/plain; " + charset + b"\r\n"
    if cte:
        head += b"Content-Transfer-Encoding: " + cte + b"\r\n"
    raw = decorate(head + b"\r\n" + body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), LIST)
    out = parse(raw)
    assert out.get_content_type() == "text/plain"
    assert out.get_content_charset() == wanted_charset
    assert out.get("Content-Transfer-Encoding", "7bit").lower() == wanted_cte
    assert out["MIME-Version"] == "1.0"
    text = text_of(out)
    assert text.startswith(ORIGINAL_TEXT[case]) and text.endswith("\n\n" + FOOTER)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_format_flowed_keeps_the_footer_out_of_the_last_paragraph() -> None:
    body = "This paragraph is soft \nwrapped. \n"
    footer = " indented line \n> not a quote \n"
    raw = simple(body, content="text/plain; charset=utf-8; format=flowed; delsp=yes")
    text = text_of(parse(decorate(raw, dataclasses.replace(LIST, footer_text=footer))))
    assert text == body + "\n  indented line\n > not a quote\n"


def test_bytes_outside_the_charset_make_the_body_unsafe_so_it_is_wrapped() -> None:
    raw = mail(HEAD + "    Content-Type: text/plain; charset=utf-8\n\n").replace(
        b"\r\n\r\n", b"\r\n\r\nCaf\xe9\r\n"
    )
    out = parse(decorate(raw, LIST))
    first, footer = out.get_payload()
    assert first.get_payload(decode=True) == b"Caf\xe9\r\n" and text_of(footer) == FOOTER


# --- HTML and multipart ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<html><body><p>Hi</p></body></html>\n", f"<html><body><p>Hi</p>\n{FOOTER_HTML}\n</body></html>\n"),
        ("<p>Hi</p>\n", f"<p>Hi</p>\n\n{FOOTER_HTML}\n"),
        ("<HTML><BODY>Hi</BODY>\n</HTML>\n", f"<HTML><BODY>Hi\n{FOOTER_HTML}\n</BODY>\n</HTML>\n"),
    ],
)
def test_footer_in_html(html: str, expected: str) -> None:
    out = parse(decorate(simple(html, content="text/html; charset=utf-8"), LIST))
    assert text_of(out) == expected


def test_html_in_a_narrow_charset_gets_character_references() -> None:
    raw = simple("<p>Hi</p>\n", content="text/html; charset=us-ascii")
    out = parse(decorate(raw, LIST))
    assert out.get_content_charset() == "us-ascii"
    assert "&#8212; R&#233;unions &#224; Gen&#232;ve" in text_of(out)


ALTERNATIVE = simple(
    """\
    --alt
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: 8bit

    Café.
    --alt
    Content-Type: text/html; charset=utf-8
    Content-Transfer-Encoding: quoted-printable

    <html><body><p>Caf=C3=A9.</p></body></html>
    --alt--
""",
    content='multipart/alternative; boundary="alt"',
)


def test_each_version_of_a_multipart_alternative_gets_its_footer() -> None:
    plain, html = parse(decorate(ALTERNATIVE, LIST)).get_payload()
    assert text_of(plain) == "Café.\n\n" + FOOTER
    assert FOOTER_HTML + "\n</body></html>" in text_of(html)
    assert "Archives :" not in text_of(html)


MIXED = mail(
    HEAD
    + """\
    Content-Type: multipart/mixed; boundary="mix"

    This is a multi-part message in MIME format.
    --mix
    Content-Type: text/plain; charset=utf-8

    See the report attached.
    --mix
    Content-Type: application/pdf; name="rapport.pdf"
    Content-Disposition: attachment; filename="rapport.pdf"

    PDFBYTES
    --mix
    Content-Type: text/plain; charset=utf-8
    Content-Disposition: attachment; filename="notes.txt"

    Attached notes.
    --mix--
    epilogue
"""
).replace(b"PDFBYTES", PDF)


RELATED = simple(
    """\
    --alt
    Content-Type: text/plain; charset=utf-8

    Plain.
    --alt
    Content-Type: multipart/related; boundary="rel"

    --rel
    Content-Type: text/html; charset=utf-8

    <html><body><img src="cid:logo"></body></html>
    --rel
    Content-Type: image/png
    Content-ID: <logo>
    Content-Transfer-Encoding: base64

    iVBORw0KGgo=
    --rel--
    --alt--
""",
    content='multipart/alternative; boundary="alt"',
)


def test_html_with_inline_images_gets_the_footer_in_its_root_part() -> None:
    out = decorate(RELATED, LIST)
    plain, related = parse(out).get_payload()
    html, _ = related.get_payload()
    assert text_of(plain).endswith("Plain.\n\n" + FOOTER)
    assert f"{FOOTER_HTML}\n</body></html>" in text_of(html)
    assert part_between(out, b"rel", 1) == part_between(RELATED, b"rel", 1)


def test_a_multipart_mixed_gets_the_footer_in_its_first_part_only() -> None:
    out = decorate(MIXED, LIST)
    first, pdf, notes = parse(out).get_payload()
    assert text_of(first).endswith("See the report attached.\n\n" + FOOTER)
    assert pdf.get_payload(decode=True) == PDF
    assert text_of(notes) == "Attached notes."
    for index in (1, 2):
        assert part_between(out, b"mix", index) == part_between(MIXED, b"mix", index)
    assert out.endswith(b"--mix--\r\nepilogue\r\n")


def test_an_attachment_first_is_not_edited_the_message_is_wrapped() -> None:
    raw = MIXED.replace(
        b"text/plain; charset=utf-8\r\n\r\nSee",
        b"text/plain; charset=utf-8\r\nContent-Disposition: attachment\r\n\r\nSee",
    )
    out = decorate(raw, LIST)
    assert parse(out).get_payload(0).get_content_type() == "multipart/mixed"
    assert raw.split(b"\r\n\r\n", 1)[1] in out


SIGNED = mail(
    HEAD
    + """\
    Content-Type: multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256;
     boundary="sig"

    This is an OpenPGP/MIME signed message (RFC 4880 and 3156)
    --sig
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: quoted-printable

    Sign=C3=A9 body; trailing spaces stay  \n    --sig
    Content-Type: application/pgp-signature; name="signature.asc"

    -----BEGIN PGP SIGNATURE-----
    iQEzBAEBCAAdFiEEabcdefghijklmnopqrstuvwxyz0123456789
    -----END PGP SIGNATURE-----
    --sig--
"""
)


@pytest.mark.parametrize("raw", [SIGNED, (ROOT / "tests/messages/smime-multipart-signed.eml").read_bytes()])
def test_a_signed_entity_is_byte_identical_and_the_footer_is_a_second_part(raw: bytes) -> None:
    out = decorate(raw, LIST)
    message = parse(out)
    assert message.get_content_type() == "multipart/mixed"
    signed, footer = message.get_payload()
    assert signed.get_content_type() == "multipart/signed"
    assert text_of(footer) == FOOTER
    before = part_between(raw, b"sig", 0)
    after = part_between(out, b"sig", 0)
    assert hashlib.sha256(after).digest() == hashlib.sha256(before).digest()
    assert part_between(out, b"sig", 1) == part_between(raw, b"sig", 1)  # the signature itself


def test_an_opaque_smime_message_is_wrapped_whole() -> None:
    raw = (ROOT / "tests/messages/smime-opaque-p7m.eml").read_bytes()
    out = decorate(raw, LIST)
    p7m, footer = parse(out).get_payload()
    assert p7m.get_content_type() == "application/pkcs7-mime"
    assert raw.split(b"\r\n\r\n", 1)[1] in out
    assert text_of(footer) == FOOTER


FORWARD = simple(
    """\
    --out
    Content-Type: text/plain; charset=utf-8

    Forwarding this.
    --out
    Content-Type: message/rfc822

    From: Someone <someone@example.net>
    Subject: Inner

    Inner body, no footer here.
    --out--
""",
    content='multipart/mixed; boundary="out"',
)


def test_a_forwarded_message_is_not_touched() -> None:
    out = decorate(FORWARD, LIST)
    first, _ = parse(out).get_payload()
    assert text_of(first).endswith("Forwarding this.\n\n" + FOOTER)
    assert part_between(out, b"out", 1) == part_between(FORWARD, b"out", 1)
    assert out.count(b"R=C3=A9unions") == 1


# --- Reply-To and DMARC --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "their_reply_to", "expected"),
    [
        ("list", None, ["ta-en@forum.example.org"]),
        ("list", "Desk <desk@example.org>", ["Desk <desk@example.org>, ta-en@forum.example.org"]),
        ("list", "ta-en@forum.example.org", ["ta-en@forum.example.org"]),
        ("sender", None, []),
        ("sender", "Desk <desk@example.org>", ["Desk <desk@example.org>"]),
    ],
)
def test_reply_to_policy(policy: str, their_reply_to: str | None, expected: list[str]) -> None:
    headers = f"    Reply-To: {their_reply_to}\n" if their_reply_to else ""
    out = decorate(simple(headers=headers), dataclasses.replace(LIST, reply_to=policy))
    assert [" ".join(value.split()) for value in header(out, "Reply-To")] == expected
    assert header(out, "From") == ["Delegate One <delegate@example.org>"]


MUNGE = dataclasses.replace(LIST, munge=True, dmarc="munge")


@pytest.mark.parametrize(
    ("sender", "reply_to", "expected_from", "expected_reply_to"),
    [
        (
            "Delegate One <delegate@example.org>",
            "list",
            "Delegate One via TA-EN <ta-en@forum.example.org>",
            "Delegate One <delegate@example.org>, ta-en@forum.example.org",
        ),
        (
            "delegate@example.org",
            "sender",
            "delegate via TA-EN <ta-en@forum.example.org>",
            "delegate@example.org",
        ),
        (
            "=?utf-8?q?Jos=C3=A9_Mar=C3=ADa?= <jm@example.org>",
            "sender",
            "José María via TA-EN <ta-en@forum.example.org>",
            "José María <jm@example.org>",
        ),
    ],
)
def test_munged_from(sender: str, reply_to: str, expected_from: str, expected_reply_to: str) -> None:
    raw = simple().replace(b"From: Delegate One <delegate@example.org>", b"From: " + sender.encode())
    out = decorate(raw, dataclasses.replace(MUNGE, reply_to=reply_to))
    assert header(out, "From") == [expected_from]
    assert header(out, "X-Original-From") == [header(raw, "From")[0]]
    assert [" ".join(value.split()) for value in header(out, "Reply-To")] == [expected_reply_to]


def test_munging_a_sender_without_address() -> None:
    raw = simple().replace(b"From: Delegate One <delegate@example.org>", b"From: Delegate One")
    out = decorate(raw, MUNGE)
    assert header(out, "From") == ["TA-EN <ta-en@forum.example.org>"]
    assert header(out, "X-Original-From") == ["Delegate One"]
    assert header(out, "Reply-To") == ["ta-en@forum.example.org"]


def test_munging_keeps_the_senders_own_reply_to() -> None:
    out = decorate(simple(headers="    Reply-To: desk@example.org\n"), MUNGE)
    assert [" ".join(value.split()) for value in header(out, "Reply-To")] == [
        "desk@example.org, ta-en@forum.example.org"
    ]


@pytest.mark.parametrize("decoration", [dataclasses.replace(MUNGE, dmarc="off"), dataclasses.replace(LIST)])
def test_from_is_untouched_without_mitigation(decoration: Decoration) -> None:
    out = decorate(simple(), decoration)
    assert b"From: Delegate One <delegate@example.org>\r\n" in out
    assert parse(out)["X-Original-From"] is None


def test_wrap_sends_the_original_as_an_attachment_from_the_list() -> None:
    raw = INJECTED
    out = decorate(raw, dataclasses.replace(MUNGE, dmarc="wrap"))
    message = parse(out)
    assert header(out, "From") == ["Delegate One via TA-EN <ta-en@forum.example.org>"]
    assert header(out, "Subject") == ["[TA-EN] Budget workshop"]
    assert message["Message-ID"] == "<post-1@example.org>"
    assert message["DKIM-Signature"] is None and message["Return-Path"] is None
    assert message["List-Id"] == EXPECTED_FIELDS["List-Id"]
    attached, footer = message.get_payload()
    assert attached.get_content_type() == "message/rfc822"
    assert text_of(footer) == FOOTER
    assert b"\r\n\r\n" + raw + b"\r\n--" in out  # the original, byte for byte


def test_wrap_without_munge_decorates_normally() -> None:
    out = parse(decorate(simple(), dataclasses.replace(LIST, dmarc="wrap")))
    assert out.get_content_type() == "text/plain" and out["From"] == "Delegate One <delegate@example.org>"


# --- the hard corpus and the templates ------------------------------------------------------------------


def footers_in(message: Message) -> int:
    found = 0
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            try:
                text = payload.decode(part.get_content_charset() or "utf-8", "replace")
            except LookupError:
                text = payload.decode("utf-8", "replace")
            found += "Réunions à Genève" in html.unescape(text)
    return found


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.stem)
@pytest.mark.parametrize("mode", ["plain", "munge", "wrap"])
def test_the_hard_corpus_is_decorated(path: Path, mode: str) -> None:
    decoration = LIST if mode == "plain" else dataclasses.replace(MUNGE, dmarc=mode)
    out = decorate(path.read_bytes(), decoration)
    message = parse(out)
    assert message.get_all("List-Id") == [EXPECTED_FIELDS["List-Id"]]
    assert "[TA-EN]" in header(out, "Subject")[0]
    assert footers_in(message) >= 1
    assert b"\r" not in out.replace(b"\r\n", b"") and b"\n" not in out.replace(b"\r\n", b"")
    added = out.split(b"\r\nList-Id:", 1)[1].split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in added.split(b"\r\n"))


def test_lf_input_comes_out_with_crlf() -> None:
    out = decorate(b"From: a@example.org\nSubject: x\n\nline one\nline two\n", LIST)
    assert b"\r\n\r\nline one\r\nline two\r\n\r\n____" in out


FOOTER_CONTEXT = {
    "list_title": "Technical <Assistance> & Co",
    "list_address": "ta-en@forum.example.org",
    "archive_url": "https://forum.example.org/lists/ta-en/",
    "unsubscribe_url": "https://forum.example.org/unsubscribe/t0k3n?a=1&b=2",
    "protocol_url": "https://forum.example.org/protocol/",
    "request_address": "ta-en-request@forum.example.org",
}


@pytest.mark.parametrize("language", ["en", "fr", "es"])
def test_footer_templates(language: str) -> None:
    def render(name: str, autoescape: bool | Callable[[str | None], bool]) -> str:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(ROOT / "templates" / "mail"),
            autoescape=autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )
        return env.get_template(f"{language}/{name}").render(**FOOTER_CONTEXT)

    html_only = jinja2.select_autoescape(["html"])  # as listserv/mail/templates.py configures it
    text = render("member_footer.txt", html_only)
    html = render("member_footer.html", html_only)
    assert html == render("member_footer.html", False)  # escaped explicitly: never twice, never not at all
    assert text == render("member_footer.txt", False)
    lines = text.splitlines()
    assert set(lines[0]) == {"_"} and "-- " not in lines and 3 <= len(lines) - 1 <= 4
    for value in FOOTER_CONTEXT.values():
        if value != FOOTER_CONTEXT["list_address"]:
            assert value in text
    assert "digest daily" in text and "digest daily" in html
    assert "Technical &lt;Assistance&gt; &amp; Co" in html and "t0k3n?a=1&amp;b=2" in html
    out = parse(decorate(ALTERNATIVE, dataclasses.replace(LIST, footer_text=text, footer_html=html)))
    plain, rich = out.get_payload()
    assert text_of(plain).endswith(text)
    assert html.strip() in text_of(rich)
