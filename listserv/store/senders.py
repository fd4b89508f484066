"""Who posted, as the posting rules and a held post's notice need to know them: member, subscribed,
staff, moderator, chief, guest of which threads, protocol accepted, name and member state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store.directory import email_key
from listserv.store.guests import guest_threads, is_active
from listserv.store.models import Guest, ListRow, Member, Subscription


@dataclass(frozen=True)
class Sender:
    """What the directory knows about the From address, relative to the list posted to."""

    address: str
    is_member: bool = False
    is_staff: bool = False
    is_moderator: bool = False
    is_chief: bool = False
    guest_threads: frozenset[int] = frozenset()  # threads of this list they are an active guest of
    protocol_accepted: bool = True  # False: a member who has not accepted the usage protocol yet
    name: str = ""  # as the directory knows them ("" for a stranger): a held post's notice shows them
    country: str = ""


def identity_of(session: Session, address: str) -> tuple[str, str]:
    """(name, member state) as the directory knows them; ('', '') for a stranger."""
    if not address:
        return "", ""
    row = session.execute(
        select(Member.name, Member.country).where(Member.email_key == email_key(address))
    ).first()
    return (row.name, row.country) if row else ("", "")


# The member, whether subscribed to the list, whether an active guest of any of its threads now: one
# query per post, built once (building it cost more Python than running it).
SENDER = select(
    Member.id,
    Member.role,
    Member.protocol_accepted_at,
    Member.name,
    Member.country,
    select(Subscription.id)
    .join(ListRow)
    .where(Subscription.member_id == Member.id, ListRow.name == bindparam("list_name"))
    .exists()
    .label("subscribed"),
    select(Guest.id)
    .where(
        Guest.member_id == Member.id, Guest.list_name == bindparam("list_name"), is_active(bindparam("now"))
    )
    .exists()
    .label("a_guest"),
).where(Member.email_key == bindparam("key"))


def sender_status(
    session: Session, address: str, list_name: str, settings: Settings, now: datetime
) -> Sender:
    """What the posting rules (and a held post's notice) need to know about ``address`` on
    ``list_name``: one query for the member, their subscription and whether they are a guest of any
    thread of the list now; a second one for those threads only when they are."""
    key = email_key(address)
    member = None
    if address:
        # On the session's connection, not through the ORM's execute (its compile state was half of
        # this query's cost); flushed first as the ORM would, so a member added earlier in this
        # transaction is seen.
        session.flush()
        query = {"key": key, "list_name": list_name, "now": now}
        member = session.connection().execute(SENDER, query).first()
    threads: frozenset[int] = frozenset()
    if member is not None and member.a_guest:
        threads = guest_threads(session, address, list_name, now)
    mailing_list = settings.lists[list_name]
    return Sender(
        address=address,
        is_member=member is not None and bool(member.subscribed),
        is_staff=member is not None and member.role == "staff",
        is_moderator=key in {email_key(m) for m in mailing_list.moderators},
        is_chief=key in {email_key(c) for c in settings.chief_moderators},
        guest_threads=threads,
        protocol_accepted=member is None or member.protocol_accepted_at is not None,
        name=member.name if member is not None else "",
        country=member.country if member is not None else "",
    )
