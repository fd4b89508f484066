"""The composition root: one event loop, every part built here from one Settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.admin.erasure import Eraser, ErasureError, Request
from listserv.admin.erasure_member import erase_member as erase_person
from listserv.admin.erasure_member import erase_on_request
from listserv.config import Settings
from listserv.intake.dispatch import Dispatch, DnsLookup, Handlers
from listserv.intake.door import Door
from listserv.intake.submit import submit_received
from listserv.intake.worker import Worker
from listserv.mail.addresses import AddressBook
from listserv.mail.templates import MailTemplates
from listserv.membership.bounces import HARD, Bounces
from listserv.membership.guests import GUEST, Guests
from listserv.membership.owner import NOMINATION, OwnerMail
from listserv.membership.requests import Requests
from listserv.membership.standing import Standing
from listserv.moderation.openings import Openings
from listserv.moderation.proposals import Proposals
from listserv.moderation.queue import ANY_KIND, ERASURE, Consequences, Moderation, tell_sender_rejected
from listserv.moderation.reminders import Reminders
from listserv.moderation.replies import ModeratorMail
from listserv.outgoing.delivery import Deliverer
from listserv.outgoing.notices import Notifier
from listserv.outgoing.outbox import OutboxSender
from listserv.outgoing.personal import MemberTokens
from listserv.outgoing.publish import Publisher
from listserv.outgoing.signing import Signer
from listserv.outgoing.transport import Transport
from listserv.scheduler import Jobs, build_scheduler
from listserv.store.db import utc_now
from listserv.store.keys import load_or_create_secret
from listserv.store.models import Held, Received
from listserv.store.wakeup import DELIVERY, OUTBOX, Listener, notifier_name, notify_outgoing, notify_within
from listserv.web.app import Site
from listserv.web.routes import build, build_pages
from listserv.web.server import WebServer, WebWorkers, serve_inherited
from listserv.weekly.announcements import Announcer
from listserv.weekly.prompts import Weekly
from listserv.weekly.report import Reports
from listserv.weekly.report_chart import bars_png

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parts:
    """The forum's services, each built once from one Settings; ``serve`` and the command line share them."""

    settings: Settings
    clock: Callable[[], datetime]
    book: AddressBook
    templates: MailTemplates
    secret: bytes
    tokens: MemberTokens  # personal copies' tokens (one-click unsubscribe, VERP)
    notifier: Notifier
    publisher: Publisher
    moderation: Moderation
    proposals: Proposals
    requests: Requests
    owner: OwnerMail
    standing: Standing
    openings: Openings
    reminders: Reminders
    weekly: Weekly
    eraser: Eraser
    guests: Guests
    reports: Reports
    announcer: Announcer


def build_parts(
    settings: Settings, clock: Callable[[], datetime] = utc_now, book: AddressBook | None = None
) -> Parts:
    """``book``: the one ``serve``'s door already answers RCPT from (its From-header cache is shared)."""
    book = book or AddressBook(settings.site.domain, settings.lists)
    templates = MailTemplates(settings.site.template_dirs, settings.site.timezone)
    secret = load_or_create_secret(settings.site.data_dir / "secret")
    tokens = MemberTokens(load_or_create_secret(settings.site.data_dir / "member-key"))
    notifier = Notifier(settings, book, templates, clock)
    publisher = Publisher(settings, book, templates)
    consequences: dict[tuple[str, str], Callable[[Session, Held, str], None]] = {}
    moderation = Moderation(settings, notifier, book, templates, secret, clock, consequences)
    proposals = Proposals(settings, notifier, book, secret, clock)
    standing = Standing(settings, moderation, notifier, book, templates, clock, secret)
    requests = Requests(settings, moderation, notifier, book, templates, clock, standing, secret)
    eraser = Eraser(settings, secret, publisher, clock)
    guests = Guests(settings, moderation, notifier, templates, secret, clock)
    owner = OwnerMail(settings, moderation, notifier, book, templates, requests, secret, clock)
    openings = Openings(settings, moderation, publisher, notifier, templates, clock)
    consequences.update(decision_consequences(publisher, proposals, requests, notifier, clock, openings))
    consequences.update({("approve", GUEST): guests.approve, ("reject", GUEST): guests.reject})
    consequences.update({("approve", NOMINATION): owner.approve, ("reject", NOMINATION): owner.reject})
    consequences.update(
        {(action, ERASURE): then for action, then in erase_on_request(eraser, notifier).items()}
    )
    return Parts(
        settings,
        clock,
        book,
        templates,
        secret,
        tokens,
        notifier,
        publisher,
        moderation,
        proposals,
        requests,
        owner,
        standing,
        openings,
        Reminders(settings, moderation, notifier, templates, secret, clock),
        Weekly(settings, notifier, book, templates, publisher),
        eraser,
        guests,
        Reports(settings, book, templates, bars_png),
        Announcer(settings, templates, publisher),
    )


def decision_consequences(
    publisher: Publisher,
    proposals: Proposals,
    requests: Requests,
    notifier: Notifier,
    clock: Callable[[], datetime],
    openings: Openings,
) -> Consequences:
    """What a won decision leads to, by (action, kind of held item); discarding leads to nothing. A
    member's erasure request (approve/erasure, reject/erasure) is added by ``build_parts``."""

    def publish(session: Session, held: Held, reason: str) -> None:
        if openings.defer(session, held):  # its room is closed: published at the opening
            return
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


