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
import mailbox
import random
import re
import smtplib
import ssl
import threading
import time
from datetime import timedelta
from pathlib import Path

from listserv.config import RelayConfig
from listserv.outgoing.signing import Signer

IDLE_CHECK_SECONDS = 20.0
FIRST_RETRY_SECONDS = 60
MAX_RETRY_SECONDS = 3600
Refused = dict[str, tuple[int, bytes]]


def backoff(attempts: int) -> timedelta:
    """1 min, 2, 4 … up to an hour, ±20 %: retries after a relay outage don't arrive in step."""
    seconds = min(FIRST_RETRY_SECONDS * 2**attempts, MAX_RETRY_SECONDS)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


DOT_AT_LINE_START = re.compile(rb"(?m)^\.")


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
            return client.sendmail(mail_from, recipients, raw)
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
        envelope = f"Return-Path: <{mail_from}>\r\nX-Original-To: {', '.join(recipients)}\r\n".encode()
        mailbox.Maildir(self._maildir, create=True).add(envelope + raw)


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
