"""Handing mail to the relay (or, with no relay configured, to a local Maildir).

One SMTP connection per sending thread, kept open between transactions: a new connection per batch
costs more than the batch. smtplib rather than aiosmtplib: per recipient it costs ~60 µs of CPU
against ~150 µs (measured here), and batches run in a few threads anyway. When the relay offers
PIPELINING (RFC 2920; Postfix does), MAIL, every RCPT and DATA go out in one write and the replies are
read after: one round trip per batch instead of one per recipient. A connection idle for a while is
checked with NOOP before use, so a relay's idle timeout never fails a batch.

With ``relay.starttls`` the connection is upgraded before anything else (a relay that does not offer
STARTTLS is an error, never a silent fallback to plain text) and the certificate checked unless
``tls_verify: false``; with ``username`` it logs in (SMTP AUTH) over that connection. Every message is
signed here (``signing.py``) when DKIM is configured: this is where bytes leave.
"""

from __future__ import annotations

import contextlib
import random
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from listserv.config import RelayConfig
from listserv.outgoing.personal import personal_copy
from listserv.outgoing.signing import Signer

IDLE_CHECK_SECONDS = 20.0
FIRST_RETRY_SECONDS = 60
MAX_RETRY_SECONDS = 3600
Refused = dict[str, tuple[int, bytes]]
MAX_LINE = 8192  # of a reply line, as smtplib allows


def backoff(attempts: int) -> timedelta:
    """1 min, 2, 4 … up to an hour, ±20 %: retries after a relay outage don't arrive in step."""
    seconds = min(FIRST_RETRY_SECONDS * 2**attempts, MAX_RETRY_SECONDS)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


DOT_AT_LINE_START = re.compile(rb"(?m)^\.")


def stepwise_sendmail(client: smtplib.SMTP, mail_from: str, recipients: list[str], raw: bytes) -> Refused:
    """smtplib's sendmail for a relay without PIPELINING — the same answers and exceptions — with the
    per-recipient step (RCPT, then wait for its answer) at half of smtplib's CPU: it runs once per
    recipient of a fan-out (bench/fanout.py (a))."""
    lines, send = reply_lines(client), client.sock.sendall
    send(f"MAIL FROM:<{mail_from}>\r\n".encode("ascii"))
    code, text = read_reply(lines)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, text, mail_from)
    refused: Refused = {}
    for rcpt in recipients:
        send(b"RCPT TO:<" + rcpt.encode("ascii") + b">\r\n")
        code, text = read_reply(lines)
        if code not in (250, 251):
            refused[rcpt] = (code, text)
    if len(refused) == len(recipients):
        client.rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    send(b"DATA\r\n")
    code, text = read_reply(lines)
    if code == 354:
        send(wire_form(raw))
        code, text = read_reply(lines)
        if code == 250:
            return refused
    raise smtplib.SMTPDataError(code, text)


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
    commands = [f"MAIL FROM:<{mail_from}>", *(f"RCPT TO:<{rcpt}>" for rcpt in recipients), "DATA"]
    client.send("".join(f"{command}\r\n" for command in commands).encode("ascii"))
    mail_code, mail_text = client.getreply()
    refused: Refused = {}
    for rcpt in recipients:
        code, text = client.getreply()
        if code not in (250, 251):
            refused[rcpt] = (code, text)
    data_code, data_text = client.getreply()
    if mail_code != 250:
        _abandon(client, data_code)
        raise smtplib.SMTPSenderRefused(mail_code, mail_text, mail_from)
    if len(refused) == len(recipients):
        _abandon(client, data_code)
        raise smtplib.SMTPRecipientsRefused(refused)
    if data_code != 354:
        client.rset()
        raise smtplib.SMTPDataError(data_code, data_text)
    body = DOT_AT_LINE_START.sub(b"..", raw)
    client.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    code, text = client.getreply()
    if code != 250:
        client.rset()
        raise smtplib.SMTPDataError(code, text)
    return refused


@dataclass(frozen=True)
class Personal:
    """One recipient's transaction of a personal row."""

    rcpt: str
    mail_from: str  # the VERP envelope
    token: str


def _envelope(copy: Personal) -> bytes:
    return f"MAIL FROM:<{copy.mail_from}>\r\nRCPT TO:<{copy.rcpt}>\r\nDATA\r\n".encode("ascii")