def build_site(
    parts: Parts,
    engine: Engine,
    wake_senders: Callable[[], None] = lambda: None,
    wake_worker: Callable[[], None] = lambda: None,
) -> Site:
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
        parts.tokens,
        wake_senders=wake_senders,
        erase_message=erase_message,
        erase_member=erase_member,
        standing=parts.standing,
        owner=parts.owner,
        announcer=parts.announcer,
        submit=partial(submit_received, engine, wake_worker),
    )


def build_jobs(parts: Parts, engine: Engine, after: Callable[[], None]) -> Jobs:
    return Jobs(
        engine,
        parts.settings,
        parts.weekly,
        parts.reminders,
        parts.publisher,
        parts.clock,
        after,
        parts.standing,
        parts.openings,
        parts.guests,
        parts.reports,
    )


class Forum:
    """Everything ``listserv serve`` runs: SMTP ingress, spool writer, worker, senders, scheduler, web."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        clock: Callable[[], datetime] = utc_now,
        dns: DnsLookup | None = None,
        web_worker_command: list[str] | None = None,
        door: Door | None = None,
    ) -> None:
        """``door``: the SMTP ingress and spool ``serve`` opened before importing this module (staged
        start); built here when not given."""
        self.settings = settings
        self.door = door or Door(settings, engine)
        extra = settings.web.workers - 1
        self.web_workers = WebWorkers(web_worker_command, extra) if web_worker_command and extra else None
        parts = build_parts(settings, clock, self.door.book)
        self.parts = parts
        self.book = parts.book
        relay = settings.delivery.relay
        transport = Transport(
            relay,
            settings.site.data_dir / "outbox",
            timeout=relay.timeout_seconds if relay is not None else 60.0,
            signer=build_signer(settings),
        )
        self.outbox = OutboxSender(engine, settings.delivery, transport, clock)
        self.bounces = Bounces(settings, parts.notifier, parts.book, parts.secret, parts.tokens, clock)
        self.deliverer = Deliverer(
            engine,
            settings,
            transport,
            clock,
            parts.tokens,
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
            Handlers(
                replies,
                parts.requests,
                self.bounces,
                parts.owner,
                parts.openings,
                parts.standing,
                parts.guests,
            ),
            clock,
            dns,
        )
        self._notifier = notifier_name()  # this serve's name on its wake-ups (store/wakeup.py)
        self.worker = Worker(
            engine,
            self.book,
            dispatch,
            after=self._wake_after_group,
            ingest_busy=lambda seconds: self.door.spool.is_busy(seconds),
            announce=partial(notify_within, by=self._notifier),
        )
        self.door.wake_on_stored(self.worker.background.wake)
        self.jobs = build_jobs(parts, engine, self._wake_senders)
        self.scheduler = build_scheduler(settings.site.timezone, self.jobs.tick)
        site = build_site(parts, engine, self._wake_senders, self.worker.background.wake)
        self.web = WebServer(build(site), settings.web.host, settings.web.port)
        self.smtp_port: int | None = None
        self.web_port: int | None = None
        self.engine = engine
        self.listener = Listener(engine, self._wake_here, self._notifier)  # mail queued by others

    def _wake_here(self) -> None:
        self.outbox.background.wake()
        self.deliverer.background.wake()

    def _wake_after_group(self, queued: frozenset[str], told: bool) -> None:
        """A worker group committed mail of the kinds ``queued``: only their senders wake (holding
        posts queues notices and no deliveries), and other processes are told unless the group's own
        transaction did it (``notify_within``)."""
        if OUTBOX in queued:
            self.outbox.background.wake()
        if DELIVERY in queued:
            self.deliverer.background.wake()
        if queued and not told:
            notify_outgoing(self.engine, self._notifier)

    def _wake_senders(self) -> None:
        """Mail was queued here: our senders, and those of every other serve on the database."""
        self._wake_here()
        notify_outgoing(self.engine, self._notifier)

    async def start(self) -> None:
        """The door first (it may be open already: ``serve``'s staged start), then what processes and
        sends, the scheduler, and the web last: once ``/healthz`` answers, every part has started. A part
        that fails to start stops those already started and raises."""
        self.smtp_port = await self.door.start()
        try:
            for sender in (self.outbox, self.deliverer):
                await asyncio.to_thread(sender.requeue_interrupted)  # logs what it gives back
                sender.background.start()
            self.worker.background.start()  # resumes whatever was stored and not yet processed
            self.listener.start()
            self.scheduler.start()
            self.web_port = await self.web.start()
            if self.web_workers is not None and self.web.socket is not None:
                self.web_workers.start(self.web.socket)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "SMTP listening on %s:%d for @%s (%d lists)",
            self.settings.smtp.host,
            self.smtp_port,
            self.book.domain,
            len(self.settings.lists),
        )
        log.info("web archive on http://%s:%d", self.settings.web.host, self.web_port)

    async def stop(self) -> None:
        """Stop accepting, finish transactions under way, commit, stop processing, then sending. Also
        after a failed start: each part stops only if it was started."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if self.web_workers is not None:
            await self.web_workers.stop()
        await self.web.stop()
        await self.door.stop()
        await self.worker.background.stop()
        await self.outbox.background.stop()
        await self.deliverer.background.stop()
        self.listener.stop()
        self.deliverer.close()
        log.info("stopped cleanly")


def serve_web_only(settings: Settings, engine: Engine, fd: int) -> None:
    """``listserv web-worker``: the web side alone on ``serve``'s inherited socket (``web.workers``). Mail
    a form queues goes out when ``serve``'s senders next look, not at once."""
    site = build_site(build_parts(settings), engine)
    asyncio.run(serve_inherited(build(site), fd))
