"""SMTP abuse against the real ingress over real SMTP on 127.0.0.1 (issue 20, bad input): thousands of idle
connections, command floods, overlong lines, NUL bytes, bare CR and LF, and every end-of-data smuggling
variant. Each attack gets the answer RFC 5321 gives it, and the server keeps serving everyone else.

The ingress does not depend on the database for any of this: the forum runs on SQLite only here.
"""

from __future__ import annotations

import contextlib
import resource
import smtplib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.admin.provision import initialise
from listserv.config import parse_settings
from listserv.store.db import make_engine
from listserv.store.models import Received
from tests.conftest import RunningForum, make_config

pytestmark = pytest.mark.security

LIST = "ta-en@forum.example.org"
SENDER = "ana@example.org"
WAIT = 30.0  # a socket timeout, so that a hung server fails the test instead of hanging it


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """Starts the forum (SQLite) with the given ``smtp`` settings; returns it and its engine."""
    running: list[tuple[RunningForum, Engine]] = []

    def started(database_url: str | None = None, **smtp: Any) -> tuple[RunningForum, Engine]:
        raw = make_config(tmp_path, database_url or f"sqlite:///{tmp_path / 'listserv.db'}")
        raw["smtp"] |= smtp
        settings = parse_settings(raw)
        engine = make_engine(settings.database.url)
        initialise(engine, settings)
        forum = RunningForum(settings, engine).__enter__()
        running.append((forum, engine))
        return forum, engine

    yield started
    for forum, engine in running:
        forum.__exit__(None, None, None)
        engine.dispose()


