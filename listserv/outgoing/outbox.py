"""Outgoing mail: rows committed with the step that caused them, sent by a background loop.

A row is claimed (state ``sending``) in a short transaction, sent, then marked ``sent`` — so no
database lock is held while talking SMTP. A crash mid-send leaves it ``sending``; on start such rows
go back to the queue: at worst a message is sent twice, never lost. 4xx answers and connection
failures are retried with exponential backoff and jitter until ``delivery.give_up_after_hours``;
5xx answers (or giving up) mark the row ``failed`` and log it with its purpose, for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from listserv.background import Background
from listserv.config import DeliveryConfig
from listserv.outgoing.transport import PermanentFailure, TransientFailure, Transport, backoff
from listserv.store.models import Outbox

log = logging.getLogger(__name__)
BATCH = 50
IDLE_SWEEP_SECONDS = 30.0
# Rows deleted once sent: the notice telling an erased person it is done is the last trace of them.
FORGET_WHEN_SENT = frozenset({"member_erasure_done"})


def enqueue(
    session: Session, purpose: str, mail_from: str, recipients: list[str], raw: bytes, now: datetime
) -> Outbox:
    row = Outbox(
        purpose=purpose,
        mail_from=mail_from,
        recipients=recipients,
        raw=raw,
        created_at=now,
        next_attempt_at=now,
        state="queued",
        attempts=0,
    )
    session.add(row)
    return row


class OutboxSender:
    def __init__(
        self, engine: Engine, delivery: DeliveryConfig, transport: Transport, clock: Callable[[], datetime]
    ) -> None:
        self._engine = engine
        self._delivery = delivery
        self._transport = transport
        self._clock = clock
        self.background = Background("outbox", self.send_due, BATCH, IDLE_SWEEP_SECONDS)

    def requeue_interrupted(self) -> int:
        """Rows left ``sending`` by a crash go back to the queue (called once at start)."""
        with Session(self._engine) as session, session.begin():
            result = session.execute(update(Outbox).where(Outbox.state == "sending").values(state="queued"))
            return result.rowcount

    def send_due(self) -> int:
        rows = self._claim()
        for row in rows:
            self._send_one(row)
        return len(rows)

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
            for row in rows:
                row.state = "sending"
            return list(rows)

    def _send_one(self, row: Outbox) -> None:
        try:
            refused = self._transport.send(row.mail_from, row.recipients, row.raw)
        except PermanentFailure as error:
            self._finish(row, "failed", str(error))
            log.error("outbox #%d (%s) refused for good: %s", row.id, row.purpose, error)
            return
        except TransientFailure as error:
            self._retry(row, str(error))
            return
        deferred = [rcpt for rcpt, (code, _) in refused.items() if code < 500]
        if deferred:  # notices have one recipient: a deferral is the whole message's
            self._retry(row, f"deferred: {refused}")
        elif refused:
            self._finish(row, "failed", f"refused: {refused}")
            log.error("outbox #%d (%s) refused for good: %s", row.id, row.purpose, refused)
        else:
            self._finish(row, "sent", None)

    def _finish(self, row: Outbox, state: str, error: str | None) -> None:
        with Session(self._engine) as session, session.begin():
            if state == "sent" and row.purpose in FORGET_WHEN_SENT:
                session.execute(delete(Outbox).where(Outbox.id == row.id))
                return
            session.execute(
                update(Outbox)
                .where(Outbox.id == row.id)
                .values(
                    state=state,
                    attempts=row.attempts + 1,
                    last_error=error,
                    sent_at=self._clock() if state == "sent" else None,
                )
            )

    def _retry(self, row: Outbox, error: str) -> None:
        now = self._clock()
        if now - row.created_at > timedelta(hours=self._delivery.give_up_after_hours):
            self._finish(row, "failed", error)
            log.error(
                "outbox #%d (%s) given up after %d attempts: %s", row.id, row.purpose, row.attempts, error
            )
            return
        delay = backoff(row.attempts)
        with Session(self._engine) as session, session.begin():
            session.execute(
                update(Outbox)
                .where(Outbox.id == row.id)
                .values(
                    state="queued",
                    attempts=row.attempts + 1,
                    last_error=error,
                    next_attempt_at=now + delay,
                )
            )
        log.warning("outbox #%d (%s) will be retried in %s: %s", row.id, row.purpose, delay, error)
