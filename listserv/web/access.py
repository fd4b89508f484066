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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from listserv.store.db import utc_now
from listserv.store.guests import threads_of_member
from listserv.store.keys import password_fingerprint
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
    # list name → threads this person reads as an invited guest (``store/guests``), now.
    guest_threads: Mapping[str, frozenset[int]] = field(default_factory=dict, compare=False)

    def can_read(self, list_name: str) -> bool:
        return list_name in self.reads

    def can_read_thread(self, list_name: str, thread_id: int) -> bool:
        """The one check of a discussion's pages: a reader of the list, or a guest of this thread."""
        return self.can_read(list_name) or thread_id in self.guest_threads.get(list_name, frozenset())

    def names_only(self, list_name: str) -> bool:
        """A guest of a thread sees the members' names, never their addresses."""
        return not self.can_read(list_name)

    @property
    def is_guest(self) -> bool:
        """Invited to discussions and reading no list: every other archive page answers 404 to them,
        as if it did not exist, rather than 403."""
        return not self.reads and (self.role == "guest" or bool(self.guest_threads))

    def can_moderate(self, list_name: str) -> bool:
        return list_name in self.moderates

    @property
    def is_moderator(self) -> bool:
        return bool(self.moderates)


@dataclass(eq=False)
class ViewerCache:
    """Viewers by (session, password fingerprint) for ``seconds``: loading one took four queries on every
    page. Any form post in this process empties it (sign-out, a password or language changed, a
    subscription or moderator changed); other processes' changes show within ``seconds``."""

    seconds: float = 5.0
    limit: int = 10_000
    found: dict[tuple[str, str], tuple[float, Viewer]] = field(default_factory=dict)

    def get(self, key: tuple[str, str]) -> Viewer | None:
        entry = self.found.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: tuple[str, str], viewer: Viewer) -> None:
        now = time.monotonic()
        if len(self.found) >= self.limit:  # a crowd of sessions: keep only the fresh ones
            self.found = {k: entry for k, entry in self.found.items() if entry[0] >= now}
        self.found[key] = (now + self.seconds, viewer)

    def clear(self) -> None:
        self.found = {}


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


def load_signed_in(
    session: Session, token: str, max_age: timedelta, now: datetime | None = None
) -> Viewer | None:
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
    return _viewer_of(session, member, fingerprint, now or utc_now())


def _viewer_of(session: Session, member: Member, fingerprint: str, now: datetime) -> Viewer | None:
    """``now`` is the forum's clock: a guest's invitation ends in business time, like everything the
    moderators decide."""
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
        member.id,
        member.email,
        member.name,
        member.role,
        member.is_chief,
        member.language,
        reads,
        moderates,
        threads_of_member(session, member.id, now),
    )


def load_feed_reader(session: Session, member_id: int) -> Viewer | None:
    """The member as they are now, for a feed link (feed readers cannot sign in): the link keeps working
    across password changes, but stops the moment the member may no longer read the list."""
    member = session.get(Member, member_id)
    if member is None:
        return None
    return _viewer_of(session, member, password_fingerprint(member.password_hash), utc_now())
