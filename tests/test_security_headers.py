"""Header injection through every field a user controls (issue 20, item 4), end to end: display names
(an encoded From, a member's name, a nominee's by mail and on the web, a guest's), subjects of posts
by mail and by the web, and of topic proposals, carrying encoded CR/LF, raw and encoded U+2028 and
U+0085, and overlong words.
Every held item is approved, then every message the real sink received is read back: none gains a
header, a recipient, or a line over 998 octets."""

from __future__ import annotations

import base64
import re
import smtplib
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.policy import compat32, default
from email.utils import formatdate, getaddresses, make_msgid

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.mail.addresses import encoded_words_quoted
from listserv.store.models import Held
from tests.conftest import RunningForum, Sink, add_members, set_password, wait_for, wait_processed
from tests.test_moderation import CODE, live_outbox_settles
from tests.test_web_reply import Browser

pytestmark = pytest.mark.security
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # headers are not storage
DOMAIN = "forum.example.org"
AMINA, KOFI, FOCAL = "amina@example.org", "kofi@example.org", "punto.focal@minrel.cl"
EVIL = "evil.example"
INJECTED = f"Bcc: x@{EVIL}"
ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply-to", "sender", "resent-to", "resent-cc")
FORBIDDEN_HEADERS = {"bcc", "x-injected", "resent-to", "resent-cc"}


def q_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


# What an attacker writes where a name or a subject goes (as header text, already encoded where shown).
HOSTILE = [
    f"=?utf-8?q?Hello=0D=0A{INJECTED.replace(' ', '_')}=0D=0AX-Injected:_1?=",  # encoded CR LF
    q_word(f"Hello\r\n\r\nX-Injected: 1\r\n{INJECTED}"),  # an empty line: the body would start early
    q_word(f"Hello\u2028{INJECTED}\u2028X-Injected: 1"),  # U+2028 LINE SEPARATOR, encoded
    q_word(f"Hello\x85{INJECTED}\x85X-Injected: 1"),  # U+0085 NEXT LINE, encoded
    f"Hello\u2028{INJECTED}\u0085X-Injected: 1",  # both raw, in an 8-bit header
    q_word("W" * 1500),  # one word too long for any line
]


def send_raw(port: int, sender: str, to: str, headers: str, body: str) -> str:
    message_id = make_msgid(domain="example.org")
    raw = (
        f"{headers}\r\nTo: {to}\r\nMessage-ID: {message_id}\r\nDate: {formatdate()}\r\nMIME-Version: 1.0\r\n"
    )
    raw += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    raw += body.replace("\n", "\r\n")
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail(sender, [to], raw.encode("utf-8"))
    return message_id


@pytest.fixture
def people(relayed_engine: Engine, relayed_settings: Settings) -> None:
    add_members(
        relayed_engine,
        relayed_settings,
        {"email": AMINA, "name": f"Amina\u2028{INJECTED}", "lists": "ta-en;ta-es"},
        {"email": KOFI, "name": "Kofi Mensah", "lists": "ta-en"},
        {"email": FOCAL, "name": "Paz Rojas", "country": "CL", "lists": "ta-es", "role": "focal_point"},
    )
    set_password(relayed_engine, AMINA)
    set_password(relayed_engine, FOCAL)


def held_count(engine: Engine, state: str = "held") -> int:
    """Held items of this state; translation requests wait for a translated text, not an approval."""
    with Session(engine) as session:
        chosen = select(func.count()).select_from(Held).where(Held.state == state, Held.kind != "translation")
        return session.scalar(chosen) or 0


def approve_everything(live: RunningForum, sink: Sink, engine: Engine) -> None:
    """Reply with an empty body (approve) to every notice whose item is still held, until none is."""
    answered: set[str] = set()

    def round_of_replies() -> bool:
        wait_processed(engine)
        live_outbox_settles(engine)
        for moderator in ("mod-en@forum.example.org", "mod-es@forum.example.org"):  # not the translators
            for notice in sink.to(moderator):
                found = CODE.search(str(notice["Subject"]))
                if found and found.group(1) not in answered:
                    answered.add(found.group(1))
                    send_raw(live.port, moderator, str(notice["Reply-To"]), f"From: {moderator}", "\n")
        wait_processed(engine)
        return held_count(engine) == 0

    try:
        wait_for(round_of_replies, timeout=60, what="every held item approved")
    except AssertionError:
        with Session(engine) as session:
            for held in session.scalars(select(Held).where(Held.state == "held")):
                print("STILL", held.id, held.kind, held.list_name, repr(held.subject)[:80])
        for _, rcpts, message in sink.messages:
            print("SINK", rcpts, repr(str(message["Subject"]))[:100])
        raise
    live_outbox_settles(engine)


def decoded(value: str) -> str:
    """A header value as a mail client shows it: unfolded, its encoded words decoded."""
    unfolded = re.sub(r"\r?\n[ \t]", " ", value)
    try:
        return str(make_header(decode_header(unfolded)))
    except (LookupError, UnicodeError, ValueError, HeaderParseError):
        return unfolded


