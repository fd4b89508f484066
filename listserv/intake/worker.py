"""The worker: takes stored messages in order and runs the steps on each, off the protocol path.

Each message is handled in one transaction that also marks it processed, so a crash replays it from
the last committed state: nothing acknowledged is lost, nothing is done twice. A message that keeps
failing is marked ``failed`` after ``MAX_ATTEMPTS`` and logged with its Message-ID for the operator
(``listserv received --failed`` lists them); it is never dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from listserv.background import Background
from listserv.mail.addresses import AddressBook, Recipient
from listserv.mail.message import Post, parse_post
from listserv.store.db import utc_now
from listserv.store.models import Received, Route

log = logging.getLogger(__name__)
BATCH = 100
MAX_ATTEMPTS = 5
IDLE_SWEEP_SECONDS = 30.0
INGEST_QUIET_SECONDS = 0.1
YIELD_MAX_SECONDS = 1.0
Handler = Callable[[Session, Received, Post, list[Route]], None]


def route_message(session: Session, received: Received, book: AddressBook) -> tuple[Post, list[Route]]:
    """Parse one stored message and record a route per distinct recipient not seen before."""
    post = parse_post(received.raw)
    message_id = received.message_id
    routes = []
    recipients = {book.classify(rcpt) for rcpt in received.rcpt_tos} - {None}
    for recipient in sorted(recipients, key=lambda r: (r.list_name or "", r.kind, r.detail or "")):
        if _already_routed(session, recipient, message_id):
            log.info(
                "duplicate %s to %s (%s): handled once already",
                message_id,
                recipient.list_name,
                recipient.kind,
            )
            continue
        routes.append(_new_route(received, recipient, post))
    session.add_all(routes)
    return post, routes


def _already_routed(session: Session, recipient: Recipient, message_id: str) -> bool:
    query = select(Route.id).where(
        Route.list_name.is_(None) if recipient.list_name is None else Route.list_name == recipient.list_name,
        Route.kind == recipient.kind.value,
        Route.message_id == message_id,
    )
    return session.scalar(query.limit(1)) is not None


def _new_route(received: Received, recipient: Recipient, post: Post) -> Route:
    return Route(
        received_id=received.id,
        list_name=recipient.list_name,
        kind=recipient.kind.value,
        detail=recipient.detail,
        message_id=received.message_id,
        sender=post.sender,
        subject=post.subject[:1000],
    )


class Worker:
    """Routes stored mail in arrival order; ``handle`` (moderation, commands…) runs in the same
    transaction as the routing and the ``processed`` mark."""

    def __init__(
        self,
        engine: Engine,
        book: AddressBook,
        handle: Handler | None = None,
        after: Callable[[], None] = lambda: None,
        ingest_busy: Callable[[float], bool] = lambda _: False,
    ) -> None:
        self._engine = engine
        self._ingest_busy = ingest_busy
        self._book = book
        self._handle = handle
        self._after = after  # e.g. wake the outbox sender: this batch may have queued mail
        self.background = Background("worker", self.process_pending, BATCH, IDLE_SWEEP_SECONDS)

    def process_pending(self) -> int:
        """Handle up to BATCH stored messages in arrival order; return how many were tried."""
        with Session(self._engine.execution_options(sqlite_deferred=True)) as session:
            ids = session.scalars(
                select(Received.id).where(Received.state == "new").order_by(Received.id).limit(BATCH)
            ).all()
        for received_id in ids:
            if self.background.stopping:
                break
            self._yield_to_ingest()
            self._process_one(received_id)
        if ids:
            self._after()
        return len(ids)

    def _yield_to_ingest(self) -> None:
        """Acknowledging mail comes first: while the spool is committing, wait for a lull (up to
        YIELD_MAX_SECONDS, so a steady stream still sees progress). The backlog is durable; a post
        held a second later costs nobody anything, a slow 250 costs every sender."""
        deadline = time.monotonic() + YIELD_MAX_SECONDS
        while self._ingest_busy(INGEST_QUIET_SECONDS) and time.monotonic() < deadline:
            time.sleep(INGEST_QUIET_SECONDS / 4)

    def _process_one(self, received_id: int) -> None:
        try:
            with Session(self._engine) as session, session.begin():
                received = session.scalars(
                    select(Received)
                    .where(Received.id == received_id, Received.state == "new")
                    .with_for_update(skip_locked=True)  # another serve process may hold it
                ).first()
                if received is None:
                    return
                post, routes = route_message(session, received, self._book)
                log.info(
                    "received %s from <%s> for %s: %d new route(s)",
                    received.message_id,
                    received.mail_from,
                    ", ".join(received.rcpt_tos),
                    len(routes),
                )
                if self._handle is not None and routes:
                    session.flush()  # routes get their ids
                    self._handle(session, received, post, routes)
                received.state = "processed"
                received.processed_at = utc_now()
        except Exception as error:  # one bad message must not stop the others
            log.exception("processing received #%d failed", received_id)
            self._record_failure(received_id, error)

    def _record_failure(self, received_id: int, error: Exception) -> None:
        with Session(self._engine) as session, session.begin():
            received = session.get(Received, received_id)
            if received is None:
                return
            received.attempts += 1
            received.error = f"{type(error).__name__}: {error}"[:2000]
            if received.attempts >= MAX_ATTEMPTS:
                received.state = "failed"
                log.error(
                    "giving up on %s (received #%d) after %d attempts; kept for the operator",
                    received.message_id,
                    received_id,
                    received.attempts,
                )
