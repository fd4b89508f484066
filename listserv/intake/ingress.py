"""The aiosmtpd handler: classify recipients at RCPT, store at DATA, answer. No business logic here:
parsing and policy run later, off the protocol path, from what the spool committed."""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from email._header_value_parser import get_addr_spec, get_angle_addr  # as aiosmtpd itself does
from email.errors import HeaderParseError
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from listserv.intake.spool import Arrival, Spool, StorageError
from listserv.mail.addresses import AddressBook, loggable
from listserv.mail.message import ensure_message_id
from listserv.mail.rawmime import CRLF, LINE_END
from listserv.mail.text import has_control_characters

log = logging.getLogger(__name__)
MAX_RECIPIENTS = 100
ERROR_LIMIT = 20  # 5xx answers in a session before it is cut off (as Postfix's smtpd_hard_error_limit)
# Per session (aiosmtpd's command_call_limit; beyond it: 421 and close). A relay delivering over one
# connection repeats MAIL, RCPT and DATA (and RSET to check a cached connection) once per message: "*".
COMMAND_CALL_LIMITS = {
    "NOOP": 100, "RSET": 1000, "HELP": 20, "VRFY": 20, "EXPN": 20, "HELO": 20, "EHLO": 20, "LHLO": 20,
    "STARTTLS": 5, "*": 100_000,
}  # fmt: skip
ACCEPTED = "250 2.0.0 Accepted"
FD_RESERVE = 256  # descriptors beside the SMTP sessions: database, web, relay, logs, files


class IngressHandler:
    def __init__(self, book: AddressBook, spool: Spool) -> None:
        self.book = book
        self.spool = spool

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        # aiosmtpd takes a NUL or an escape inside <...>; stored, a NUL fails PostgreSQL's text columns.
        if has_control_characters(address):
            return "553 5.1.7 Sender address contains control characters"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.book.classify(address) is None:
            if "@" not in address:  # the null path, or a bare bang path: no domain to relay to anyway
                return f"553 5.1.3 <{address}>: a recipient needs a domain, @{self.book.domain} here"
            if not self.book.is_local_domain(address):
                log.info("relay refused from %s to %s", session.peer, address)
                return f"550 5.7.1 Relaying denied: this server accepts mail only for @{self.book.domain}"
            return f"550 5.1.1 <{address}>: no such list or address here; check the list name"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 Too many recipients; send the rest in another message (max {MAX_RECIPIENTS})"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else (content or "").encode("utf-8", "surrogateescape")
        raw = crlf_only(raw)
        raw, message_id = ensure_message_id(raw, self.book.domain)
        arrival = Arrival(
            peer=_peer(session),
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            message_id=message_id,
            raw=raw,
        )
        try:
            await self.spool.store(arrival)
        except StorageError as error:
            if error.disk_full:  # RFC 3463 X.3.1: mail system full
                return "451 4.3.1 Insufficient system storage (disk full); please try again later"
            return "451 4.3.0 Temporary storage failure; please try again later"
        log.debug("stored %s for %s", message_id, loggable(arrival.rcpt_tos))  # the worker logs at INFO
        return f"{ACCEPTED} {message_id}; posts are published after moderation"


class IngressServer:
    """The listening socket plus the SMTP sessions it spawned, so shutdown can wait for them."""

    def __init__(
        self,
        handler: IngressHandler,
        hostname: str,
        max_message_bytes: int,
        lmtp: bool = False,
        tls: ssl.SSLContext | None = None,
        require_tls: bool = False,
        max_connections: int = 2500,
        idle_timeout: float = 300.0,
    ) -> None:
        self._handler = handler
        self._hostname = hostname
        self._max_bytes = max_message_bytes
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._session_class = _TrackedLMTP if lmtp else _TrackedSMTP
        self._tls = tls
        self._require_tls = require_tls
        self._sessions: set[SMTP] = set()
        self._server: asyncio.Server | None = None

    def _new_session(self) -> asyncio.Protocol:
        if len(self._sessions) >= self._max_connections:
            return _Busy(self._hostname)
        session = self._session_class(
            self._handler,
            hostname=self._hostname,  # without it aiosmtpd calls the slow getfqdn()
            data_size_limit=self._max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="listserv",
            tls_context=self._tls,  # STARTTLS offered when set
            require_starttls=self._require_tls,  # 530 to MAIL (and the rest) before STARTTLS
            timeout=self._idle_timeout,  # seconds without a command: 421, closed (RFC 5321 §4.5.3.2.7)
            command_call_limit=COMMAND_CALL_LIMITS,
        )
        session.sessions = self._sessions
        self._sessions.add(session)  # counted from now: many may be accepted before any is connected
        return session

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port (useful when ``port`` is 0)."""
        raise_open_file_limit(self._max_connections + FD_RESERVE)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, host=host, port=port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop accepting; let transactions under way finish (up to the grace period); close the rest."""
        if self._server is None:
            return
        self._server.close()
        deadline = asyncio.get_running_loop().time() + grace_seconds
        while any(s.in_transaction for s in self._sessions) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await self._server.wait_closed()


