"""Delivering published posts: the fan-out planned by ``publish.py``, sent and recorded.

The sender claims due rows, sends them over ``delivery.connections`` parallel connections (threads, each with
its own kept-open SMTP connection) and records every result in one transaction per round:
- accepted → ``sent``, committed as soon as known (results that finish together share one commit);
  a crash re-sends at most the batches on the wire (one per connection);
- a recipient deferred (4xx) → a new row with just those recipients, retried with backoff;
- a recipient refused (5xx) → a hard bounce for that member (logged; bounce scoring builds on it);
- the whole transaction deferred or the relay down → the row waits and is retried, until
  ``delivery.give_up_after_hours``; then ``failed`` and reported by ``listserv status``.
Digest-mode members are skipped here (the digest serves them); ``none`` receive nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from listserv.background import Background
from listserv.config import Settings
from listserv.outgoing.transport import PermanentFailure, Refused, TransientFailure, Transport, backoff
from listserv.store.models import ArchivedPost, Delivery, SentDigest

log = logging.getLogger(__name__)
IDLE_SWEEP_SECONDS = 30.0
ROUNDS_PER_CONNECTION = 4  # rows claimed per round, per connection


@dataclass(frozen=True)
class Attempt:
    row: Delivery
    refused: Refused | None = None
    error: str | None = None
    permanent: bool = False


class Deliverer:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        transport: Transport,
        clock: Callable[[], datetime],
        on_hard_bounce: Callable[[Session, str, str], None] = lambda *_: None,
    ) -> None:
        self._on_hard_bounce = on_hard_bounce  # (session, list name, address): scored like a DSN
        self._engine = engine
        self._settings = settings
        self._transport = transport
        self._clock = clock
        connections = settings.delivery.connections
        self._pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="smtp")
        self._round = connections * ROUNDS_PER_CONNECTION
        self._done: queue.SimpleQueue[Attempt] = queue.SimpleQueue()
        self._recording = threading.Lock()
        self.background = Background("delivery", self.send_due, self._round, IDLE_SWEEP_SECONDS)

    def requeue_interrupted(self) -> int:
        """Rows left ``sending`` by a crash go back to the queue (called once at start)."""
        with Session(self._engine) as session, session.begin():
            return session.execute(
                update(Delivery).where(Delivery.state == "sending").values(state="queued")
            ).rowcount

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._transport.close()

    def send_due(self) -> int:
        rows, copies = self._claim()
        # Each batch's result is committed the moment it is known: a crash re-sends only the
        # batches on the wire (at most one per connection), not the whole round.
        list(self._pool.map(lambda row: self._finish(self._attempt(row, copies[_source(row)])), rows))
        return len(rows)

    def _finish(self, attempt: Attempt) -> None:
        """Group commit: the first thread to get the lock records every result waiting, its own and
        those that arrived meanwhile; the others find theirs already committed."""
        self._done.put(attempt)
        with self._recording:
            attempts = []
            while not self._done.empty():
                attempts.append(self._done.get_nowait())
            if attempts:
                self._record(attempts)

    def _claim(self) -> tuple[list[Delivery], dict[tuple[str, int], bytes]]:
        now = self._clock()
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            rows = list(
                session.scalars(
                    select(Delivery)
                    .where(Delivery.state == "queued", Delivery.next_attempt_at <= now)
                    .order_by(Delivery.id)
                    .limit(self._round)
                    .with_for_update(skip_locked=True)
                )
            )
            if rows:
                session.execute(
                    update(Delivery).where(Delivery.id.in_([r.id for r in rows])).values(state="sending")
                )
            posts = {row.post_id for row in rows if row.post_id is not None}
            digests = {row.digest_id for row in rows if row.digest_id is not None}
            copies = {
                ("post", i): raw
                for i, raw in session.execute(
                    select(ArchivedPost.id, ArchivedPost.delivered_raw).where(ArchivedPost.id.in_(posts))
                )
            }
            copies |= {
                ("digest", i): raw
                for i, raw in session.execute(
                    select(SentDigest.id, SentDigest.raw).where(SentDigest.id.in_(digests))
                )
            }
        return rows, copies

    def _attempt(self, row: Delivery, raw: bytes) -> Attempt:
        try:
            return Attempt(row, refused=self._transport.send(row.mail_from, row.recipients, raw))
        except PermanentFailure as error:
            return Attempt(row, error=str(error), permanent=True)
        except TransientFailure as error:
            return Attempt(row, error=str(error))

    def _record(self, attempts: list[Attempt]) -> None:
        now = self._clock()
        give_up = timedelta(hours=self._settings.delivery.give_up_after_hours)
        with Session(self._engine) as session, session.begin():
            for attempt in attempts:
                row = attempt.row
                if attempt.refused is not None:
                    self._sent(session, row, attempt.refused, now, give_up)
                elif attempt.permanent or now - row.created_at > give_up:
                    _set(session, row, state="failed", attempts=row.attempts + 1, last_error=attempt.error)
                    log.error(
                        "delivery #%d of %s #%s failed for good: %s", row.id, *_source(row), attempt.error
                    )
                else:
                    _set(
                        session,
                        row,
                        state="queued",
                        attempts=row.attempts + 1,
                        last_error=attempt.error,
                        next_attempt_at=now + backoff(row.attempts),
                    )
                    log.warning(
                        "delivery #%d deferred (%d recipients): %s",
                        row.id,
                        len(row.recipients),
                        attempt.error,
                    )

    def _sent(
        self, session: Session, row: Delivery, refused: Refused, now: datetime, give_up: timedelta
    ) -> None:
        _set(
            session,
            row,
            state="sent",
            attempts=row.attempts + 1,
            sent_at=now,
            last_error=str(refused) if refused else None,
        )
        deferred = [rcpt for rcpt, (code, _) in refused.items() if code < 500]
        for rcpt, (code, text) in refused.items():
            if code >= 500:
                log.warning(
                    "hard bounce from the relay for %s (%s #%s): %d %r", rcpt, *_source(row), code, text
                )
                self._on_hard_bounce(session, row.list_name, rcpt)
        if deferred and now - row.created_at <= give_up:
            session.add(
                Delivery(
                    post_id=row.post_id,
                    digest_id=row.digest_id,
                    list_name=row.list_name,
                    mail_from=row.mail_from,
                    recipients=deferred,
                    state="queued",
                    attempts=row.attempts + 1,
                    created_at=row.created_at,
                    next_attempt_at=now + backoff(row.attempts),
                    last_error=str(refused),
                )
            )
        elif deferred:
            log.error("gave up on %d recipient(s) of %s #%s: %s", len(deferred), *_source(row), refused)


def _source(row: Delivery) -> tuple[str, int]:
    return ("post", row.post_id) if row.post_id is not None else ("digest", row.digest_id or 0)


def _set(session: Session, row: Delivery, **values: object) -> None:
    session.execute(update(Delivery).where(Delivery.id == row.id).values(**values))
