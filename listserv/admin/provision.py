"""``listserv init``: make the database match config.yaml's lists and moderators. Idempotent."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.store import schema
from listserv.store.directory import email_key, find_member
from listserv.store.models import ListRow, Member, Moderator, Subscription


@dataclass
class Changes:
    lines: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        self.lines.append(line)


def initialise(engine: Engine, settings: Settings) -> Changes:
    schema.upgrade(engine)
    with Session(engine) as session, session.begin():
        changes = Changes()
        lists = sync_lists(session, settings, changes)
        sync_moderators(session, settings, lists, changes)
        return changes


def sync_lists(session: Session, settings: Settings, changes: Changes) -> dict[str, ListRow]:
    existing = {ml.name: ml for ml in session.scalars(select(ListRow))}
    for name, wanted in settings.lists.items():
        row = existing.get(name)
        if row is None:
            row = ListRow(name=name, room=wanted.room, language=wanted.language, title=wanted.title)
            session.add(row)
            existing[name] = row
            changes.note(f"list {name}: created")
            continue
        fields = {"room": wanted.room, "language": wanted.language, "title": wanted.title, "active": True}
        for key, value in fields.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
                changes.note(f"list {name}: {key} set to {value!r}")
    for name, row in existing.items():
        # A list dropped from the config keeps its archive and members; it just stops receiving mail.
        if name not in settings.lists and row.active:
            row.active = False
            changes.note(f"list {name}: deactivated (no longer in the config)")
    session.flush()
    return existing


def sync_moderators(
    session: Session, settings: Settings, lists: dict[str, ListRow], changes: Changes
) -> None:
    wanted: set[tuple[int, int]] = set()
    chiefs = {email_key(address) for address in settings.chief_moderators}
    for address in settings.chief_moderators:
        _ensure_member(session, address, changes)
    for name, mailing_list in settings.lists.items():
        for address in mailing_list.moderators:
            member = _ensure_member(session, address, changes)
            _ensure_subscription(session, member, lists[name])
            wanted.add((member.id, lists[name].id))
    for member in session.scalars(select(Member).where(Member.is_chief | Member.email_key.in_(chiefs))):
        is_chief = member.email_key in chiefs
        if member.is_chief != is_chief:
            member.is_chief = is_chief
            changes.note(f"chief moderator {member.email}: {'added' if is_chief else 'removed'}")
    current = {(m.member_id, m.list_id) for m in session.scalars(select(Moderator))}
    for member_id, list_id in sorted(wanted - current):
        session.add(Moderator(member_id=member_id, list_id=list_id))
        changes.note(f"{_describe(session, member_id, list_id)}: moderator added")
    for member_id, list_id in sorted(current - wanted):
        session.execute(
            delete(Moderator).where(Moderator.member_id == member_id, Moderator.list_id == list_id)
        )
        changes.note(f"{_describe(session, member_id, list_id)}: moderator removed")


def _describe(session: Session, member_id: int, list_id: int) -> str:
    member, mailing_list = session.get(Member, member_id), session.get(ListRow, list_id)
    return f"list {mailing_list.name if mailing_list else list_id}, {member.email if member else member_id}"


def _ensure_member(session: Session, address: str, changes: Changes) -> Member:
    member = find_member(session, address)
    if member is None:
        member = Member(email=address, email_key=email_key(address), role="staff")
        session.add(member)
        session.flush()
        changes.note(f"member {address}: created (staff)")
    return member


def _ensure_subscription(session: Session, member: Member, mailing_list: ListRow) -> None:
    """A moderator reads their list; an existing subscription keeps the member's own choices."""
    exists = session.scalar(
        select(Subscription.id).where(
            Subscription.member_id == member.id, Subscription.list_id == mailing_list.id
        )
    )
    if exists is None:
        session.add(Subscription(member_id=member.id, list_id=mailing_list.id))