def connect(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return client


def replies_until_closed(client: socket.socket) -> list[bytes]:
    """Reply lines until the server closes (a reset: it closed with our flood still unread)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := client.recv(65536):
            data += chunk
    return data.split(b"\r\n")[:-1]


def send_quietly(client: socket.socket, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # cut off while still sending
        client.sendall(data)


def talk(client: socket.socket, data: bytes) -> list[bytes]:
    """Send ``data`` (pipelined), then QUIT; every reply line the server wrote until it closed."""
    client.sendall(data + b"QUIT\r\n")
    return replies_until_closed(client)


def post(subject: str) -> bytes:
    return (
        f"From: Ana <{SENDER}>\r\nTo: {LIST}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.org>\r\n\r\nHello.\r\n"
    ).encode()


def send_post(port: int, subject: str = "Still served") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
        client.sendmail(SENDER, [LIST], post(subject))


def stored(engine: Engine) -> list[Received]:
    with Session(engine) as session:
        return list(session.scalars(select(Received).order_by(Received.id)))


def envelope(data: bytes) -> bytes:
    return f"EHLO client.example.org\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<{LIST}>\r\nDATA\r\n".encode() + data


# --- idle connections ------------------------------------------------------------------------------------


def test_two_thousand_idle_connections_leave_others_served(start: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < hard:  # the test's 2,000 ends and the server's 2,000
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    forum, engine = start()  # the defaults: smtp.max_connections 2,500
    idle = []
    try:
        for _ in range(2000):
            idle.append(connect(forum.port))
        for client in idle:
            assert client.recv(3) == b"220"
        send_post(forum.port)
    finally:
        for client in idle:
            client.close()
    assert [row.rcpt_tos for row in stored(engine)] == [[LIST]]


def test_beyond_the_cap_a_connection_is_told_421_and_closed(start: Any) -> None:
    forum, engine = start(max_connections=20)
    idle = [connect(forum.port) for _ in range(20)]
    for client in idle:
        assert client.recv(3) == b"220"
    with connect(forum.port) as refused:
        [answer] = replies_until_closed(refused)
    assert answer.startswith(b"421 4.7.0 ") and b"Too many connections" in answer
    for client in idle:
        client.sendall(b"QUIT\r\n")  # the server sees them go before the next one comes
        replies_until_closed(client)
        client.close()
    send_post(forum.port)  # places freed are served again
    assert len(stored(engine)) == 1


def test_an_idle_session_is_told_421_and_closed(start: Any) -> None:
    forum, _ = start(idle_timeout=0.5)
    with connect(forum.port) as client:
        lines = replies_until_closed(client)  # no command sent: the server closes
    assert lines[0].startswith(b"220") and lines[-1] == b"421 4.4.2 Idle for too long; closing connection"
    send_post(forum.port)


# --- floods ----------------------------------------------------------------------------------------------


FLOODS = [
    ("noop", b"NOOP\r\n", 101, b"421 4.7.0 NOOP sent too many times"),
    ("rset", b"RSET\r\n", 1001, b"421 4.7.0 RSET sent too many times"),
    ("help", b"HELP\r\n", 21, b"421 4.7.0 HELP sent too many times"),
    ("unknown", b"XYZZY\r\n", 5, b"502 5.5.1 Too many unrecognized commands, goodbye."),
    ("blank", b"\r\n", 20, b"421 4.7.0 Too many errors; closing connection"),
    ("bad-mail", b"MAIL FROM:<not an address\r\n", 20, b"421 4.7.0 Too many errors; closing connection"),
    ("relay-rcpt", b"RCPT TO:<x@example.net>\r\n", 20, b"421 4.7.0 Too many errors; closing connection"),
]


@pytest.mark.parametrize(
    ("flood", "limit", "last"), [case[1:] for case in FLOODS], ids=[c[0] for c in FLOODS]
)
def test_a_command_flood_is_cut_off(start: Any, flood: bytes, limit: int, last: bytes) -> None:
    forum, engine = start()
    opening = b"EHLO client.example.org\r\nMAIL FROM:<ana@example.org>\r\n" * (b"RCPT" in flood)
    with connect(forum.port) as client:  # exactly up to the limit: every reply arrives, the last one says why
        client.sendall(opening + flood * limit)
        assert replies_until_closed(client)[-1] == last
    with connect(forum.port) as client:  # thousands: cut off early (the kernel may reset: flood unread)
        sending = threading.Thread(target=send_quietly, args=(client, opening + flood * 5000))
        sending.start()
        lines = replies_until_closed(client)
        sending.join()
    assert len(lines) < limit + 20, f"{len(lines)} replies: not cut off at the limit"
    send_post(forum.port)
    assert len(stored(engine)) == 1


# --- overlong lines, NUL, bare CR and LF -----------------------------------------------------------------


def test_overlong_lines_get_500_and_the_session_goes_on(start: Any) -> None:
    forum, engine = start(max_message_bytes=5_000_000)
    with connect(forum.port) as client:
        lines = talk(
            client,
            b"EHLO " + b"h" * 3000 + b"\r\n"  # a command over 512 octets
            + b"NOOP " + b"n" * 3_000_000 + b"\r\n"  # over the stream's line limit (2 MiB)
            + envelope(b"Subject: long\r\n\r\n" + b"d" * 3_000_000 + b"\r\n.\r\n")  # a data line over 2 MiB
            + envelope(post("after the long lines") + b".\r\n"),
        )  # fmt: skip
    assert lines[1:3] == [b"500 Command line too long", b"500 Command line too long"]
    assert b"500 Line too long (see RFC5321 4.5.3.1.6)" in lines
    assert sum(line.startswith(b"250 2.0.0 Accepted") for line in lines) == 1
    assert [b"after the long lines" in row.raw for row in stored(engine)] == [True]


def test_a_message_over_the_size_limit_gets_552(start: Any) -> None:
    forum, engine = start(max_message_bytes=10_000)
    with connect(forum.port) as client:
        lines = talk(client, envelope(b"Subject: big\r\n\r\n" + b"0123456789\r\n" * 2000 + b".\r\n"))
    assert b"552 Error: Too much mail data" in lines
    assert stored(engine) == []


def test_nul_bytes(start: Any, db_url: str) -> None:
    """A NUL in the sender, the Message-ID or the body: refused, or stored (also where PostgreSQL's text
    columns refuse NUL)."""
    forum, engine = start(database_url=db_url)
    with connect(forum.port) as client:
        lines = talk(
            client,
            b"EHLO client.example.org\r\nMAIL FROM:<ana\x00@example.org>\r\n"
            + envelope(b"Subject: nul\x00here\r\nMessage-ID: <a\x00b@x>\r\n\r\nbody \x00 with NUL\r\n.\r\n"),
        )
    assert b"553 5.1.7 Sender address contains control characters" in lines
    [row] = stored(engine)
    assert "\x00" not in row.message_id
    assert b"body \x00 with NUL" in row.raw  # stored as sent: the parsers read past it (tests/test_fuzz_*)


def test_bare_cr_and_lf_in_data_are_stored_as_crlf(start: Any) -> None:
    forum, engine = start()
    with connect(forum.port) as client:
        lines = talk(client, envelope(b"Subject: bare\r\n\r\none\rtwo\nthree\r\n.\r\n"))
    assert sum(line.startswith(b"250 2.0.0 Accepted") for line in lines) == 1
    [row] = stored(engine)
    assert row.raw.endswith(b"\r\n\r\none\r\ntwo\r\nthree\r\n")


# --- SMTP smuggling --------------------------------------------------------------------------------------

SMUGGLED = (
    b"MAIL FROM:<admin@forum.example.org>\r\nRCPT TO:<ta-fr@forum.example.org>\r\nDATA\r\n"
    b"From: admin@forum.example.org\r\nSubject: smuggled\r\n\r\nforged\r\n"
)
FAKE_ENDS = [
    b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r\n.\r", b"\n.\r", b"\r.\n", b"\r.\r\n",
    b"\r\n.\r\r\n", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n. \r\n",
]  # fmt: skip


@pytest.mark.parametrize("fake_end", FAKE_ENDS, ids=[repr(end)[2:-1] for end in FAKE_ENDS])
def test_one_data_is_never_split_into_two_messages(start: Any, fake_end: bytes) -> None:
    forum, engine = start()
    data = b"From: Ana <ana@example.org>\r\nSubject: carrier\r\n\r\nbefore" + fake_end + SMUGGLED + b".\r\n"
    with connect(forum.port) as client:
        lines = talk(client, envelope(data))
    assert sum(line.startswith(b"250 2.0.0 Accepted") for line in lines) == 1, lines
    assert not any(
        line.startswith(b"354") for line in lines[lines.index(b"354 End data with <CR><LF>.<CR><LF>") + 1 :]
    )
    [row] = stored(engine)
    assert (row.mail_from, row.rcpt_tos) == (SENDER, [LIST])
    assert b"forged" in row.raw and b"before" in row.raw  # the would-be second message is text of the first
    assert row.raw.count(b"\r") == row.raw.count(b"\r\n") == row.raw.count(b"\n"), "bare CR or LF stored"
