"""What ``listserv status`` reports: counts by state, and every message given up on, with why."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.store.models import Audit, Held, Outbox, Received


def status_counts(session: Session) -> dict[str, dict[str, int]]:
    found = {}
    for name, model in (("received", Received), ("held", Held), ("outbox", Outbox)):
        rows = session.execute(select(model.state, func.count()).group_by(model.state)).all()
        found[name] = {state: count for state, count in rows}
    # What the posting policy turned away by itself (moderators' own discards are decisions, in held).
    for action, name in (("discard", "discarded"), ("reject", "refused")):
        rows = session.execute(
            select(Audit.result, func.count())
            .where(Audit.action == action, Audit.channel == "system")
            .group_by(Audit.result)
        ).all()
        found[name] = {reason: count for reason, count in rows}
    return found


def failures(session: Session, limit: int = 50) -> list[str]:
    """Stored mail the worker gave up on, and outgoing mail the relay refused for good."""
    lines = [
        f"received #{row.id} {row.message_id} ({row.attempts} attempts): {row.error}"
        for row in session.scalars(select(Received).where(Received.state == "failed").limit(limit))
    ]
    lines += [
        f"outbox #{row.id} {row.purpose} to {', '.join(row.recipients)}: {row.last_error}"
        for row in session.scalars(select(Outbox).where(Outbox.state == "failed").limit(limit))
    ]
    return lines
