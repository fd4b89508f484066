"""Delivering published posts: the fan-out planned by ``publish.py``, sent and recorded.

The sender claims due rows, sends them over ``delivery.connections`` parallel connections (threads, each with
its own kept-open SMTP connections; more when the relay lacks PIPELINING, see ``UNPIPELINED_WIDTH``) and
records every result in one transaction per round:
- accepted → ``sent``, committed as soon as known (results that finish together share one commit);
  a crash re-sends at most the batches on the wire (one per connection);
- a recipient deferred (4xx) → a new row with just those recipients, retried with backoff;
- a recipient refused (5xx) → a hard bounce for that member (logged; bounce scoring builds on it);
- the whole transaction deferred or the relay down → the row waits and is retried, until
  ``delivery.give_up_after_hours``; then ``failed`` and reported by ``listserv status``.
If the database goes away mid-round, results wait in memory (their rows stay ``sending``, so nobody
sends them again) and are recorded when it returns; claimed rows not yet tried are given back.
Digest-mode members are skipped here (the digest serves them); ``none`` receive nothing.

A personal row (``delivery.personalize: on``) goes out as one transaction per recipient, each with the
member's token substituted into the one decorated copy and a VERP envelope
(``ta-en-bounces+TOKEN@``); recipients not confirmed when a connection fails midway wait in a new row,
so a crash or a drop repeats at most the rows in hand.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.background import Background
from listserv.config import Settings
from listserv.outgoing.personal import MemberTokens, verp
from listserv.outgoing.smtp_steps import Personal, Refused
from listserv.outgoing.transport import Outcome, PermanentFailure, TransientFailure, Transport, backoff
from listserv.store.claims import LostClaims, mark_claimed, mark_given_back, mark_sent
from listserv.store.db import relax_commit
from listserv.store.directory import email_key
from listserv.store.models import ArchivedPost, Delivery, ListRow, Member, SentDigest

log = logging.getLogger(__name__)
IDLE_SWEEP_SECONDS = 30.0
ROUNDS_PER_CONNECTION = 4  # rows claimed per round, per connection
# A connection that mostly waits for answers — every RCPT without PIPELINING — gets company: then this many
# times ``delivery.connections`` are used (mlmmj runs one sender per post for the same reason), each thread
# driving this many batches' connections in lockstep (``Transport.send_together``; a thread per connection
# woke once per recipient). Measured in bench/fanout.py (a). Personal transactions over PIPELINING also
# wait (a body cannot leave before the 354 of its DATA): their company is ``transport.LOCKSTEP_CONNECTIONS``.
UNPIPELINED_WIDTH = 4
RECORD_SENT = mark_sent(Delivery)
CLAIM = mark_claimed(Delivery)
GIVE_BACK = mark_given_back(Delivery)


@dataclass(frozen=True)
class Claim:
    rows: list[Delivery]
    copies: dict[tuple[str, int], bytes]  # what each row sends, by _source
    tokens: dict[tuple[str, str], str]  # (list, recipient as the row has it) → token, for personal rows


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
        tokens: MemberTokens,
        on_hard_bounce: Callable[[Session, str, str], None] = lambda *_: None,
    ) -> None:
        self._on_hard_bounce = on_hard_bounce  # (session, list name, address): scored like a DSN
        self._engine = engine
        # Results and claims may be undone by a power loss (not by a crash of the process): at worst a
        # batch goes out again, nothing is lost; and a commit no longer waits for the disk.
        self._results = engine.execution_options(sqlite_synchronous="NORMAL")
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._tokens = tokens
        connections = settings.delivery.connections
        # One single-thread lane per connection (smtplib connections are per thread): a round uses the
        # first ``width`` lanes, so exactly that many connections are ever open.
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"smtp{lane}")
            for lane in range(connections * UNPIPELINED_WIDTH)
        ]
        self._round = connections * ROUNDS_PER_CONNECTION
        self._done: queue.SimpleQueue[Attempt] = queue.SimpleQueue()
        self._untried: queue.SimpleQueue[int] = queue.SimpleQueue()  # claimed, not sent: give back
        self._recording = threading.Lock()
        self._lost = LostClaims(Delivery)
        self.background = Background("delivery", self.send_due, self._round, IDLE_SWEEP_SECONDS)

    def requeue_interrupted(self) -> int:
        """At start: rows left ``sending`` by a process that died (or by this one, before a database
        crash) go back to the queue; rows another living serve is sending stay its own."""
        self._lost.last_sweep = None
        return self._lost.sweep(self._results, self._clock())

    def close(self) -> None:
        for lane in self._lanes:
            lane.shutdown(wait=True)
        self._transport.close()

    def send_due(self) -> int:
        self._record_waiting()  # what a database outage kept from being recorded; raises while it lasts
        self._lost.sweep(self._results, self._clock())  # no row is in hand here
        claim = self._claim(len(self._lanes) * ROUNDS_PER_CONNECTION)
        width, at_once = self._shape(claim.rows)
        # Each batch's result is committed the moment it is known: a crash re-sends only the
        # batches on the wire (at most one per connection), not the whole round.
        hands = [claim.rows[lane::width] for lane in range(width)]
        done = [
            self._lanes[lane].submit(self._send_rows, rows, claim, at_once) for lane, rows in enumerate(hands)
        ]
        for future in done:
            future.result()
        self._record_waiting()  # raises if the database went away meanwhile: Background waits, retries
        return len(claim.rows)

    def _shape(self, rows: list[Delivery]) -> tuple[int, int]:
        """(threads, batches each sends at once) for this round. Without PIPELINING every RCPT waits for
        its answer: each thread sends ``UNPIPELINED_WIDTH`` batches at once, in lockstep; a personal row
        there goes one transaction after another, so a round with any gets that many times the threads."""
        connections = self._settings.delivery.connections
        if self._transport.pipelining is not False:
            return connections, 1
        if any(row.personal for row in rows):
            return connections * UNPIPELINED_WIDTH, 1
        return connections, UNPIPELINED_WIDTH

    def _send_rows(self, rows: list[Delivery], claim: Claim, at_once: int) -> None:
        for start in range(0, len(rows), at_once):
            if not self._finish(self._attempts(rows[start : start + at_once], claim)):
                # The database is away: send no more than is on the wire; the rest of this hand is
                # given back to the queue when it returns (it stays ``sending`` until then).
                for untried in rows[start + at_once :]:
                    self._untried.put(untried.id)
                return

    def _attempts(self, rows: list[Delivery], claim: Claim) -> list[Attempt]:
        if len(rows) == 1:
            return [self._attempt(rows[0], claim)]
        outcomes = self._transport.send_together(
            [(r.mail_from, r.recipients, claim.copies[_source(r)]) for r in rows]
        )
        return [_attempt_of(row, outcome) for row, outcome in zip(rows, outcomes, strict=True)]

    def _finish(self, attempts: list[Attempt]) -> bool:
        """Record ``attempts``; False if the database is away (they are kept and recorded later)."""
        for attempt in attempts:
            self._done.put(attempt)
        try:
            self._record_waiting()
        except SQLAlchemyError as error:
            log.error("delivery results kept until the database is back: %s", error)
            return False
        return True

    def _record_waiting(self) -> None:
        """Group commit: the first thread to get the lock records every result waiting, its own and
        those that arrived meanwhile; the others find theirs already committed. A failed commit puts
        them back: a row is ``sending`` until its result is recorded, never sent twice for it."""
        with self._recording:
            attempts = _drain(self._done)
            untried = _drain(self._untried)
            try:
                if attempts:
                    self._record(attempts)
                if untried:
                    self._give_back(untried)
            except SQLAlchemyError:
                for attempt in attempts:
                    self._done.put(attempt)
                for row_id in untried:
                    self._untried.put(row_id)
                raise

    def _give_back(self, row_ids: list[int]) -> None:
        with self._results.begin() as connection:
            relax_commit(connection)
            connection.execute(GIVE_BACK, {"ids": row_ids})

    def _claim(self, limit: int) -> Claim:
        now = self._clock()
        with Session(self._results, expire_on_commit=False) as session, session.begin():
            rows = list(
                session.scalars(
                    select(Delivery)
                    .where(Delivery.state == "queued", Delivery.next_attempt_at <= now)
                    .order_by(Delivery.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:  # the usual answer to a wake-up while posts are only being held: nothing more
                return Claim([], {}, {})
            relax_commit(session)
            claimed = {"ids": [r.id for r in rows], "holder": self._lost.holder, "now": now}
            session.connection().execute(CLAIM, claimed)
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
            tokens = self._tokens_of(session, [row for row in rows if row.personal])
        return Claim(rows, copies, tokens)

    def _tokens_of(self, session: Session, rows: list[Delivery]) -> dict[tuple[str, str], str]:
        """Each recipient's token, made from the ids as they are now: one query per round, not per
        recipient. An address no longer a member gets a token naming nobody (its link does nothing)."""
        if not rows:
            return {}
        lists = session.execute(select(ListRow.name, ListRow.id))
        list_ids: dict[str, int] = {name: id_ for name, id_ in lists}
        key_of = {rcpt: email_key(rcpt) for row in rows for rcpt in row.recipients}
        keys = sorted(set(key_of.values()))
        member_ids: dict[str, int] = {}
        for start in range(0, len(keys), 5000):  # under every database's limit of bound parameters
            chunk = keys[start : start + 5000]
            found = session.execute(select(Member.email_key, Member.id).where(Member.email_key.in_(chunk)))
            member_ids.update((key, id_) for key, id_ in found)
        return {
            (row.list_name, rcpt): self._tokens.make(
                member_ids.get(key_of[rcpt], 0), list_ids.get(row.list_name, 0)
            )
            for row in rows
            for rcpt in row.recipients
        }

    def _attempt(self, row: Delivery, claim: Claim) -> Attempt:
        raw = claim.copies[_source(row)]
        try:
            if row.personal:
                tokens = claim.tokens
                copies = [
                    Personal(rcpt, verp(row.mail_from, token), token)
                    for rcpt in row.recipients
                    for token in (tokens[(row.list_name, rcpt)],)
                ]
                refused = self._transport.send_personal(raw, copies)
                if len(refused) == len(copies) and all(code < 500 for code, _ in refused.values()):
                    # Nothing went and nothing is final: the row waits whole, as a deferred batch does.
                    return Attempt(row, error=_summary(refused))
                return Attempt(row, refused=refused)
            return Attempt(row, refused=self._transport.send(row.mail_from, row.recipients, raw))
        except (PermanentFailure, TransientFailure) as error:
            return _attempt_of(row, error)

    def _record(self, attempts: list[Attempt]) -> None:
        now = self._clock()
        give_up = timedelta(hours=self._settings.delivery.give_up_after_hours)
        # The usual result — every recipient accepted — is one UPDATE for all such rows, not one each.
        accepted = [attempt.row.id for attempt in attempts if attempt.refused == {}]
        if len(accepted) == len(attempts):  # the usual record: no Session (~0.1 ms a record less)
            with self._results.begin() as connection:
                relax_commit(connection)
                connection.execute(RECORD_SENT, {"ids": accepted, "now": now})
            return
        with Session(self._results) as session, session.begin():
            relax_commit(session)
            if accepted:
                session.connection().execute(RECORD_SENT, {"ids": accepted, "now": now})
            for attempt in attempts:
                row = attempt.row
                if attempt.refused == {}:
                    continue
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
        recorded = _set(
            session,
            row,
            state="sent",
            attempts=row.attempts + 1,
            sent_at=now,
            last_error=str(refused) if refused else None,
        )
        if not recorded:
            return  # recorded already (a commit that failed to answer but went through)
        deferred = [rcpt for rcpt, (code, _) in refused.items() if code < 500]
        for rcpt, (code, answer) in refused.items():
            if code >= 500:
                log.warning(
                    "hard bounce from the relay for %s (%s #%s): %d %r", rcpt, *_source(row), code, answer
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
                    personal=row.personal,
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


def _summary(refused: Refused) -> str:
    code, text = next(iter(refused.values()))
    return f"{code} {text!r} (every recipient deferred)"


def _set(session: Session, row: Delivery, **values: object) -> bool:
    """Record a claimed row's result; False if it was recorded already (it is no longer ``sending``)."""
    changed = session.execute(
        update(Delivery).where(Delivery.id == row.id, Delivery.state == "sending").values(**values)
    )
    return bool(changed.rowcount)


def _attempt_of(row: Delivery, outcome: Outcome) -> Attempt:
    """The attempt a transport outcome makes: recipients refused, or the whole message failed."""
    if isinstance(outcome, PermanentFailure):
        return Attempt(row, error=str(outcome), permanent=True)
    if isinstance(outcome, TransientFailure):
        return Attempt(row, error=str(outcome))
    return Attempt(row, refused=outcome)


def _drain(waiting: queue.SimpleQueue[Any]) -> list[Any]:
    taken = []
    while not waiting.empty():
        taken.append(waiting.get_nowait())
    return taken
