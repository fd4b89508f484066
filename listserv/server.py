"""The composition root: one event loop, every part built here from one Settings."""

from __future__ import annotations

import asyncio
import logging
import signal

from sqlalchemy import Engine

from listserv.addresses import AddressBook
from listserv.config import Settings
from listserv.ingress import IngressHandler, IngressServer
from listserv.pipeline import Worker
from listserv.spool import Spool

log = logging.getLogger(__name__)


class Forum:
    """Everything ``listserv serve`` runs: SMTP ingress, the spool writer and the worker."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.book = AddressBook(settings.site.domain, settings.lists)
        self.worker = Worker(engine, self.book)
        self.spool = Spool(engine, on_stored=self.worker.wake)
        self.ingress = IngressServer(
            IngressHandler(self.book, self.spool),
            hostname=settings.smtp.hostname or settings.site.domain,
            max_message_bytes=settings.smtp.max_message_bytes,
        )
        self.smtp_port: int | None = None

    async def start(self) -> None:
        self.spool.start()
        self.worker.start()  # resumes whatever was stored and not yet processed
        self.smtp_port = await self.ingress.start(self.settings.smtp.host, self.settings.smtp.port)
        log.info(
            "SMTP listening on %s:%d for @%s (%d lists)",
            self.settings.smtp.host,
            self.smtp_port,
            self.book.domain,
            len(self.settings.lists),
        )

    async def stop(self) -> None:
        """Stop accepting, finish transactions under way, commit, then stop processing — in that order."""
        await self.ingress.stop()
        self.spool.stop()
        await self.worker.stop()
        log.info("stopped cleanly")

    async def serve_until_signalled(self) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await self.start()
        await stopping.wait()
        log.info("signal received: shutting down")
        await self.stop()
