"""Who claimed an outgoing row, and the claims a crash of the database left behind.

The senders of ``delivery`` and ``outbox`` rows mark what they claim ``sending`` with their own name
(``host:pid``) and record each result later, both with relaxed commits (``db.relax_commit``). A crash of
the database server may undo the last of those commits, and may undo a result while keeping the claim
before it: the row then stays ``sending`` and nobody sends it. Between two rounds a sender holds no row,
so a row still ``sending`` under its name is such a one and goes back to the queue: it goes out again
("may repeat, never lose"), where before it waited for the next restart of serve.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
# A database crash is rare and a lost result is found within this time; a sweep is one indexed UPDATE.
SWEEP_EVERY = timedelta(seconds=30)


def claimant() -> str:
    """This process's name in ``claimed_by`` (and in the scheduler's lease)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class LostClaims:
    """Gives back the rows of ``table`` left ``sending`` under this process's name, at most once per
    ``SWEEP_EVERY``; call ``sweep`` only when the sender holds no row."""

    table: Any  # Delivery or Outbox: both have ``state`` and ``claimed_by``
    holder: str = field(default_factory=claimant)
    last_sweep: datetime | None = None

    def sweep(self, engine: Engine, now: datetime) -> int:
        if self.last_sweep is not None and now - self.last_sweep < SWEEP_EVERY:
            return 0
        self.last_sweep = now
        table = self.table
        with Session(engine) as session, session.begin():
            released = session.execute(
                update(table)
                .where(table.state == "sending", table.claimed_by == self.holder)
                .values(state="queued")
                .execution_options(synchronize_session=False)
            )
        count = int(released.rowcount or 0)
        if count:
            log.warning(
                "%s: %d row(s) whose result a database crash undid are queued again",
                table.__tablename__,
                count,
            )
        return count
