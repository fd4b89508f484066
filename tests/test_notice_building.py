"""Every notice builds, whatever the post: the corpus of hard messages and the shapes the trust issue
found (a gb2312 subject split across encoded words, a line over 998 octets, an endless subject)
go through the moderators' notice, the members' decorated copy and both digest formats; each output
parses and keeps SMTP's line limit (RFC 5321 §4.5.3.1.6: 998 octets + CRLF)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from digests import build_mime_digest, build_plain_digest
from digests.issue import read_message
from listserv.admin.provision import initialise
from listserv.config import Settings, parse_settings
from listserv.forum import build_parts
from listserv.mail.addresses import Kind
from listserv.mail.message import parse_post
from listserv.outgoing.decorate import decorate
from listserv.store.db import make_engine
from listserv.store.models import ArchivedPost, Held, Outbox, Received, Route
from tests.conftest import make_config
from tests.test_digests import FIRST, ISSUE, TEMPLATES, digest_post

MESSAGES = Path(__file__).parent / "messages"
LIMIT = 998
GB2312_SUBJECT = (
    b"=?gb2312?B?ztKw0b61zbfArb380KmjrMTjw8e/tL+01eK49srHyrLDtIzCo6zV4g==?=\r\n"
    b" =?gb2312?B?1tazobrP19TIu8nZsrvBy8TayeQ=?="
)


def shaped(name: str, subject: bytes, body: bytes, *extra: bytes) -> tuple[str, bytes]:
    head = [b"From: Ana <ana@example.org>", b"To: ta-en@forum.example.org", b"Subject: " + subject]
    head += [b"Message-ID: <" + name.encode() + b"@example.org>", *extra]
    return name, b"\r\n".join(head) + b"\r\n\r\n" + body


SHAPES = [
    shaped("gb2312-split", GB2312_SUBJECT, b"body\r\n"),
    shaped("long-line", b"A long line", b"x" * 5000 + b"\r\nend\r\n"),
    shaped("endless-subject", b"S" * 3000, b"body\r\n"),
    shaped("control-subject", b"Bell\x07 and escape\x1b[31m", b"body\r\n"),
    shaped("encoded-from-attack", b"x", b"body\r\n"),
]
CORPUS = [(path.stem, path.read_bytes()) for path in sorted(MESSAGES.glob("*.eml"))] + SHAPES


def assert_sendable(raw: bytes, what: str) -> None:
    longest = max(len(line) for line in raw.replace(b"\r\n", b"\n").split(b"\n"))
    assert longest <= LIMIT, f"{what}: a line of {longest} octets"
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    for part in parsed.walk():  # every part can be read back
        part.get_payload(decode=True)


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_the_moderators_notice_builds_and_keeps_the_line_limit(
    name: str, raw: bytes, settings: Settings, engine: Engine
) -> None:
    parts = build_parts(settings)
    post = parse_post(raw)
    with Session(engine) as session, session.begin():
        received = Received(rcpt_tos=["ta-en@forum.example.org"], message_id=f"<{name}@x>", raw=raw)
        session.add(received)
        session.flush()
        route = Route(received_id=received.id, list_name="ta-en", kind=Kind.POST, message_id=f"<{name}@x>")
        session.add(route)
        session.flush()
        parts.moderation.hold(session, received, post, route, [])
    with Session(engine) as session:
        assert session.scalars(select(Held)).one().state == "held"
        notices = session.scalars(select(Outbox)).all()
    assert notices, f"{name}: no notice queued"
    for notice in notices:
        assert_sendable(notice.raw, f"{name} → {notice.purpose}")


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_the_members_copy_keeps_the_line_limit(name: str, raw: bytes, settings: Settings) -> None:
    publisher = build_parts(settings).publisher
    post = ArchivedPost(list_name="ta-en", message_id=f"<{name}@x>", raw=raw)
    assert_sendable(decorate(raw, publisher.decoration(settings.lists["ta-en"], post)), name)


def test_both_digests_keep_the_line_limit() -> None:
    posts = tuple(
        replace(digest_post(FIRST, number, 8), message_id=f"<{name}@x>", raw=raw, text=read_message(raw)[1])
        for number, (name, raw) in enumerate(CORPUS)
    )
    issue = replace(ISSUE, posts=posts)
    assert_sendable(build_mime_digest(issue, TEMPLATES), "MIME digest")
    assert_sendable(build_plain_digest(issue, TEMPLATES), "plain digest")


def test_an_arabic_notice_says_it_reads_right_to_left(tmp_path: Path, db_url: str) -> None:
    """Plain text has no direction; clients guess it per paragraph, so lines opening with an address or
    a code would run left to right. Arabic notices carry the same text as HTML marked dir="rtl"."""
    raw = make_config(tmp_path, db_url, languages=["en", "fr", "es", "ar"])
    settings = parse_settings(raw)
    engine = make_engine(settings.database.url)
    initialise(engine, settings)
    notifier = build_parts(settings).notifier
    with Session(engine) as session, session.begin():
        for list_name in ("ta-ar", "ta-en"):
            notifier.send(session, "sender_held.txt", list_name, ["ana@example.org"], {"subject": "ميزانية"})
    with Session(engine) as session:
        arabic, english = (
            email.message_from_bytes(row.raw, policy=email.policy.default)
            for row in session.scalars(select(Outbox).order_by(Outbox.id))
        )
    engine.dispose()
    html = arabic.get_body(("html",))
    assert html is not None and 'dir="rtl"' in html.get_content()
    assert arabic.get_body(("plain",)).get_content().strip() in html.get_content().replace("&quot;", '"')
    assert english.get_body(("html",)) is None
