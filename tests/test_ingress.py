"""The SMTP ingress over real SMTP on 127.0.0.1: RCPT answers, size limits, durable byte-for-byte storage,
Message-IDs, duplicates, storage failure. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
import socket
from textwrap import dedent

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from listserv.store.models import Received, Route
from tests.conftest import RunningForum, wait_processed


def crlf(message: str) -> bytes:
    return dedent(message).lstrip().replace("\n", "\r\n").encode("utf-8")


POST = crlf("""
    From: Ana Pérez <ana@example.org>
    To: ta-en@forum.example.org
    Subject: Capacity building in customs
    Message-ID: <first-post@example.org>
    Date: Sat, 21 Nov 2026 10:00:00 +0100
    MIME-Version: 1.0
    Content-Type: text/plain; charset=utf-8
    Content-Transfer-Encoding: 8bit

    Dear colleagues, ¿cómo organizan la formación?
    .a line starting with a dot
    """)


def stored(engine: Engine) -> list[Received]:
    with Session(engine) as session:
        return list(session.scalars(select(Received).order_by(Received.id)))


def routes(engine: Engine) -> list[tuple[str | None, str, str | None, str]]:
    with Session(engine) as session:
        rows = session.scalars(select(Route).order_by(Route.id))
        return [(r.list_name, r.kind, r.detail, r.message_id) for r in rows]


def rcpt_answer(port: int, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.mail("ana@example.org")
        return client.rcpt(address)


@pytest.mark.parametrize(
    ("address", "code", "words"),
    [
        ("ta-en@forum.example.org", 250, b"OK"),
        ("ta-fr-moderate+K7QX-M2PA@forum.example.org", 250, b"OK"),
        ("ta-es-request@forum.example.org", 250, b"OK"),
        ("postmaster@forum.example.org", 250, b"OK"),
        ("nobody@forum.example.org", 550, b"no such list"),
        ("ta-de@forum.example.org", 550, b"no such list"),
        ("x@example.net", 550, b"Relaying denied"),
        ("ta-en@forum.example.org.evil.net", 550, b"Relaying denied"),
    ],
)
def test_rcpt_is_classified(forum: RunningForum, address: str, code: int, words: bytes) -> None:
    answer = rcpt_answer(forum.port, address)
    assert answer[0] == code and words in answer[1]


def test_a_post_is_stored_byte_for_byte_then_routed(forum: RunningForum, engine: Engine) -> None:
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        client.sendmail("ana@example.org", ["ta-en@forum.example.org", "ta-fr-owner@forum.example.org"], POST)
    wait_processed(engine)
    [row] = stored(engine)
    assert row.raw == POST  # dot-unstuffed, otherwise untouched
    assert row.mail_from == "ana@example.org"
    assert row.rcpt_tos == ["ta-en@forum.example.org", "ta-fr-owner@forum.example.org"]
    assert row.message_id == "<first-post@example.org>"
    assert row.state == "processed"
    assert routes(engine) == [
        ("ta-en", "post", None, "<first-post@example.org>"),
        ("ta-fr", "owner", None, "<first-post@example.org>"),
    ]


def test_the_250_reply_says_what_happens(forum: RunningForum) -> None:
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        client.ehlo()
        client.mail("ana@example.org")
        client.rcpt("ta-en@forum.example.org")
        code, reply = client.data(POST)
    assert code == 250 and b"after moderation" in reply


def test_a_message_without_message_id_gets_one(forum: RunningForum, engine: Engine) -> None:
    bare = POST.replace(b"Message-ID: <first-post@example.org>\r\n", b"")
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        client.sendmail("ana@example.org", ["ta-en@forum.example.org"], bare)
    wait_processed(engine)
    [row] = stored(engine)
    assert row.message_id.endswith("@forum.example.org>")
    assert row.raw == f"Message-ID: {row.message_id}\r\n".encode() + bare


def test_a_resent_message_is_acknowledged_but_handled_once(forum: RunningForum, engine: Engine) -> None:
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        for _ in range(3):
            client.sendmail("ana@example.org", ["ta-en@forum.example.org"], POST)
        client.sendmail("ana@example.org", ["ta-fr@forum.example.org"], POST)  # another list: its own
    wait_processed(engine)
    assert len(stored(engine)) == 4
    assert routes(engine) == [
        ("ta-en", "post", None, "<first-post@example.org>"),
        ("ta-fr", "post", None, "<first-post@example.org>"),
    ]


def test_two_addresses_of_one_list_and_kind_in_one_message_are_one_route(
    forum: RunningForum, engine: Engine
) -> None:
    # Routes are inserted at once, not through the unit of work: the second address must not be a
    # second route (the unique key would refuse it and the message would fail), as before.
    codes = ["ta-en-moderate+K7QX-M2PA@forum.example.org", "ta-en-moderate+ZT4H-D9QX@forum.example.org"]
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        client.sendmail("ana@example.org", codes, POST)
    wait_processed(engine)
    [row] = stored(engine)
    assert row.state == "processed" and row.error is None
    assert routes(engine) == [("ta-en", "moderate", "K7QX-M2PA", "<first-post@example.org>")]


def test_size_is_advertised_and_enforced(forum: RunningForum, settings_limit: int) -> None:
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == str(settings_limit)
        code, _ = client.mail("ana@example.org", [f"SIZE={settings_limit + 1}"])
        assert code == 552


def test_oversize_data_without_size_gets_552_and_the_session_goes_on(
    forum: RunningForum, engine: Engine, settings_limit: int
) -> None:
    big = POST + b"x" * 998 + b"\r\n"
    big += (b"y" * 998 + b"\r\n") * (settings_limit // 1000)
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        client.ehlo()
        client.mail("ana@example.org")  # no SIZE= declared: caught while reading DATA
        client.rcpt("ta-en@forum.example.org")
        code, reply = client.data(big)
        assert code == 552, reply
        client.rset()
        client.sendmail("ana@example.org", ["ta-en@forum.example.org"], POST)
    wait_processed(engine)
    assert [row.message_id for row in stored(engine)] == ["<first-post@example.org>"]


def test_storage_failure_answers_451_and_the_server_keeps_serving(
    forum: RunningForum, engine: Engine
) -> None:
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE received RENAME TO received_away"))
    try:
        with smtplib.SMTP("127.0.0.1", forum.port) as client:
            client.ehlo()
            client.mail("ana@example.org")
            client.rcpt("ta-en@forum.example.org")
            code, reply = client.data(POST)
        assert code == 451 and b"try again later" in reply
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE received_away RENAME TO received"))
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        client.sendmail("ana@example.org", ["ta-en@forum.example.org"], POST)
    wait_processed(engine)
    assert len(stored(engine)) == 1


def test_not_an_open_relay_even_mixed_with_a_list(forum: RunningForum, engine: Engine) -> None:
    with smtplib.SMTP("127.0.0.1", forum.port) as client:
        refused = client.sendmail("ana@example.org", ["ta-en@forum.example.org", "victim@example.net"], POST)
    assert refused == {
        "victim@example.net": (
            550,
            b"5.7.1 Relaying denied: this server accepts mail only for @forum.example.org",
        )
    }
    wait_processed(engine)
    assert stored(engine)[0].rcpt_tos == ["ta-en@forum.example.org"]


def test_garbage_commands_get_answers_not_a_crash(forum: RunningForum) -> None:
    with socket.create_connection(("127.0.0.1", forum.port), timeout=5) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        for line in (
            b"HELO\r\n",
            b"MAIL FROM:<<<>\r\n",
            b"DATA\r\n",
            b"\xff\xfe\x00\r\n",
            b"X" * 600 + b"\r\n",
        ):
            raw.sendall(line)
            assert reader.readline()[:1] in (b"5", b"4")
    assert rcpt_answer(forum.port, "ta-en@forum.example.org")[0] == 250


@pytest.fixture
def settings_limit(settings) -> int:  # type: ignore[no-untyped-def]
    return settings.smtp.max_message_bytes
