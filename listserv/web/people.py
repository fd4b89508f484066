"""Who the addresses a page shows are: members' names and, on a discussion's pages, which of them were
its guests — one query per page, built once with bound parameters (building it per request cost more
than running it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, false, select
from sqlalchemy.orm import Session

from listserv.store.guests import was_guest
from listserv.store.models import Member


def _members(is_guest: ColumnElement[bool]) -> Select[Any]:
    return select(Member.email_key, Member.name, is_guest).where(
        Member.email_key.in_(bindparam("keys", expanding=True))
    )


NAMES = _members(false())
NAMES_AND_GUESTS = _members(was_guest(bindparam("list_name"), bindparam("thread_id")))


def names_of(db: Session, addresses: set[str]) -> dict[str, str]:
    """Members' names for the addresses shown on a page (lowercased keys); unknown ones are left out."""
    return _people(db, addresses, NAMES, {})[0]


def people_of(
    db: Session, addresses: set[str], list_name: str, thread_id: int
) -> tuple[dict[str, str], frozenset[str]]:
    """``names_of``, and which of the addresses were guests of the thread (lowercased), in one query."""
    return _people(db, addresses, NAMES_AND_GUESTS, {"list_name": list_name, "thread_id": thread_id})


def _people(
    db: Session, addresses: set[str], query: Select[Any], thread: dict[str, object]
) -> tuple[dict[str, str], frozenset[str]]:
    keys = {address.lower() for address in addresses if address}
    if not keys:
        return {}, frozenset()
    rows = db.execute(query, {"keys": list(keys), **thread}).all()
    return {key: name for key, name, _ in rows if name}, frozenset(key for key, _, guest in rows if guest)
