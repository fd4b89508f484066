"""Outgoing mail: rows committed with the step that caused them, sent by a background loop.

A row is claimed (state ``sending``) in a short transaction, sent, then marked ``sent`` — so no
database lock is held while talking SMTP. A batch is claimed in one UPDATE; results are recorded
``RECORD_EVERY`` at a time, in one transaction (the sent ones in one UPDATE). A crash mid-send leaves
rows ``sending``; on start such rows go back to the queue: at worst the notices sent since the last
record go out twice, never lost. If the database goes away mid-send, results wait in memory (the rows
stay ``sending``) and are recorded when it returns; rows claimed and not yet tried are given back. 4xx
answers and connection failures are retried with exponential backoff and jitter until
``delivery.give_up_after_hours``; 5xx answers (or giving up) mark the row ``failed`` and log it with
its purpose, for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.background import Background
from listserv.config import DeliveryConfig
from listserv.outgoing.transport import PermanentFailure, TransientFailure, Transport, backoff
from listserv.store.claims import LostClaims, mark_claimed, mark_given_back, mark_sent
from listserv.store.db import relax_commit
from listserv.store.models import Outbox
from listserv.store.wakeup import OUTBOX, note_queued

log = logging.getLogger(__name__)
BATCH = 50
# Results recorded per transaction: one transaction per notice was a sixth of the CPU of holding posts
# on PostgreSQL (fanout.py (d)); a crash may now send up to this many notices twice.
RECORD_EVERY = 10
IDLE_SWEEP_SECONDS = 30.0
# Rows deleted once sent: the notice telling an erased person it is done is the last trace of them.
INSERT_OUTBOX = insert(Outbox.__table__)  # built once: its values are the execution's parameters
FORGET_WHEN_SENT = frozenset({"member_erasure_done"})
RECORD_SENT = mark_sent(Outbox)
CLAIM = mark_claimed(Outbox)
GIVE_BACK = mark_given_back(Outbox)


def enqueue(
    session: Session, purpose: str, mail_from: str, recipients: list[str], raw: bytes, now: datetime
) -> None:
    """Queue one message in the session's transaction. An INSERT at once, not an ORM object: nothing
    reads the row back, and the unit of work's flush cost more than the notice itself."""
    enqueue_all(session, [(purpose, mail_from, recipients, raw)], now)


def enqueue_all(session: Session, messages: list[tuple[str, str, list[str], bytes]], now: datetime) -> None:
    """Queue several messages — (purpose, envelope sender, recipients, bytes) — in one execution: a
    held post's notices to the moderators and to its sender are one INSERT."""
    if not messages:
        return
    rows = [
        {
            "purpose": purpose,
            "mail_from": mail_from,
            "recipients": recipients,
            "raw": raw,
            "created_at": now,
            "next_attempt_at": now,
            "state": "queued",
            "attempts": 0,
        }
        for purpose, mail_from, recipients, raw in messages
    ]
    # An executemany of the statement compiled once, not one multi-row VALUES: SQLAlchemy compiles a
    # multi-row VALUES anew every time (it has no cache key), a fifth of holding a post (fanout.py (d)).
    session.connection().execute(INSERT_OUTBOX, rows)
    note_queued(session, OUTBOX)