class ListservSMTP(SMTP):
    """aiosmtpd's SMTP session with one hot spot fixed (kept in step with aiosmtpd 1.4's logic)."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd 1.4 declares a typing.Protocol class inside this method: a new class on every MAIL
        # and RCPT, ~35 % of a busy server's CPU (py-spy, bench/ingest.py). Same parsing, no class.
        if not arg:
            return "", ""
        try:
            address, rest = (get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec)(arg)
        except HeaderParseError:
            return None, None
        addr = address.addr_spec
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest


class _TrackedSMTP(ListservSMTP):
    # RFC 5321 caps lines at 1,000 octets, but real clients exceed it and Postfix accepts (and splits)
    # such lines; refusing a delegate's mail for it would be needless friction. Commands keep their
    # own 512-octet limit (command_size_limit); longer lines still get a clear 500.
    line_length_limit = 2 * 1024 * 1024 + 2
    sessions: set[SMTP]
    _errors = 0

    async def push(self, status: AnyStr) -> None:
        """Every reply goes through here: a client that keeps earning 5xx (bad commands, blank or
        overlong lines, unknown recipients) is cut off, as aiosmtpd cuts off unknown commands."""
        await super().push(status)
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        if text.startswith(ACCEPTED):
            self._errors = 0  # a message accepted: a busy relay's rare refusals do not add up
        elif text.startswith("5"):
            self._errors += 1
            if self._errors >= ERROR_LIMIT and self.transport is not None:
                log.warning("%s cut off after %d errors", _peer(self.session), self._errors)
                await super().push("421 4.7.0 Too many errors; closing connection")
                self.transport.close()

    def _timeout_cb(self) -> None:
        if self.transport is not None:  # RFC 5321 §3.8: say why before closing
            self.transport.write(b"421 4.4.2 Idle for too long; closing connection" + CRLF)
        super()._timeout_cb()

    @property
    def in_transaction(self) -> bool:
        return self.envelope is not None and self.envelope.mail_from is not None

    def connection_made(self, transport: Any) -> None:
        self.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sessions.discard(self)
        super().connection_lost(error)


class _TrackedLMTP(_TrackedSMTP, LMTP):
    """LMTP (RFC 2033): LHLO instead of EHLO, and after DATA one reply per accepted recipient, in RCPT
    order. The spool commits the message once for all its recipients before any reply, so each gets the
    handler's one answer; so do aiosmtpd's own refusals after 354 (552 too big, 500 line too long)."""

    _replies_due = 0

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8") if isinstance(status, bytes) else status
        if self._replies_due:
            count, self._replies_due = self._replies_due, 0
            text = "\r\n".join([text] * count)
        elif text.startswith("354") and self.envelope is not None:
            self._replies_due = len(self.envelope.rcpt_tos)
        await super().push(text)


class _Busy(asyncio.Protocol):
    """A connection beyond ``smtp.max_connections``: answered 421 (RFC 5321 §3.8) and closed at once, so
    its descriptor is free again and idle clients cannot exhaust the process's (accept would stall)."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        log.info(
            "connection from %s refused: smtp.max_connections reached", transport.get_extra_info("peername")
        )
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(f"421 4.7.0 {self._hostname} Too many connections; try again later".encode() + CRLF)
        transport.close()


def crlf_only(raw: bytes) -> bytes:
    """Bare CR and bare LF become CRLF (Postfix 3.9's smtpd_forbid_bare_newline = normalize). They are
    not line ends in SMTP (RFC 5321 §2.3.8) but are in the parsers downstream; stored so, the message
    means the same to every reader, and a dot after one cannot end a relay's DATA (SMTP smuggling)."""
    lines = raw.count(CRLF)
    if raw.count(b"\r") == lines == raw.count(b"\n"):
        return raw
    log.info("bare CR or LF in a message: stored with CRLF line ends")
    return LINE_END.sub(CRLF, raw)


def raise_open_file_limit(wanted: int) -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: each SMTP session holds a descriptor, and a distro's
    default soft limit (1,024) is below smtp.max_connections' default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, error)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "open-file limit %d is below smtp.max_connections + %d; lower one or raise the other",
            soft,
            FD_RESERVE,
        )


def ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server side of STARTTLS; a file that cannot be read raises TlsSetupError."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise TlsSetupError(f"cannot load the TLS certificate {cert} and key {key}: {error}") from None
    return context


class TlsSetupError(Exception):
    """smtp.tls_cert / smtp.tls_key cannot be used."""


def _peer(session: Session) -> str:
    peer = session.peer
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