def check_message(raw: bytes, recipients: list[str]) -> list[str]:
    """What is wrong with one outgoing message, by the rules of this test."""
    problems = []
    long_lines = [len(line) for line in raw.split(b"\n") if len(line.rstrip(b"\r")) > 998]
    if long_lines:
        problems.append(f"lines over 998 octets: {long_lines}")
    if any(EVIL in rcpt for rcpt in recipients):
        problems.append(f"envelope recipient gained: {recipients}")
    fields = BytesParser(policy=compat32).parsebytes(raw, headersonly=True).items()  # as on the wire
    names = [name.lower() for name, _ in fields]
    problems += [f"header {name} present" for name in sorted(FORBIDDEN_HEADERS.intersection(names))]
    for once in ("from", "message-id", "date"):
        if names.count(once) != 1:
            problems.append(f"{names.count(once)} {once} header(s)")
    for name, value in fields:
        if name.lower() in ADDRESS_HEADERS:
            addresses = [address for _, address in getaddresses([encoded_words_quoted(str(value))])]
            if name.lower() == "from" and len(addresses) != 1:  # who wrote it may be anyone; one
                problems.append(f"From names {len(addresses)} addresses: {addresses}")
            elif name.lower() != "from" and any(EVIL in address for address in addresses):
                problems.append(f"{name} gained an address: {addresses}")
        if any(char in decoded(str(value)) for char in "\r\n\u2028\u2029\x85"):
            problems.append(f"{name} shows a line break: {decoded(str(value))[:80]!r}")
    return problems


@SQLITE_ONLY
@pytest.mark.usefixtures("people")
def test_no_user_controlled_field_adds_a_header_a_recipient_or_a_long_line(
    live: RunningForum, sink: Sink, relayed_engine: Engine
) -> None:
    for number, hostile in enumerate(HOSTILE):  # a member's post: the From name and the Subject
        send_raw(
            live.port, AMINA, f"ta-en@{DOMAIN}", f"From: {hostile} <{AMINA}>\r\nSubject: {hostile}", "Hi.\n"
        )
        proposal = f"From: {AMINA}\r\nSubject: {hostile}"  # a topic proposal's title
        send_raw(live.port, AMINA, f"ta-en-propose@{DOMAIN}", proposal, f"Proposal {number}.\n")
    approve_everything(live, sink, relayed_engine)
    [thread, *_] = sink.wait_to(KOFI, list_copies=True)
    for line in (f"Grace\u2028{INJECTED}\u0085X-Injected: 1", "G" * 1500):  # a guest's name
        body = f"invite grace{len(line)}@outside.example {line}\n"
        headers = f"From: {AMINA}\r\nSubject: Re: x\r\nIn-Reply-To: {thread['Message-ID']}"
        send_raw(live.port, AMINA, f"ta-en-owner@{DOMAIN}", headers, body)
        nomination = f"designar nueva{len(line)}@minrel.cl {line}\n"  # a focal point's nominee
        send_raw(live.port, FOCAL, f"ta-es-owner@{DOMAIN}", f"From: {FOCAL}\r\nSubject: x", nomination)
    amina = Browser(live.forum.web_port).sign_in(AMINA)  # the web: a subject field takes anything
    for subject in (
        f"Web\r\n{INJECTED}\r\nX-Injected: 1",
        f"Web\u2028{INJECTED}\x85X-Injected: 1",
        "S" * 1500,
    ):
        status, _ = amina.post("/lists/ta-en/new", {"subject": subject, "text": "From the web."})
        assert status == 200
    focal = Browser(live.forum.web_port).sign_in(FOCAL)  # the web's nominee name field
    for number, name in enumerate(
        (f"Ana\r\n{INJECTED}\r\nX-Injected: 1", f"Ana\u2028{INJECTED}", "N" * 1500)
    ):
        form = {"verb": "nominate", "list": "ta-es", "email": f"web{number}@minrel.cl", "name": name}
        assert focal.post("/focal-point", form)[0] == 200
    approve_everything(live, sink, relayed_engine)
    assert held_count(relayed_engine, "approved") >= 2 * len(HOSTILE) + 7
    problems = {}
    for (_, recipients, _), raw in zip(sink.messages, sink.raw, strict=True):
        found = check_message(raw, recipients)
        if found:
            subject = BytesParser(policy=default).parsebytes(raw, headersonly=True)["Subject"]
            problems[f"{recipients} {str(subject)[:60]!r}"] = found
    assert len(sink.messages) > 40  # notices, acknowledgements, copies, welcomes, invitations
    assert problems == {}, "\n".join(f"{key}: {value}" for key, value in problems.items())


def test_the_check_sees_each_kind_of_injection() -> None:
    """The rules above catch what they look for (else the end-to-end test could never fail)."""
    clean = b"From: a@example.org\r\nDate: x\r\nMessage-ID: <1@x>\r\nSubject: hi\r\n\r\nbody\r\n"
    assert check_message(clean, ["k@example.org"]) == []
    injected = clean.replace(b"Subject: hi", b"Subject: hi\r\nBcc: x@evil.example")
    assert check_message(injected, ["k@example.org"]) == [
        "header bcc present",
        "Bcc gained an address: ['x@evil.example']",
    ]
    assert check_message(clean, [f"x@{EVIL}"]) == [f"envelope recipient gained: ['x@{EVIL}']"]
    assert check_message(clean.replace(b"body", b"b" * 999), ["k@example.org"]) == [
        "lines over 998 octets: [1000]"
    ]
    early = clean.replace(b"Subject: hi", b"Subject: hi\r\n")
    assert "1 message-id header(s)" not in check_message(early, [])  # the body starting early is seen:
    assert check_message(clean.replace(b"Date: x\r\n", b"\r\nDate: x\r\n"), []) == [
        "0 message-id header(s)",
        "0 date header(s)",
    ]
    separator = "Subject: =?utf-8?b?" + base64.b64encode("hi\u2028there".encode()).decode() + "?="
    assert check_message(clean.replace(b"Subject: hi", separator.encode()), [])[0].startswith("Subject shows")
