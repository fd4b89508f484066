"""Guests for one discussion, as the rest of the forum asks about them: who is an active guest of which
thread, now. One definition of "active" (approved, not ended, before ``until``) for delivery, posting and
the web, so that expiry and revocation stop all three at the same moment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.orm import Session

from listserv.store.models import Guest, Member


def is_active(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    return and_(Guest.state == "active", Guest.until > now)


def guest_threads(session: Session, address: str, list_name: str, now: datetime) -> frozenset[int]:
    """The threads of ``list_name`` that ``address`` may read and post to as a guest, now."""
    if not address:
        return frozenset()
    return frozenset(
        session.scalars(
            select(Guest.thread_id)
            .join(Member, Member.id == Guest.member_id)
            .where(Member.email_key == address.lower(), Guest.list_name == list_name, is_active(now))
        )
    )


def threads_of_member(session: Session, member_id: int, now: datetime) -> dict[str, frozenset[int]]:
    """Every list → threads a signed-in person is an active guest of (the web's access)."""
    found: dict[str, set[int]] = {}
    for list_name, thread_id in session.execute(
        select(Guest.list_name, Guest.thread_id).where(Guest.member_id == member_id, is_active(now))
    ):
        found.setdefault(list_name, set()).add(thread_id)
    return {name: frozenset(ids) for name, ids in found.items()}


def thread_guests(session: Session, list_name: str, thread_id: int, now: datetime) -> list[str]:
    """The addresses that receive the posts of one thread as its guests."""
    return list(
        session.scalars(
            select(Member.email)
            .join(Guest, Guest.member_id == Member.id)
            .where(Guest.list_name == list_name, Guest.thread_id == thread_id, is_active(now))
            .order_by(Member.id)
        )
    )


def was_guest(
    list_name: str | ColumnElement[str], thread_id: int | ColumnElement[int]
) -> ColumnElement[bool]:
    """For a query of ``Member`` rows: the member was ever approved as a guest of the thread. Their posts
    stay marked as a guest's after the invitation ends."""
    return (
        select(Guest.id)
        .where(
            Guest.member_id == Member.id,
            Guest.list_name == list_name,
            Guest.thread_id == thread_id,
            Guest.state.in_(("active", "expired", "revoked")),
        )
        .exists()
    )
