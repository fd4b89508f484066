"""Who sees what. A member reads the lists they belong to; a moderator also moderates theirs; a chief
moderator reads and moderates everything; a guest (invited to one discussion) reads no list archive.

Who is signed in is a ``web_session`` row, found by the SHA-256 of the random token in the cookie: one
primary-key lookup joined to the member, per page. Signing out ends the row, so a copied cookie stops
working; a password change ends every session (the row keeps the fingerprint of the password it was
opened with). Session times are wall-clock time, as the cookie's own expiry is: the forum's clock
(``Site.clock``) is business time, which tests move by weeks."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from listserv.store.db import utc_now
from listserv.store.models import ListRow, Member, Moderator, Subscription, WebSession


@dataclass(frozen=True)
class Viewer:
    member_id: int
    email: str
    name: str
    role: str
    is_chief: bool
    language: str | None
    reads: frozenset[str]  # list names whose archive this person may read
    moderates: frozenset[str]

    def can_read(self, list_name: str) -> bool:
        return list_name in self.reads

    def can_moderate(self, list_name: str) -> bool:
        return list_name in self.moderates

    @property
    def is_moderator(self) -> bool:
        return bool(self.moderates)


def password_fingerprint(password_hash: str | None) -> str:
    """Ties a session and a reset link to the password they were made with: changing the password
    ends other sessions and spends every reset link."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def session_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, member: Member, max_age: timedelta) -> str:
    """A new signed-in session for ``member``; returns the token for the cookie. The member's ended and
    expired rows are swept here, where they are few, rather than by a job."""
    now = utc_now()
    session.execute(
        delete(WebSession).where(
            WebSession.member_id == member.id,
            or_(WebSession.ended_at.is_not(None), WebSession.created_at <= now - max_age),
        )
    )
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            id=session_key(token),
            member_id=member.id,
            password_fingerprint=password_fingerprint(member.password_hash),
            created_at=now,
        )
    )
    return token


def end_session(session: Session, token: str) -> None:
    session.execute(
        update(WebSession)
        .where(WebSession.id == session_key(token), WebSession.ended_at.is_(None))
        .values(ended_at=utc_now())
    )


def end_every_session(session: Session, member_id: int) -> None:
    session.execute(
        update(WebSession)
        .where(WebSession.member_id == member_id, WebSession.ended_at.is_(None))
        .values(ended_at=utc_now())
    )


def load_signed_in(session: Session, token: str, max_age: timedelta) -> Viewer | None:
    """The viewer of a session token, or None if the session ended, expired or its password changed."""
    found = session.execute(
        select(Member, WebSession.password_fingerprint)
        .join(WebSession, WebSession.member_id == Member.id)
        .where(
            WebSession.id == session_key(token),
            WebSession.ended_at.is_(None),
            WebSession.created_at > utc_now() - max_age,
        )
    ).first()
    if found is None:
        return None
    member, fingerprint = found
    return _viewer_of(session, member, fingerprint)


def _viewer_of(session: Session, member: Member, fingerprint: str) -> Viewer | None:
    if not member.password_hash or password_fingerprint(member.password_hash) != fingerprint:
        return None
    every = frozenset(session.scalars(select(ListRow.name).where(ListRow.active)))
    if member.is_chief:
        reads = moderates = every
    else:
        moderates = frozenset(
            session.scalars(
                select(ListRow.name)
                .join(Moderator, Moderator.list_id == ListRow.id)
                .where(Moderator.member_id == member.id)
            )
        )
        subscribed = frozenset(
            session.scalars(
                select(ListRow.name)
                .join(Subscription, Subscription.list_id == ListRow.id)
                .where(Subscription.member_id == member.id)
            )
        )
        # Guests are invited to one discussion (the governance issue), never to a whole archive.
        reads = frozenset() if member.role == "guest" else (subscribed | moderates) & every
    return Viewer(
        member.id, member.email, member.name, member.role, member.is_chief, member.language, reads, moderates
    )


def load_feed_reader(session: Session, member_id: int) -> Viewer | None:
    """The member as they are now, for a feed link (feed readers cannot sign in): the link keeps working
    across password changes, but stops the moment the member may no longer read the list."""
    member = session.get(Member, member_id)
    if member is None:
        return None
    return _viewer_of(session, member, password_fingerprint(member.password_hash))