def wire_form(raw: bytes) -> bytes:
    """DATA as sent: dot-stuffed, ending in CRLF and the final dot."""
    body = DOT_AT_LINE_START.sub(b"..", raw)
    return body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def pipelined_personal(
    client: smtplib.SMTP, copies: list[tuple[Personal, bytes]], answers: dict[str, tuple[int, bytes]]
) -> None:
    """One transaction per (recipient, wire-form bytes), pipelined across transactions (RFC 2920 §3.1):
    each body goes out in one write with the next transaction's MAIL, RCPT and DATA, so a recipient
    costs one round trip. Each recipient's final answer goes into ``answers`` as soon as it is read."""
    client.send(_envelope(copies[0][0]))
    for index, (copy, wire) in enumerate(copies):
        following = _envelope(copies[index + 1][0]) if index + 1 < len(copies) else b""
        mail, rcpt, data = client.getreply(), client.getreply(), client.getreply()
        if mail[0] == 250 and rcpt[0] in (250, 251) and data[0] == 354:
            client.send(wire + following)
            answers[copy.rcpt] = client.getreply()
            continue
        if data[0] == 354:  # DATA accepted although nothing can go: end it empty
            client.send(b".\r\n")
            client.getreply()
        client.send(b"RSET\r\n" + following)
        client.getreply()
        answers[copy.rcpt] = mail if mail[0] != 250 else rcpt if rcpt[0] not in (250, 251) else data


def _abandon(client: smtplib.SMTP, data_code: int) -> None:
    """The server may have accepted DATA although nothing can be sent: end it empty, then reset."""
    if data_code == 354:
        client.send(b".\r\n")
        client.getreply()
    client.rset()


class PermanentFailure(Exception):
    """The relay refused the whole message for good (5xx)."""


class TransientFailure(Exception):
    """Try again later: a 4xx for the whole message, or no connection."""


class RelaySetupError(Exception):
    """The relay's password file cannot be read."""


