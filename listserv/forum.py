"""The composition root: one event loop, every part built here from one Settings."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.admin.erasure import Eraser, ErasureError, Request
from listserv.admin.erasure_member import erase_member as erase_person
from listserv.admin.erasure_member import erase_on_request
from listserv.config import Settings
from listserv.intake.dispatch import Dispatch, DnsLookup, Handlers
from listserv.intake.ingress import IngressHandler, IngressServer, ssl_context
from listserv.intake.spool import Spool
from listserv.intake.worker import Worker
from listserv.mail.addresses import AddressBook
from listserv.mail.templates import MailTemplates
from listserv.membership.bounces import HARD, Bounces
from listserv.membership.requests import Requests
from listserv.moderation.proposals import Proposals
from listserv.moderation.queue import ANY_KIND, ERASURE, Consequences, Moderation, tell_sender_rejected
from listserv.moderation.reminders import Reminders
from listserv.moderation.replies import ModeratorMail
from listserv.outgoing.delivery import Deliverer
from listserv.outgoing.notices import Notifier
from listserv.outgoing.outbox import OutboxSender
from listserv.outgoing.publish import Publisher
from listserv.outgoing.signing import Signer
from listserv.outgoing.transport import Transport
from listserv.scheduler import Jobs, build_scheduler
from listserv.store.db import utc_now
from listserv.store.keys import load_or_create_secret
from listserv.store.models import Held, Received
from listserv.web.app import Site
from listserv.web.routes import build, build_pages
from listserv.web.server import WebServer
from listserv.weekly.prompts import Weekly

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """The forum's services, each built once from one Settings; ``serve`` and the command line share them."""

    settings: Settings
    clock: Callable[[], datetime]
    book: AddressBook
    templates: MailTemplates
    secret: bytes
    notifier: Notifier
    publisher: Publisher
    moderation: Moderation
    proposals: Proposals
    requests: Requests
    reminders: Reminders
    weekly: Weekly
    eraser: Eraser


