"""Keeps the shape of membership over time: a deleted subscription leaves a ``subscription_ended`` row
(list, member state, joined, left — no person). Every way a subscription ends goes through the ORM
(``session.delete``, a member's cascade, ``subscriptions.remove``), so one mapper event sees them all;
a bulk ``DELETE`` statement would not be seen, and none is used on ``subscription``. ``models``
registers it on ``Subscription``: whoever can delete one has it, and importing ``listserv.store`` alone
(``serve``'s door: the engine, the spool) does not load the ORM models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from listserv.store.base import Base
from listserv.store.db import utc_now
from listserv.store.figures import SubscriptionEnded


def record_end(mapper: Any, connection: Connection, target: Any) -> None:
    """Before the row goes, and before its member's row when a member is deleted with their lists (the
    ORM deletes children first), so both can still be read. The tables by name: ``models`` imports this
    module, so this one cannot import the models."""
    lists, members = Base.metadata.tables["mailing_list"], Base.metadata.tables["member"]
    list_name = connection.scalar(select(lists.c.name).where(lists.c.id == target.list_id))
    country = connection.scalar(select(members.c.country).where(members.c.id == target.member_id))
    if list_name is None:
        return
    connection.execute(
        insert(SubscriptionEnded).values(
            list_name=list_name,
            country=country or "",
            joined_at=target.created_at,
            left_at=utc_now(),
        )
    )
