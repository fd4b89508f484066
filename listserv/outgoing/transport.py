"""Handing mail to the relay (or, with no relay configured, to a local Maildir).

SMTP connections per sending thread (one; ``LOCKSTEP_CONNECTIONS`` for personal copies), kept open
between transactions: a new connection per batch costs more than the batch. smtplib opens them (EHLO,
STARTTLS, AUTH) rather than aiosmtplib: per recipient it costs ~60 µs of CPU against ~150 µs (measured
here), and batches run in a few threads anyway; the transactions themselves are ``smtp_steps.py``. A
connection idle for a while is checked with NOOP before use, so a relay's idle timeout never fails a
batch.

With ``relay.starttls`` the connection is upgraded before anything else (a relay that does not offer
STARTTLS is an error, never a silent fallback to plain text) and the certificate checked unless
``tls_verify: false``; with ``username`` it logs in (SMTP AUTH) over that connection. Every message is
signed here (``signing.py``) when DKIM is configured: this is where bytes leave.
"""

from __future__ import annotations

import contextlib
import random
import smtplib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from listserv.config import RelayConfig
from listserv.outgoing.personal import personal_copy
from listserv.outgoing.signing import Signer
from listserv.outgoing.smtp_steps import (
    Personal,
    Refused,
    lockstep,
    personal_steps,
    pipelined_sendmail,
    stepwise_sendmail,
    stepwise_steps,
    wire_form,
)

IDLE_CHECK_SECONDS = 20.0
# A thread sending personal copies over a relay with PIPELINING keeps this many connections busy in
# lockstep (``lockstep``); without PIPELINING the deliverer gives such rows more threads instead.
LOCKSTEP_CONNECTIONS = 4
FIRST_RETRY_SECONDS = 60
MAX_RETRY_SECONDS = 3600


def backoff(attempts: int) -> timedelta:
    """1 min, 2, 4 … up to an hour, ±20 %: retries after a relay outage don't arrive in step."""
    seconds = min(FIRST_RETRY_SECONDS * 2**attempts, MAX_RETRY_SECONDS)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


class PermanentFailure(Exception):
    """The relay refused the whole message for good (5xx)."""


class TransientFailure(Exception):
    """Try again later: a 4xx for the whole message, or no connection."""