class OutboxSender:
    def __init__(
        self, engine: Engine, delivery: DeliveryConfig, transport: Transport, clock: Callable[[], datetime]
    ) -> None:
        # Claims and results may be undone by a power loss (not by a crash of the process): at worst a
        # notice goes out again, none is lost; and the commit after each notice no longer waits for
        # the disk (nor holds SQLite's write lock meanwhile, which the worker holding posts waits for).
        self._engine = engine.execution_options(sqlite_synchronous="NORMAL")
        self._delivery = delivery
        self._transport = transport
        self._clock = clock
        self.background = Background("outbox", self.send_due, BATCH, IDLE_SWEEP_SECONDS)
        # Results not yet recorded (the next ones to record, or the database was away) and rows claimed
        # but not tried: only the background thread touches them.
        self._waiting: list[Callable[[Session], None]] = []
        self._sent: list[int] = []  # the usual result, recorded for all in one UPDATE
        self._untried: list[int] = []
        self._lost = LostClaims(Outbox)

    def requeue_interrupted(self) -> int:
        """At start: rows left ``sending`` by a process that died (or by this one, before a database
        crash) go back to the queue; rows another living serve is sending stay its own."""
        self._lost.last_sweep = None
        return self._lost.sweep(self._engine, self._clock())

    def send_due(self) -> int:
        self._record_waiting()  # what a database outage kept from being recorded; raises while it lasts
        self._lost.sweep(self._engine, self._clock())  # no row is in hand here
        rows = self._claim()
        for index, row in enumerate(rows):
            self._send_one(row)
            if len(self._waiting) + len(self._sent) >= RECORD_EVERY and not self._recorded():
                self._untried.extend(untried.id for untried in rows[index + 1 :])  # given back later
                break
        self._record_waiting()  # raises if the database is still away: Background waits, retries
        return len(rows)

    def _recorded(self) -> bool:
        """Record the results in hand; False if the database is away (they wait, their rows ``sending``)."""
        try:
            self._record_waiting()
        except SQLAlchemyError as error:
            log.error("outbox results kept until the database is back: %s", error)
            return False
        return True

    def _record_waiting(self) -> None:
        """Every result in hand, in one transaction: each is idempotent, so a failed commit keeps them
        all to record again."""
        if self._waiting or self._sent:
            with Session(self._engine) as session, session.begin():
                relax_commit(session)
                if self._sent:
                    session.connection().execute(RECORD_SENT, {"ids": self._sent, "now": self._clock()})
                for record in self._waiting:
                    record(session)
            self._waiting, self._sent = [], []
        if self._untried:
            with self._engine.begin() as connection:
                relax_commit(connection)
                connection.execute(GIVE_BACK, {"ids": self._untried})
            self._untried = []

    def _claim(self) -> list[Outbox]:
        now = self._clock()
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            rows = session.scalars(
                select(Outbox)
                .where(Outbox.state == "queued", Outbox.next_attempt_at <= now)
                .order_by(Outbox.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            if rows:  # one UPDATE for the batch, not one per row at the flush
                relax_commit(session)
                claimed = {"ids": [row.id for row in rows], "holder": self._lost.holder, "now": now}
                session.connection().execute(CLAIM, claimed)
            return list(rows)

    def _send_one(self, row: Outbox) -> None:
        try:
            refused = self._transport.send(row.mail_from, row.recipients, row.raw)
        except PermanentFailure as error:
            self._waiting.append(partial(self._finish, row, "failed", str(error)))
            log.error("outbox #%d (%s) refused for good: %s", row.id, row.purpose, error)
            return
        except TransientFailure as error:
            self._defer(row, str(error))
            return
        deferred = [rcpt for rcpt, (code, _) in refused.items() if code < 500]
        if deferred:  # notices have one recipient: a deferral is the whole message's
            self._defer(row, f"deferred: {refused}")
        elif refused:
            self._waiting.append(partial(self._finish, row, "failed", f"refused: {refused}"))
            log.error("outbox #%d (%s) refused for good: %s", row.id, row.purpose, refused)
        elif row.purpose in FORGET_WHEN_SENT:
            self._waiting.append(partial(self._finish, row, "sent", None))
        else:
            self._sent.append(row.id)

    def _finish(self, row: Outbox, state: str, error: str | None, session: Session) -> None:
        if state == "sent" and row.purpose in FORGET_WHEN_SENT:
            session.execute(delete(Outbox).where(Outbox.id == row.id))
            return
        session.execute(
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.state == "sending")  # not if recorded already
            .values(
                state=state,
                attempts=row.attempts + 1,
                last_error=error,
                sent_at=self._clock() if state == "sent" else None,
            )
        )

    def _defer(self, row: Outbox, error: str) -> None:
        """A 4xx answer or no connection: tried again after a backoff, or failed once it waited too long."""
        now = self._clock()
        if now - row.created_at > timedelta(hours=self._delivery.give_up_after_hours):
            log.error(
                "outbox #%d (%s) given up after %d attempts: %s", row.id, row.purpose, row.attempts, error
            )
            self._waiting.append(partial(self._finish, row, "failed", error))
            return
        delay = backoff(row.attempts)
        log.warning("outbox #%d (%s) will be retried in %s: %s", row.id, row.purpose, delay, error)
        self._waiting.append(partial(self._requeue, row, error, now + delay))

    def _requeue(self, row: Outbox, error: str, at: datetime, session: Session) -> None:
        session.execute(
            update(Outbox)
            .where(Outbox.id == row.id, Outbox.state == "sending")  # not if recorded already
            .values(state="queued", attempts=row.attempts + 1, last_error=error, next_attempt_at=at)
        )
