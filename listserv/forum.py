"""The composition root: one event loop, every part built here from one Settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from listserv.config import Settings
from listserv.intake.dispatch import DnsLookup, Handling
from listserv.intake.ingress import IngressHandler, IngressServer
from listserv.intake.spool import Spool
from listserv.intake.worker import Worker
from listserv.mail.addresses import AddressBook
from listserv.mail.templates import MailTemplates
from listserv.membership.bounces import HARD, Bounces
from listserv.membership.requests import Requests
from listserv.moderation.queue import Moderation
from listserv.moderation.replies import ModeratorMail
from listserv.outgoing.delivery import Deliverer, Publisher
from listserv.outgoing.notices import Notifier
from listserv.outgoing.outbox import OutboxSender
from listserv.outgoing.transport import Transport
from listserv.scheduler import Jobs, build_scheduler
from listserv.store.db import utc_now
from listserv.store.keys import load_or_create_secret
from listserv.web.routes import build, build_site
from listserv.web.server import WebServer

log = logging.getLogger(__name__)


def build_moderation(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Moderation:
    """Moderation and everything it needs; shared by ``serve`` and the command line."""
    book = AddressBook(settings.site.domain, settings.lists)
    templates = MailTemplates(settings.site.templates_dir, settings.site.timezone)
    secret = load_or_create_secret(settings.site.data_dir / "secret")
    publisher = Publisher(settings, book, templates)
    return Moderation(Notifier(settings, book, templates, clock), secret, publisher)


class Forum:
    """Everything ``listserv serve`` runs: SMTP ingress, spool writer, worker, outbox sender."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Callable[[], datetime] = utc_now,
        dns: DnsLookup | None = None,
    ) -> None:
        self.settings = settings
        self.moderation = build_moderation(settings, clock)
        self.book = self.moderation.notifier.book
        replies = ModeratorMail(self.moderation)
        transport = Transport(settings.delivery.relay, settings.site.data_dir / "outbox")
        self.outbox = OutboxSender(engine, settings.delivery, transport, clock)
        self.bounces = Bounces(
            self.moderation.notifier, self.moderation.secret, self.moderation.moderators_of
        )
        self.deliverer = Deliverer(
            engine,
            settings,
            transport,
            clock,
            on_hard_bounce=lambda session, list_name, address: self.bounces.record(
                session, list_name, address, HARD, clock()
            ),
        )
        self.worker = Worker(
            engine,
            self.book,
            Handling(
                settings, self.book, self.moderation, replies, self.bounces, Requests(self.moderation), dns
            ),
            after=self._wake_senders,
            ingest_busy=lambda seconds: self.spool.is_busy(seconds),
        )
        self.spool = Spool(engine, on_stored=self.worker.background.wake)
        self.ingress = IngressServer(
            IngressHandler(self.book, self.spool),
            hostname=settings.smtp.hostname or settings.site.domain,
            max_message_bytes=settings.smtp.max_message_bytes,
        )
        self.jobs = Jobs(engine, self.moderation, clock, self._wake_senders)
        self.scheduler = build_scheduler(settings.site.timezone, self.jobs.tick)
        self.web = WebServer(
            build(build_site(settings, engine, self.moderation, clock, self._wake_senders)),
            settings.web.host,
            settings.web.port,
        )
        self.smtp_port: int | None = None
        self.web_port: int | None = None

    def _wake_senders(self) -> None:
        self.outbox.background.wake()
        self.deliverer.background.wake()

    async def start(self) -> None:
        self.spool.start()
        for sender in (self.outbox, self.deliverer):
            requeued = await asyncio.to_thread(sender.requeue_interrupted)
            if requeued:
                log.warning(
                    "%s: %d item(s) interrupted by a stop are queued again", sender.background.name, requeued
                )
            sender.background.start()
        self.worker.background.start()  # resumes whatever was stored and not yet processed
        self.smtp_port = await self.ingress.start(self.settings.smtp.host, self.settings.smtp.port)
        self.web_port = await self.web.start()
        self.scheduler.start()
        log.info(
            "SMTP listening on %s:%d for @%s (%d lists)",
            self.settings.smtp.host,
            self.smtp_port,
            self.book.domain,
            len(self.settings.lists),
        )
        log.info("web archive on http://%s:%d", self.settings.web.host, self.web_port)

    async def stop(self) -> None:
        """Stop accepting, finish transactions under way, commit, stop processing, then sending."""
        self.scheduler.shutdown(wait=True)
        await self.web.stop()
        await self.ingress.stop()
        self.spool.stop()
        await self.worker.background.stop()
        await self.outbox.background.stop()
        await self.deliverer.background.stop()
        self.deliverer.close()
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