Outcome = Refused | TransientFailure | PermanentFailure  # of one message sent with others


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
        raw = self._signed(raw)
        if self._relay is None:
            self._write_maildir(mail_from, recipients, raw)
            return {}
        client = self._client()
        try:
            if client.has_extn("pipelining"):
                return pipelined_sendmail(client, mail_from, recipients, raw)
            return stepwise_sendmail(client, mail_from, recipients, raw)
        except (smtplib.SMTPException, OSError) as error:
            outcome = self._failed(client, error)
            if isinstance(outcome, Exception):
                raise outcome from None
            return outcome
        finally:
            self._local.used_at = time.monotonic()

    def send_together(self, batches: list[tuple[str, list[str], bytes]]) -> list[Outcome]:
        """``send`` for several messages (envelope sender, recipients, bytes) at once, each on its own
        connection, for a relay without PIPELINING: one thread waiting for the answers of several
        connections in ``lockstep`` wakes less often than a thread per connection (bench/fanout.py (a)).
        Each outcome is what ``send`` returns for that message, or the exception it raises."""
        if self._relay is None:
            return [self.send(*batch) for batch in batches]
        outcomes: list[Outcome] = []
        try:
            while len(outcomes) < len(batches):
                rest = batches[len(outcomes) :]
                try:  # as many connections as the relay takes, up to LOCKSTEP_CONNECTIONS
                    clients = self._clients(min(len(rest), LOCKSTEP_CONNECTIONS))
                except TransientFailure as error:  # no connection at all: none of the rest goes
                    return outcomes + [error] * len(rest)
                hand: dict[int, Outcome] = {}
                pairs = zip(clients, rest[: len(clients)], strict=True)
                lockstep(
                    [
                        self._batch_steps(client, batch, hand, lane)
                        for lane, (client, batch) in enumerate(pairs)
                    ]
                )
                outcomes += [hand[lane] for lane in range(len(hand))]
        finally:
            self._local.used_at = time.monotonic()
        return outcomes

    def _batch_steps(
        self, client: smtplib.SMTP, batch: tuple[str, list[str], bytes], hand: dict[int, Outcome], lane: int
    ) -> Iterator[None]:
        """One batch on its connection, its outcome put in ``hand[lane]``: a failure ends that batch only."""
        mail_from, recipients, raw = batch
        try:
            hand[lane] = yield from stepwise_steps(client, mail_from, recipients, self._signed(raw))
        except (smtplib.SMTPException, OSError) as error:
            hand[lane] = self._failed(client, error)

    def _failed(self, client: smtplib.SMTP, error: Exception) -> Outcome:
        """What a failed transaction means: the recipients refused (all of them), or the failure of the
        message as a whole; the connection is reset or dropped as the error requires."""
        if isinstance(error, smtplib.SMTPRecipientsRefused):
            return error.recipients
        if isinstance(error, smtplib.SMTPResponseException):
            self._reset(client)
            failure = PermanentFailure if error.smtp_code >= 500 else TransientFailure
            return failure(f"{error.smtp_code} {error.smtp_error!r}")
        self._drop(client)
        return TransientFailure(f"{type(error).__name__}: {error}")

    def send_personal(self, raw: bytes, copies: list[Personal]) -> Refused:
        """One transaction per recipient, each copy ``raw`` with its token; the recipients not
        accepted, with their answers. Those not confirmed when the connection fails are deferred (451)."""
        if self._relay is None:
            for copy in copies:
                self._write_maildir(copy.mail_from, [copy.rcpt], self._signed(personal_copy(raw, copy.token)))
            return {}
        first = self._client()
        answers: dict[str, tuple[int, bytes]] = {}
        try:
            if first.has_extn("pipelining"):  # the others only then: without it, one connection a thread
                clients = self._clients(LOCKSTEP_CONNECTIONS)
                stuffed = wire_form(raw)  # stuffed once: a token has no dot to stuff
                ready = [(copy, self._wire(raw, stuffed, copy.token)) for copy in copies]
                hands = [(client, ready[lane :: len(clients)]) for lane, client in enumerate(clients)]
                lockstep([self._guarded(client, hand, answers) for client, hand in hands if hand])
            else:
                for copy in copies:
                    signed = self._signed(personal_copy(raw, copy.token))
                    answers[copy.rcpt] = self._one_transaction(first, copy, signed)
        except (smtplib.SMTPException, OSError) as error:
            self._lost(first, error, copies, answers)
        finally:
            self._local.used_at = time.monotonic()
        return {rcpt: answer for rcpt, answer in answers.items() if answer[0] != 250}

    def _guarded(
        self, client: smtplib.SMTP, hand: list[tuple[Personal, bytes]], answers: dict[str, tuple[int, bytes]]
    ) -> Iterator[None]:
        """``personal_steps`` on one connection; its failure ends that connection's hand only."""
        try:
            yield from personal_steps(client, hand, answers)
        except (smtplib.SMTPException, OSError) as error:
            self._lost(client, error, [copy for copy, _ in hand], answers)

    def _lost(
        self,
        client: smtplib.SMTP,
        error: Exception,
        copies: list[Personal],
        answers: dict[str, tuple[int, bytes]],
    ) -> None:
        """The connection failed: the copies not confirmed on it are deferred (451)."""
        self._drop(client)
        lost = f"not sent, the connection failed: {type(error).__name__}: {error}".encode()
        answers |= {copy.rcpt: (451, lost) for copy in copies if copy.rcpt not in answers}

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
        return self._clients(1)[0]

    def _clients(self, count: int) -> list[smtplib.SMTP]:
        """This thread's first ``count`` connections to the relay, kept open between transactions: those
        idle for a while checked with NOOP, those missing opened (fewer when the relay takes no more)."""
        clients: list[smtplib.SMTP] = self._local.__dict__.setdefault("clients", [])
        used_at = self._local.__dict__.get("used_at", time.monotonic())  # set once this thread sent
        if clients and time.monotonic() - used_at > IDLE_CHECK_SECONDS:
            for client in list(clients):
                try:
                    client.noop()
                except (smtplib.SMTPException, OSError):
                    self._drop(client)
            self._local.used_at = time.monotonic()  # checked: not again before it idles anew
        assert self._relay is not None
        while len(clients) < count:
            try:
                client = self._connect(self._relay)
            except (OSError, smtplib.SMTPException) as error:
                if clients:
                    break
                raise TransientFailure(f"cannot connect to the relay: {error}") from None
            clients.append(client)
            with self._lock:
                self._open.append(client)
        return clients[:count]

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
            kernel_timeouts(client.sock, self._timeout)
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
        clients: list[smtplib.SMTP] = self._local.__dict__.get("clients", [])
        if client in clients:
            clients.remove(client)
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


def kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """The socket's timeout kept by the kernel (SO_RCVTIMEO, SO_SNDTIMEO) instead of by Python.

    Python enforces its own timeout with a poll() before every send and recv: four system calls and
    four hand-overs of the interpreter lock per recipient without PIPELINING, instead of two (the
    recipient's round trip is most of a fan-out's CPU, bench/fanout.py (a)). A blocking socket with
    kernel timeouts fails the same way when the relay goes quiet: an OSError (EAGAIN) after ``seconds``."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


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