def build_parts(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Parts:
    book = AddressBook(settings.site.domain, settings.lists)
    templates = MailTemplates(settings.site.template_dirs, settings.site.timezone)
    secret = load_or_create_secret(settings.site.data_dir / "secret")
    notifier = Notifier(settings, book, templates, clock)
    publisher = Publisher(settings, book, templates)
    consequences: dict[tuple[str, str], Callable[[Session, Held, str], None]] = {}
    moderation = Moderation(settings, notifier, book, templates, secret, clock, consequences)
    proposals = Proposals(settings, notifier, book, secret, clock)
    requests = Requests(settings, moderation, notifier, book, templates, clock)
    eraser = Eraser(settings, secret, publisher, clock)
    consequences.update(decision_consequences(publisher, proposals, requests, notifier, clock))
    consequences.update(
        {(action, ERASURE): then for action, then in erase_on_request(eraser, notifier).items()}
    )
    return Parts(
        settings,
        clock,
        book,
        templates,
        secret,
        notifier,
        publisher,
        moderation,
        proposals,
        requests,
        Reminders(settings, moderation, notifier, templates, secret, clock),
        Weekly(settings, notifier, book, templates, publisher),
        eraser,
    )


def decision_consequences(
    publisher: Publisher,
    proposals: Proposals,
    requests: Requests,
    notifier: Notifier,
    clock: Callable[[], datetime],
) -> Consequences:
    """What a won decision leads to, by (action, kind of held item); discarding leads to nothing. A
    member's erasure request (approve/erasure, reject/erasure) is added by ``build_parts``."""

    def publish(session: Session, held: Held, reason: str) -> None:
        publisher.publish(session, session.get(Received, held.received_id), held.list_name, clock())

    return {
        ("approve", "post"): publish,
        ("approve", "proposal"): proposals.accept,
        ("approve", "subscription"): requests.welcome,
        ("reject", "subscription"): requests.refuse,
        ("reject", ANY_KIND): tell_sender_rejected(notifier),
    }


def build_signer(settings: Settings) -> Signer | None:
    """DKIM (and ARC) for everything that leaves. The seal records the Authentication-Results of the MTA
    in front (our ADMD's verifier, moderation.trusted_authserv_id), else ours: ``none``."""
    dkim = settings.delivery.dkim
    if dkim is None:
        return None
    authserv_id = settings.moderation.trusted_authserv_id or settings.smtp.hostname or settings.site.domain
    return Signer(dkim, settings.delivery.arc, authserv_id)


def build_site(parts: Parts, engine: Engine, wake_senders: Callable[[], None] = lambda: None) -> Site:
    def erase_message(message_id: str, list_name: str, reason: str, requested_by: str, actor: str) -> bool:
        try:
            parts.eraser.erase_message(
                engine, message_id, Request(reason, requested_by, actor, "web"), list_name
            )
        except ErasureError:
            return False
        return True

    def erase_member(address: str, reason: str, requested_by: str, actor: str, with_posts: bool) -> bool:
        try:
            request = Request(reason, requested_by, actor, "web")
            erase_person(parts.eraser, engine, address, request, with_posts)
        except ErasureError:
            return False
        return True

    return Site(
        parts.settings,
        engine,
        parts.moderation,
        parts.proposals,
        parts.notifier,
        parts.templates,
        parts.clock,
        build_pages(parts.settings),
        parts.secret,
        wake_senders=wake_senders,
        erase_message=erase_message,
        erase_member=erase_member,
    )


def build_jobs(parts: Parts, engine: Engine, after: Callable[[], None]) -> Jobs:
    return Jobs(engine, parts.settings, parts.weekly, parts.reminders, parts.publisher, parts.clock, after)


class Forum:
    """Everything ``listserv serve`` runs: SMTP ingress, spool writer, worker, senders, scheduler, web."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Callable[[], datetime] = utc_now,
        dns: DnsLookup | None = None,
    ) -> None:
        self.settings = settings
        parts = build_parts(settings, clock)
        self.parts = parts
        self.book = parts.book
        transport = Transport(
            settings.delivery.relay, settings.site.data_dir / "outbox", signer=build_signer(settings)
        )
        self.outbox = OutboxSender(engine, settings.delivery, transport, clock)
        self.bounces = Bounces(settings, parts.notifier, parts.book, parts.secret, clock)
        self.deliverer = Deliverer(
            engine,
            settings,
            transport,
            clock,
            on_hard_bounce=lambda session, list_name, address: self.bounces.record(
                session, list_name, address, HARD, clock()
            ),
        )
        replies = ModeratorMail(
            settings, parts.moderation, parts.proposals, parts.notifier, parts.templates, clock
        )
        dispatch = Dispatch(
            settings,
            parts.book,
            parts.moderation,
            parts.publisher,
            parts.notifier,
            Handlers(replies, parts.requests, self.bounces),
            clock,
            dns,
        )
        self.worker = Worker(
            engine,
            self.book,
            dispatch,
            after=self._wake_senders,
            ingest_busy=lambda seconds: self.spool.is_busy(seconds),
        )
        self.spool = Spool(engine, on_stored=self.worker.background.wake)
        smtp = settings.smtp
        self.ingress = IngressServer(
            IngressHandler(self.book, self.spool),
            hostname=smtp.hostname or settings.site.domain,
            max_message_bytes=smtp.max_message_bytes,
            lmtp=smtp.protocol == "lmtp",
            tls=ssl_context(smtp.tls_cert, smtp.tls_key) if smtp.tls_cert and smtp.tls_key else None,
            require_tls=smtp.require_tls,
        )
        self.jobs = build_jobs(parts, engine, self._wake_senders)
        self.scheduler = build_scheduler(settings.site.timezone, self.jobs.tick)
        site = build_site(parts, engine, self._wake_senders)
        self.web = WebServer(build(site), settings.web.host, settings.web.port)
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
