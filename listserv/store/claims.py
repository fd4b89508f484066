"""Who claimed an outgoing row, and which claims nobody will finish.

The senders of ``delivery`` and ``outbox`` rows mark what they claim ``sending`` with their name
(``host:pid``, ``claimed_by``) and the time (``next_attempt_at``), and record each result later, both
with relaxed commits (``db.relax_commit``). A row is left ``sending`` with nobody sending it when its
sender died, or when a crash of the database server undid a result but kept the claim before it. Such a
row goes back to the queue (it goes out again: "may repeat, never lose") when it is:
- claimed by this process: a sender sweeps only between rounds, when it holds no row;
- claimed by a process of this host that no longer exists, or before claims were named (migration 0018);
- claimed by another host more than ``STALE_CLAIM`` ago: no round takes that long (SMTP timeouts).
A row that another living serve is sending is left to it: two serves share a database (before, each
serve's start gave back every ``sending`` row, and a serve starting beside a busy one sent its notices
again).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Update, bindparam, or_, select, update
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
SWEEP_EVERY = timedelta(seconds=30)  # a lost result is found within this; a sweep is one indexed query
STALE_CLAIM = timedelta(minutes=30)


def claimant() -> str:
    """This process's name in ``claimed_by`` and in the scheduler's lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_gone(holder: str) -> bool:
    """``holder`` (``host:pid``) names a process of this host that no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        return False
    return False


def mark_sent(model: Any) -> Update:
    """The statement recording rows ``ids`` of ``model`` (Delivery or Outbox) sent at ``now``; only rows
    still ``sending`` (never twice). Built once per table and run on the connection: the ORM's bulk UPDATE
    cost ~110 µs more per record (a record per row of 100 recipients: a tenth of one post's fan-out to
    10,000, fanout.py (c))."""
    table = model.__table__
    return (
        update(table)
        .where(table.c.id.in_(bindparam("ids", expanding=True)), table.c.state == "sending")
        .values(state="sent", attempts=table.c.attempts + 1, sent_at=bindparam("now"), last_error=None)
    )


def mark_claimed(model: Any) -> Update:
    """The statement claiming rows ``ids`` of ``model`` for ``holder`` at ``now`` (see the module). Built
    once per table: the ORM's bulk UPDATE with an IN list of literal ids was built, keyed and compiled
    for every claim, and then walked the session's objects to set the values (most of a claim's time,
    fanout.py (c)). The loaded rows keep the values they were read with; only the database is told."""
    table = model.__table__
    return (
        update(table)
        .where(table.c.id.in_(bindparam("ids", expanding=True)))
        .values(state="sending", claimed_by=bindparam("holder"), next_attempt_at=bindparam("now"))
    )


def mark_given_back(model: Any) -> Update:
    """The statement putting claimed rows ``ids`` of ``model`` that were not tried back in the queue."""
    table = model.__table__
    return (
        update(table)
        .where(table.c.id.in_(bindparam("ids", expanding=True)), table.c.state == "sending")
        .values(state="queued")
    )


@dataclass
class LostClaims:
    """Gives back the rows of ``table`` that nobody will finish (see the module), at start and then at
    most once per ``SWEEP_EVERY``; call ``sweep`` only when the sender holds no row."""

    table: Any  # Delivery or Outbox: both have ``state``, ``claimed_by`` and ``next_attempt_at``
    holder: str = field(default_factory=claimant)
    last_sweep: datetime | None = None

    def sweep(self, engine: Engine, now: datetime) -> int:
        if self.last_sweep is not None and now - self.last_sweep < SWEEP_EVERY:
            return 0
        self.last_sweep = now
        table = self.table
        with Session(engine) as session, session.begin():
            claimants = session.scalars(select(table.claimed_by).where(table.state == "sending").distinct())
            gone = [self.holder, *(name for name in claimants if name and is_gone(name))]
            released = session.execute(
                update(table)
                .where(
                    table.state == "sending",
                    or_(
                        table.claimed_by.is_(None),
                        table.claimed_by.in_(gone),
                        table.next_attempt_at < now - STALE_CLAIM,
                    ),
                )
                .values(state="queued")
                .execution_options(synchronize_session=False)
            )
        count = int(released.rowcount or 0)
        if count:
            log.warning("%s: %d row(s) nobody was sending are queued again", table.__tablename__, count)
        return count
