"""The worker: takes stored messages in order and runs the steps on each, off the protocol path.

Each message is handled with its ``processed`` mark, and consecutive messages share one transaction
(up to GROUP of them, or ``group_seconds`` of work): a crash replays the group from the last committed
state, so nothing acknowledged is lost and nothing is done twice, while a burst pays one commit (one
fsync on SQLite) per group instead of one per message. If a message fails, or the group's commit
does, the group is rolled back and its messages are tried again one per transaction, so one bad
message never takes the others down with it. A message that keeps
failing is marked ``failed`` after ``MAX_ATTEMPTS`` and logged with its Message-ID for the operator
(``listserv received --failed`` lists them); it is never dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy import Engine, bindparam, exists, insert, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from listserv.background import Background
from listserv.mail.addresses import AddressBook, Recipient, loggable
from listserv.mail.message import Post, parse_post
from listserv.store.db import utc_now
from listserv.store.models import Received, Route
from listserv.store.wakeup import queued_in

log = logging.getLogger(__name__)
BATCH = 100
MAX_ATTEMPTS = 5
IDLE_SWEEP_SECONDS = 30.0
INGEST_QUIET_SECONDS = 0.1
YIELD_MAX_SECONDS = 1.0
GROUP = 50  # messages per transaction at most
# And at most this much work before the commit. On SQLite the group holds the database's one write
# lock, which the spool writer waits for before a 250: kept short. On PostgreSQL it locks only its own
# rows, and a longer group pays its per-group round trips (fetch, marks, NOTIFY, commit) and the
# senders' claims over more posts (fanout.py (d): ~10 % more posts held per second at 0.25 s).
GROUP_SECONDS = {"sqlite": 0.05}
GROUP_SECONDS_ELSEWHERE = 0.25
Handler = Callable[[Session, Received, Post, list[Route]], None]
Announce = Callable[[Session], bool]  # in the group's transaction: True if other processes are told
After = Callable[[frozenset[str], bool], None]  # after its commit: the kinds of mail queued, whether told
# The statements run for every message, built once: building them (coercing every value and clause)
# cost more Python than executing them.
_TWIN = aliased(Received)
# A stored message not yet handled, and whether another stored message has the same Message-ID (a
# duplicate, or the same mail sent again): only then can a route of it exist already (route_message).
NEW_MESSAGES = (
    select(Received, exists().where(_TWIN.message_id == Received.message_id, _TWIN.id != Received.id))
    .where(Received.id.in_(bindparam("received_ids", expanding=True)), Received.state == "new")
    .with_for_update(of=Received, skip_locked=True)  # another serve process may hold some
)
FETCH = 8  # stored messages read per query: one round trip each on PostgreSQL, not one per message
INSERT_ROUTE = insert(Route.__table__)
MARK_PROCESSED = (
    update(Received.__table__)
    .where(Received.__table__.c.id.in_(bindparam("received_ids", expanding=True)))
    .values(state="processed", processed_at=bindparam("at"))
)


def route_message(
    session: Session, received: Received, book: AddressBook, seen_before: bool = True
) -> tuple[Post, list[Route]]:
    """Parse one stored message and record a route per distinct recipient not seen before.

    ``seen_before`` False says that no other stored message has this Message-ID, so no route can
    have it either (a route is written only with its received row's Message-ID and goes with that
    row): the "already routed" look-ups are skipped. The routes are INSERTed at once rather than
    through the unit of work — each gets its id from the INSERT — and returned as plain, detached
    ``Route`` objects that the handlers read and nothing writes back."""
    post = parse_post(received.raw)
    message_id = received.message_id
    routes: list[Route] = []
    recipients = {book.classify(rcpt) for rcpt in received.rcpt_tos} - {None}
    for recipient in sorted(recipients, key=lambda r: (r.list_name or "", r.kind, r.detail or "")):
        # Two addresses of one list and kind (two reply codes, say) are one route: the first one.
        taken = any(r.list_name == recipient.list_name and r.kind == recipient.kind.value for r in routes)
        if taken or (seen_before and _already_routed(session, recipient, message_id)):
            log.info(
                "duplicate %s to %s (%s): handled once already",
                message_id,
                recipient.list_name,
                recipient.kind,
            )
            continue
        routes.append(_insert_route(session, received, recipient, post))
    return post, routes


def _already_routed(session: Session, recipient: Recipient, message_id: str) -> bool:
    query = select(Route.id).where(
        Route.list_name.is_(None) if recipient.list_name is None else Route.list_name == recipient.list_name,
        Route.kind == recipient.kind.value,
        Route.message_id == message_id,
    )
    return session.scalar(query.limit(1)) is not None


def _insert_route(session: Session, received: Received, recipient: Recipient, post: Post) -> Route:
    values = {
        "received_id": received.id,
        "list_name": recipient.list_name,
        "kind": recipient.kind.value,
        "detail": recipient.detail,
        "message_id": received.message_id,
        "sender": post.sender,
        "subject": post.subject[:1000],
        "created_at": utc_now(),
    }
    inserted = session.connection().execute(INSERT_ROUTE, values)
    return Route(id=inserted.inserted_primary_key[0], **values)


def _fetched(session: Session, ids: Sequence[int]) -> Iterator[tuple[int, tuple[Received, bool] | None]]:
    """Each id with its stored message and whether it has a twin (see NEW_MESSAGES), or None when
    another process holds it or handled it; read FETCH at a time, as the group goes."""
    for start in range(0, len(ids), FETCH):
        chunk = list(ids[start : start + FETCH])
        found = {
            received.id: (received, twin)
            for received, twin in session.execute(NEW_MESSAGES, {"received_ids": chunk})
        }
        for received_id in chunk:
            yield received_id, found.get(received_id)


class Worker:
    """Routes stored mail in arrival order; ``handle`` (moderation, commands…) runs in the same
    transaction as the routing and the ``processed`` mark."""

    def __init__(
        self,
        engine: Engine,
        book: AddressBook,
        handle: Handler | None = None,
        after: After = lambda queued, told: None,
        ingest_busy: Callable[[float], bool] = lambda _: False,
        announce: Announce = lambda session: False,
    ) -> None:
        self._engine = engine
        self._ingest_busy = ingest_busy
        self._book = book
        self._handle = handle
        # A group that queued mail: ``announce`` tells other processes with its commit (PostgreSQL's
        # NOTIFY), ``after`` wakes this process's senders of that kind once it is committed.
        self._announce = announce
        self._after = after
        self._group_seconds = GROUP_SECONDS.get(engine.dialect.name, GROUP_SECONDS_ELSEWHERE)
        self.background = Background("worker", self.process_pending, BATCH, IDLE_SWEEP_SECONDS)

    def process_pending(self) -> int:
        """Handle up to BATCH stored messages in arrival order; return how many were tried."""
        with Session(self._engine.execution_options(sqlite_deferred=True)) as session:
            ids = session.scalars(
                select(Received.id).where(Received.state == "new").order_by(Received.id).limit(BATCH)
            ).all()
        position = 0
        while position < len(ids) and not self.background.stopping:
            if len(ids) > 1:  # a lone message goes at once: no burst to make way for
                self._yield_to_ingest()
            position += self._process_group(ids[position:])
        return len(ids)

    def _yield_to_ingest(self) -> None:
        """Acknowledging mail comes first: while a backlog is being spooled, wait for a lull (up to
        YIELD_MAX_SECONDS, so a steady stream still sees progress). The backlog is durable; a post
        held a second later costs nobody anything, a slow 250 costs every sender. A lone message
        (one post, then quiet) is not made to wait INGEST_QUIET_SECONDS for the quiet it is in."""
        deadline = time.monotonic() + YIELD_MAX_SECONDS
        while self._ingest_busy(INGEST_QUIET_SECONDS) and time.monotonic() < deadline:
            time.sleep(INGEST_QUIET_SECONDS / 4)

    def _process_group(self, ids: Sequence[int]) -> int:
        """Handle the first messages of ``ids`` in one transaction; return how many were taken.

        No savepoint per message: two more round trips each on PostgreSQL, for a failure that is rare.
        When one message fails, or the commit does, the group is rolled back and each of its messages
        tried again alone: the bad one fails by itself, the others go through."""
        started = time.monotonic()
        taken: list[int] = []
        try:
            with Session(self._engine) as session, session.begin():
                handled: list[Received] = []
                for received_id, found in _fetched(session, ids[:GROUP]):
                    taken.append(received_id)
                    if found is not None:
                        handled.append(self._handle_one(session, *found))
                    if time.monotonic() - started >= self._group_seconds or self.background.stopping:
                        break
                self._mark_processed(session, handled)
                queued = queued_in(session)
                told = bool(queued) and self._announce(session)
        except Exception as error:
            if not taken:  # the group's first read failed (the database is away): Background retries
                raise
            if len(taken) == 1:
                log.exception("processing received #%d failed", taken[0])
                self._record_failure(taken[0], error)
                return 1
            log.warning(
                "a group of %d messages (received #%d to #%d) failed (%s: %s); each is tried again alone",
                len(taken),
                taken[0],
                taken[-1],
                type(error).__name__,
                error,
            )
            for received_id in taken:
                self._process_group([received_id])
            return len(taken)
        self._after(queued, told)  # committed: its mail goes out while the next group is handled
        return len(taken)

    def _handle_one(self, session: Session, received: Received, seen_before: bool) -> Received:
        post, routes = route_message(session, received, self._book, seen_before)
        log.info(
            "received %s from <%s> for %s: %d new route(s)",
            received.message_id,
            received.mail_from,
            loggable(received.rcpt_tos),
            len(routes),
        )
        if self._handle is not None and routes:
            self._handle(session, received, post, routes)
        return received

    @staticmethod
    def _mark_processed(session: Session, handled: list[Received]) -> None:
        """The group's marks in one statement built once, not by the unit of work (its flush of one
        changed row was a tenth of the worker's time), nor one per message (a round trip each on
        PostgreSQL); the loaded rows are told, so they read as they are stored."""
        if not handled:
            return
        processed_at = utc_now()
        ids = [received.id for received in handled]
        session.connection().execute(MARK_PROCESSED, {"received_ids": ids, "at": processed_at})
        for received in handled:
            set_committed_value(received, "state", "processed")
            set_committed_value(received, "processed_at", processed_at)

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
