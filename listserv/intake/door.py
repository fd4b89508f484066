"""What accepting mail durably needs, and nothing more: the address book (RCPT is answered from it), the
spool (DATA is answered 250 only once the ``received`` row is committed) and the SMTP ingress.

``serve`` starts this first, from the validated config and a database whose schema it has checked, so
the first 220 does not wait for the web app, the scheduler and the rest to be imported and built
(staged start, issue 18). Mail accepted before the worker is up stays ``new`` in ``received``; the worker
takes it when it starts, as it does after any restart. Keep the imports of this module light: they are
all that stands between the spawn of ``serve`` and its first 220.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from listserv.config import Settings
from listserv.intake.ingress import IngressHandler, IngressServer, ssl_context
from listserv.intake.spool import Spool
from listserv.mail.addresses import AddressBook


class Door:
    """The SMTP ingress and its spool; ``Forum`` adds the rest around them."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.book = AddressBook(settings.site.domain, settings.lists)
        self._wake: Callable[[], None] = lambda: None  # the worker's, once there is one
        self.spool = Spool(engine, on_stored=lambda: self._wake())
        smtp = settings.smtp
        self.ingress = IngressServer(
            IngressHandler(self.book, self.spool),
            hostname=smtp.hostname or settings.site.domain,
            max_message_bytes=smtp.max_message_bytes,
            lmtp=smtp.protocol == "lmtp",
            tls=ssl_context(smtp.tls_cert, smtp.tls_key) if smtp.tls_cert and smtp.tls_key else None,
            require_tls=smtp.require_tls,
            max_connections=smtp.max_connections,
            idle_timeout=smtp.idle_timeout,
        )
        self.port: int | None = None

    def wake_on_stored(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` after each committed batch (the worker, built after the door has opened)."""
        self._wake = wake

    async def start(self) -> int:
        """Open (once): the spool's writer, then the listening socket. Returns the SMTP port."""
        if self.port is None:
            self.spool.start()
            self.port = await self.ingress.start(self.settings.smtp.host, self.settings.smtp.port)
        return self.port

    async def stop(self) -> None:
        """Stop accepting, let transactions under way finish, commit what the spool holds."""
        if self.port is None:
            return
        await self.ingress.stop()
        self.spool.stop()
        self.port = None
