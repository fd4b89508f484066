"""The aiosmtpd handler: classify recipients at RCPT, store at DATA, answer. No business logic here:
parsing and policy run later, off the protocol path, from what the spool committed."""

from __future__ import annotations

import asyncio
import logging
import ssl
from email._header_value_parser import get_addr_spec, get_angle_addr  # as aiosmtpd itself does
from email.errors import HeaderParseError
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from listserv.intake.spool import Arrival, Spool, StorageError
from listserv.mail.addresses import AddressBook
from listserv.mail.message import ensure_message_id

log = logging.getLogger(__name__)
MAX_RECIPIENTS = 100


class IngressHandler:
    def __init__(self, book: AddressBook, spool: Spool) -> None:
        self.book = book
        self.spool = spool

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.book.classify(address) is None:
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
        except StorageError:
            return "451 4.3.0 Temporary storage failure; please try again later"
        log.debug("stored %s for %s", message_id, ", ".join(arrival.rcpt_tos))  # the worker logs at INFO
        return f"250 2.0.0 Accepted {message_id}; posts are published after moderation"


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
    ) -> None:
        self._handler = handler
        self._hostname = hostname
        self._max_bytes = max_message_bytes
        self._session_class = _TrackedLMTP if lmtp else _TrackedSMTP
        self._tls = tls
        self._require_tls = require_tls
        self._sessions: set[SMTP] = set()
        self._server: asyncio.Server | None = None

    def _new_session(self) -> SMTP:
        session = self._session_class(
            self._handler,
            hostname=self._hostname,  # without it aiosmtpd calls the slow getfqdn()
            data_size_limit=self._max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="listserv",
            tls_context=self._tls,  # STARTTLS offered when set
            require_starttls=self._require_tls,  # 530 to MAIL (and the rest) before STARTTLS
        )
        session.sessions = self._sessions
        return session

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port (useful when ``port`` is 0)."""
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
