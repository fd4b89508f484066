"""The hard-message corpus (tests/messages/, see its README): parsing never raises and the ingress
stores every one byte for byte over real SMTP."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.mail.message import ensure_message_id, find_message_id, parse_post
from listserv.store.models import Received
from tests.conftest import RunningForum, wait_processed

CORPUS = sorted((Path(__file__).parent / "messages").glob("*.eml"))


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.stem)
def test_parsing_never_raises(path: Path) -> None:
    raw, _ = ensure_message_id(path.read_bytes(), "forum.example.org")
    post = parse_post(raw)
    assert post.message_id == find_message_id(raw)
    assert "\x00" not in post.subject + post.text
    assert all("/" not in attachment.filename for attachment in post.attachments)


def wire_form(raw: bytes) -> bytes:
    """What an MTA would send: CRLF line ends and a final line end."""
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"\r\n".join(lines).rstrip(b"\r\n") + b"\r\n"


def test_ingress_stores_every_hard_message(forum: RunningForum, engine: Engine) -> None:
    sent = {}
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        for path in CORPUS:
            raw = wire_form(path.read_bytes())
            client.sendmail("delegate@example.org", ["ta-en@forum.example.org"], raw)
            sent[path.stem] = raw
    wait_processed(engine)
    with Session(engine) as session:
        rows = session.scalars(select(Received).order_by(Received.id)).all()
    assert len(rows) == len(sent)
    for (name, raw), row in zip(sent.items(), rows, strict=True):
        assert row.state == "processed", (name, row.error)
        assert row.raw.endswith(raw), name  # unchanged, a Message-ID prepended where there was none


def test_a_decoded_post_has_the_fields_rules_need() -> None:
    post = parse_post((Path(__file__).parent / "messages" / "fr-qp-subject.eml").read_bytes())
    assert post.sender.endswith("@example.org")
    assert any(ch in post.subject for ch in "éèàç")
    assert post.date is not None and post.date.tzinfo is not None


def test_raw_utf8_attachment_name_beside_other_non_ascii_does_not_raise() -> None:
    raw = (
        b"From: a@example.org\r\nSubject: caf\xc3\xa9 \xef\xbf\xbd\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--XX\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="caf\xc3\xa9.pdf"\r\n\r\nabc\r\n--XX--\r\n'
    )
    post = parse_post(raw)
    assert post.subject == "café \ufffd"
    assert post.attachments[0].filename.endswith(".pdf")