class Transport:
    def __init__(
        self,
        relay: RelayConfig | None,
        maildir: Path,
        timeout: float = 60.0,
        signer: Signer | None = None,
    ) -> None:
        self._relay = relay
        self._maildir = maildir
        self._timeout = timeout
        self._signer = signer
        self._tls = relay_tls(relay)
        self._password = _read_password(relay)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[smtplib.SMTP] = []
        self.pipelining: bool | None = None  # whether the relay offered PIPELINING when last connected

    def send(self, mail_from: str, recipients: list[str], raw: bytes) -> Refused:
        """Recipients the relay refused, with their answers; raises for the message as a whole."""
        if self._signer is not None:
            raw = self._signer.sign(raw)
        if self._relay is None:
            self._write_maildir(mail_from, recipients, raw)
            return {}
        client = self._client()
        try:
            if client.has_extn("pipelining"):
                return pipelined_sendmail(client, mail_from, recipients, raw)
            return stepwise_sendmail(client, mail_from, recipients, raw)
        except smtplib.SMTPRecipientsRefused as error:
            return error.recipients
        except smtplib.SMTPResponseException as error:
            self._reset(client)
            if error.smtp_code >= 500:
                raise PermanentFailure(f"{error.smtp_code} {error.smtp_error!r}") from None
            raise TransientFailure(f"{error.smtp_code} {error.smtp_error!r}") from None
        except (smtplib.SMTPException, OSError) as error:
            self._drop(client)
            raise TransientFailure(f"{type(error).__name__}: {error}") from None
        finally:
            self._local.used_at = time.monotonic()

    def send_personal(self, raw: bytes, copies: list[Personal]) -> Refused:
        """One transaction per recipient, each copy ``raw`` with its token; the recipients not
        accepted, with their answers. Those not confirmed when the connection fails are deferred (451)."""
        if self._relay is None:
            for copy in copies:
                self._write_maildir(copy.mail_from, [copy.rcpt], self._signed(personal_copy(raw, copy.token)))
            return {}
        client = self._client()
        answers: dict[str, tuple[int, bytes]] = {}
        try:
            if client.has_extn("pipelining"):
                stuffed = wire_form(raw)  # stuffed once: a token has no dot to stuff
                ready = [(copy, self._wire(raw, stuffed, copy.token)) for copy in copies]
                pipelined_personal(client, ready, answers)
            else:
                for copy in copies:
                    signed = self._signed(personal_copy(raw, copy.token))
                    answers[copy.rcpt] = self._one_transaction(client, copy, signed)
        except (smtplib.SMTPException, OSError) as error:
            self._drop(client)
            lost = f"not sent, the connection failed: {type(error).__name__}: {error}".encode()
            answers |= {copy.rcpt: (451, lost) for copy in copies if copy.rcpt not in answers}
        finally:
            self._local.used_at = time.monotonic()
        return {rcpt: answer for rcpt, answer in answers.items() if answer[0] != 250}

    def _signed(self, raw: bytes) -> bytes:
        return raw if self._signer is None else self._signer.sign(raw)

    def _wire(self, raw: bytes, stuffed: bytes, token: str) -> bytes:
        """One recipient's DATA: the token put into the stuffed bytes; with DKIM, signed per recipient."""
        if self._signer is None:
            return personal_copy(stuffed, token)
        return wire_form(self._signer.sign(personal_copy(raw, token)))

    def _one_transaction(self, client: smtplib.SMTP, copy: Personal, raw: bytes) -> tuple[int, bytes]:
        """Without PIPELINING: smtplib's sendmail for one recipient (it stuffs the dots itself)."""
        try:
            refused = client.sendmail(copy.mail_from, [copy.rcpt], raw)
        except smtplib.SMTPRecipientsRefused as error:
            refused = error.recipients
        except smtplib.SMTPResponseException as error:
            self._reset(client)
            return error.smtp_code, error.smtp_error
        return refused.get(copy.rcpt, (250, b""))

    def _client(self) -> smtplib.SMTP:
        client: smtplib.SMTP | None = getattr(self._local, "client", None)
        if client is not None and time.monotonic() - self._local.used_at > IDLE_CHECK_SECONDS:
            try:
                client.noop()
            except (smtplib.SMTPException, OSError):
                self._drop(client)
                client = None
        if client is None:
            assert self._relay is not None
            try:
                client = self._connect(self._relay)
            except (OSError, smtplib.SMTPException) as error:
                raise TransientFailure(f"cannot connect to the relay: {error}") from None
            self._local.client = client
            with self._lock:
                self._open.append(client)
        return client

    def _connect(self, relay: RelayConfig) -> smtplib.SMTP:
        client = smtplib.SMTP(relay.host, relay.port, timeout=self._timeout)
        try:
            client.ehlo()
            if relay.starttls:
                client.starttls(context=self._tls)  # raises SMTPNotSupportedError if not offered
                client.ehlo()
            if relay.username is not None and self._password is not None:
                client.login(relay.username, self._password)
            self.pipelining = client.has_extn("pipelining")
        except BaseException:
            client.close()
            raise
        return client

    def _reset(self, client: smtplib.SMTP) -> None:
        try:
            client.rset()
        except (smtplib.SMTPException, OSError):
            self._drop(client)

    def _drop(self, client: smtplib.SMTP) -> None:
        self._local.client = None
        with self._lock:
            if client in self._open:
                self._open.remove(client)
        with contextlib.suppress(OSError):
            client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._open = self._open, []
        for client in clients:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    def _write_maildir(self, mail_from: str, recipients: list[str], raw: bytes) -> None:
        import mailbox  # late: ~0.3 MB of an idle serve, and a site with a relay never writes here

        envelope = f"Return-Path: <{mail_from}>\r\nX-Original-To: {', '.join(recipients)}\r\n".encode()
        mailbox.Maildir(self._maildir, create=True).add(envelope + raw)


def maildir_files(folder: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file of the outgoing Maildir with its bytes, including those still being written.

    tmp/ is read before new/ and cur/, so a file renamed from tmp/ to new/ meanwhile is still seen;
    a file gone between listing and reading is skipped, not an error."""
    for part in ("tmp", "new", "cur"):
        for path in sorted((folder / part).glob("*")):
            try:
                yield path, path.read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                continue


def relay_tls(relay: RelayConfig | None) -> ssl.SSLContext:
    """The client side of STARTTLS: the system's CAs and the relay's name checked, unless told not to."""
    context = ssl.create_default_context()
    if relay is not None and not relay.tls_verify:  # a relay on loopback with a self-signed certificate
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _read_password(relay: RelayConfig | None) -> str | None:
    if relay is None or relay.password_file is None:
        return None
    try:
        return relay.password_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise RelaySetupError(
            f"cannot read delivery.relay.password_file {relay.password_file}: {error.strerror}"
        ) from None
