"""The SMTP conversation of a transaction with the relay, over a connection smtplib opened.

smtplib's own ``sendmail`` costs twice the CPU per recipient and cannot pipeline; these functions give the
same answers and raise the same exceptions. Without PIPELINING every RCPT waits for its answer
(``stepwise_sendmail``; as ``stepwise_steps``, one thread keeps several connections' batches waiting at
once in ``lockstep``); with it (RFC 2920; Postfix offers it) MAIL, every RCPT and DATA go out in one write
and the replies are read after (``pipelined_sendmail``). A personal copy is one transaction per recipient,
each body written with the next transaction's commands (``personal_steps``), and one thread keeps several
connections busy in ``lockstep``.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Generator, Iterator
from typing import BinaryIO, NamedTuple, TypeVar, cast

Refused = dict[str, tuple[int, bytes]]
MAX_LINE = 8192  # of a reply line, as smtplib allows
T = TypeVar("T")


DOT_AT_LINE_START = re.compile(rb"(?m)^\.")


def stepwise_sendmail(client: smtplib.SMTP, mail_from: str, recipients: list[str], raw: bytes) -> Refused:
    """smtplib's sendmail for a relay without PIPELINING — the same answers and exceptions — with the
    per-recipient step (RCPT, then wait for its answer) at half of smtplib's CPU: it runs once per
    recipient of a fan-out (bench/fanout.py (a))."""
    return finish(stepwise_steps(client, mail_from, recipients, raw))


def stepwise_steps(
    client: smtplib.SMTP, mail_from: str, recipients: list[str], raw: bytes
) -> Generator[None, None, Refused]:
    """``stepwise_sendmail`` as steps: it yields after writing each command, before reading its answer,
    so that ``lockstep`` keeps several connections waiting at once; it returns the refused recipients."""
    lines, send = reply_lines(client), client.sock.sendall
    send(f"MAIL FROM:<{mail_from}>\r\n".encode("ascii"))
    yield
    code, text = read_reply(lines)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, text, mail_from)
    refused: Refused = {}
    for rcpt in recipients:
        send(b"RCPT TO:<" + rcpt.encode("ascii") + b">\r\n")
        yield
        code, text = read_reply(lines)
        if code not in (250, 251):
            refused[rcpt] = (code, text)
    if len(refused) == len(recipients):
        client.rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    send(b"DATA\r\n")
    yield
    code, text = read_reply(lines)
    if code == 354:
        send(wire_form(raw))
        yield
        code, text = read_reply(lines)
        if code == 250:
            return refused
    raise smtplib.SMTPDataError(code, text)


def finish(steps: Generator[None, None, T]) -> T:
    """Run ``steps`` to their end, alone on their connection; what they return."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)


def reply_lines(client: smtplib.SMTP) -> BinaryIO:
    """The connection's buffered reader, the one smtplib's own getreply uses (so both can be mixed)."""
    if client.file is None:
        client.file = client.sock.makefile("rb")
    return client.file


def read_reply(lines: BinaryIO) -> tuple[int, bytes]:
    """One SMTP reply (RFC 5321 §4.2): its code and its text, lines joined by LF, as smtplib's getreply."""
    text = []
    while True:
        line = lines.readline(MAX_LINE + 1)
        if not line:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        if len(line) > MAX_LINE or not line[:3].isdigit():
            raise smtplib.SMTPResponseException(500, b"Line too long or not a reply")
        text.append(line[4:].strip())
        if line[3:4] != b"-":
            return int(line[:3]), b"\n".join(text)


def pipelined_sendmail(client: smtplib.SMTP, mail_from: str, recipients: list[str], raw: bytes) -> Refused:
    """smtplib's sendmail with the commands pipelined (RFC 2920); the same answers and exceptions."""
    lines = reply_lines(client)
    commands = [f"MAIL FROM:<{mail_from}>", *(f"RCPT TO:<{rcpt}>" for rcpt in recipients), "DATA"]
    client.sock.sendall("".join(f"{command}\r\n" for command in commands).encode("ascii"))
    mail_code, mail_text = read_reply(lines)
    refused: Refused = {}
    for rcpt in recipients:
        code, text = read_reply(lines)
        if code not in (250, 251):
            refused[rcpt] = (code, text)
    data_code, data_text = read_reply(lines)
    if mail_code != 250:
        _abandon(client, data_code)
        raise smtplib.SMTPSenderRefused(mail_code, mail_text, mail_from)
    if len(refused) == len(recipients):
        _abandon(client, data_code)
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_code != 354:
        client.rset()
        raise smtplib.SMTPDataError(data_code, data_text)
    client.sock.sendall(wire_form(raw))
    code, text = read_reply(lines)
    if code != 250:
        client.rset()
        raise smtplib.SMTPDataError(code, text)
    return refused


class Personal(NamedTuple):
    """One recipient's transaction of a personal row (a tuple: 200,000 are made for 200 posts)."""

    rcpt: str
    mail_from: str  # the VERP envelope
    token: str


def _envelope(copy: Personal) -> bytes:
    return f"MAIL FROM:<{copy.mail_from}>\r\nRCPT TO:<{copy.rcpt}>\r\nDATA\r\n".encode("ascii")


def wire_form(raw: bytes) -> bytes:
    """DATA as sent: dot-stuffed, ending in CRLF and the final dot."""
    # Most mail has no line starting with a dot: a substring test is a sixth of the regex's scan.
    body = DOT_AT_LINE_START.sub(b"..", raw) if raw.startswith(b".") or b"\n." in raw else raw
    return body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def personal_steps(
    client: smtplib.SMTP, copies: list[tuple[Personal, bytes]], answers: dict[str, tuple[int, bytes]]
) -> Iterator[None]:
    """One transaction per (recipient, wire-form bytes), pipelined across transactions (RFC 2920 §3.1):
    each body goes out in one write with the next transaction's MAIL, RCPT and DATA, so a recipient
    costs one round trip. Each recipient's final answer goes into ``answers`` as soon as it is read.

    A generator that yields after each write, before reading the answers to it: ``lockstep`` runs
    several connections' steps in one thread."""
    lines, send = reply_lines(client), client.sock.sendall
    send(_envelope(copies[0][0]))
    yield
    for index, (copy, wire) in enumerate(copies):
        following = _envelope(copies[index + 1][0]) if index + 1 < len(copies) else b""
        mail, rcpt, data = read_reply(lines), read_reply(lines), read_reply(lines)
        if mail[0] == 250 and rcpt[0] in (250, 251) and data[0] == 354:
            send(wire + following)
            yield
            answers[copy.rcpt] = read_reply(lines)
            continue
        if data[0] == 354:  # DATA accepted although nothing can go: end it empty
            send(b".\r\n")
            read_reply(lines)
        send(b"RSET\r\n" + following)
        yield
        read_reply(lines)
        answers[copy.rcpt] = mail if mail[0] != 250 else rcpt if rcpt[0] not in (250, 251) else data


_DONE = object()


def lockstep(steps: list[Iterator[None]]) -> None:
    """Advance each connection's steps in turn until all are done. A thread that waited for one
    connection's answer often finds the others' already there when it reads them: fewer wake-ups than
    one per transaction (a personal fan-out's CPU went mostly to the kernel switching threads that each
    waited for their own answer; bench/fanout.py (b))."""
    while steps:
        steps = [step for step in steps if next(step, _DONE) is not _DONE]


def _abandon(client: smtplib.SMTP, data_code: int) -> None:
    """The server may have accepted DATA although nothing can be sent: end it empty, then reset."""
    if data_code == 354:
        client.send(b".\r\n")
        client.getreply()
    client.rset()
