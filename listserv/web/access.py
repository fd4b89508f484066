"""Who sees what. A member reads the lists they belong to; a moderator also moderates theirs; a chief
moderator reads and moderates everything; a guest (invited to one discussion) reads no list archive."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from listserv.store.models import ListRow, Member, Moderator, Subscription


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


def load_viewer(session: Session, member_id: int, fingerprint: str) -> Viewer | None:
    member = session.get(Member, member_id)
    if (
        member is None
        or not member.password_hash
        or password_fingerprint(member.password_hash) != fingerprint
    ):
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
    return load_viewer(session, member_id, password_fingerprint(member.password_hash))
