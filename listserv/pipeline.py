"""The worker: takes stored messages in order and runs the steps on each, off the protocol path.

Each message is handled in one transaction that also marks it processed, so a crash replays it from
the last committed state: nothing acknowledged is lost, nothing is done twice. A message that keeps
failing is marked ``failed`` after ``MAX_ATTEMPTS`` and logged with its Message-ID for the operator
(``listserv received --failed`` lists them); it is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.addresses import AddressBook, Recipient
from listserv.db import utc_now
from listserv.message import Post, parse_post
from listserv.models import Received, Route

log = logging.getLogger(__name__)
BATCH = 100
MAX_ATTEMPTS = 5
IDLE_SWEEP_SECONDS = 30.0
RETRY_SECONDS = 2.0


def route_message(session: Session, received: Received, book: AddressBook) -> list[Route]:
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
    return routes


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
    def __init__(self, engine: Engine, book: AddressBook) -> None:
        self._engine = engine
        self._book = book
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker")
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="worker")

    def wake(self) -> None:
        """Thread-safe: new mail is stored."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def stop(self) -> None:
        """Finish the message in hand (its transaction commits), then end. A flag, not cancel():
        in Python 3.11 a cancel that races a wakeup can be swallowed by wait_for."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._wakeup.clear()
            try:
                handled = await loop.run_in_executor(self._executor, self.process_pending)
            except SQLAlchemyError as error:  # the database is away: keep the mail, try again later
                log.error("cannot read stored mail (%s); retrying in %.0f s", error, RETRY_SECONDS)
                handled = 0
                await asyncio.sleep(RETRY_SECONDS)
            if handled < BATCH and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_SWEEP_SECONDS):
                        await self._wakeup.wait()

    def process_pending(self) -> int:
        """Handle up to BATCH stored messages in arrival order; return how many were tried."""
        if self._stopping:
            return 0
        with Session(self._engine) as session:
            ids = session.scalars(
                select(Received.id).where(Received.state == "new").order_by(Received.id).limit(BATCH)
            ).all()
        for received_id in ids:
            if self._stopping:
                break
            self._process_one(received_id)
        return len(ids)

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
                route_message(session, received, self._book)
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
