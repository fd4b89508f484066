"""The audit trail: every decision and every attempt at one, whatever its outcome, in one shape.

Every writer fills the columns the same way: ``action`` is what was attempted (approve, reject, discard,
reply, remind, escalate), ``result`` how it ended (decided, already_decided, expired, a refusal, or for
the posting policy's own verdicts the keys of the rules that decided), ``detail`` free text (a reason,
the sender of a message the policy turned away), ``message_id`` the mail concerned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.store.models import Audit


@dataclass(frozen=True)
class AuditEntry:
    action: str
    result: str
    list_name: str | None = None
    actor: str = "system"
    channel: str = "system"  # email | web | cli | system
    held_id: int | None = None
    detail: str = ""
    message_id: str | None = None


def record(session: Session, entry: AuditEntry, at: datetime) -> None:
    session.add(
        Audit(
            at=at,
            list_name=entry.list_name,
            held_id=entry.held_id,
            actor=entry.actor,
            channel=entry.channel,
            action=entry.action,
            result=entry.result,
            detail=entry.detail[:2000],
            message_id=entry.message_id,
        )
    )


def audit_trail(session: Session, list_name: str | None = None, limit: int = 100) -> list[Audit]:
    query = select(Audit).order_by(Audit.id.desc()).limit(limit)
    if list_name:
        query = query.where(Audit.list_name == list_name)
    return list(reversed(session.scalars(query).all()))


def count_entries(
    session: Session, action: str, detail: str, since: datetime, result: str | None = None
) -> int:
    """How often ``action`` (with ``result``, if given) was recorded about ``detail`` since ``since``."""
    query = select(func.count()).select_from(Audit)
    query = query.where(Audit.action == action, Audit.detail == detail, Audit.at >= since)
    if result is not None:
        query = query.where(Audit.result == result)
    return session.scalar(query) or 0
