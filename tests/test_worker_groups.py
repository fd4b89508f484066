"""The worker's groups (intake/worker.py): consecutive messages share one transaction, with no savepoint
per message. One that fails must not take the others down: the group is rolled back and each message
tried again alone, the good ones handled once, the bad one marked with its error."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from listserv.config import Settings
from listserv.intake.worker import Worker
from listserv.mail.addresses import AddressBook
from listserv.mail.message import Post
from listserv.outgoing.outbox import enqueue
from listserv.store.db import make_engine, utc_now
from listserv.store.models import Outbox, Received, Route
from listserv.store.wakeup import OUTBOX, notify_within
from tests.conftest import free_port


def stored(engine: Engine, settings: Settings, count: int) -> list[int]:
    with Session(engine) as session, session.begin():
        rows = [
            Received(
                rcpt_tos=[f"ta-en@{settings.site.domain}"],
                message_id=f"<group-{n}@example.org>",
                mail_from="delegate@example.org",
                raw=f"From: delegate@example.org\r\nMessage-ID: <group-{n}@example.org>\r\n"
                f"Subject: {n}\r\n\r\nText {n}.\r\n".encode(),
            )
            for n in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def test_a_failing_message_leaves_the_rest_of_its_group_handled_once(
    engine: Engine, settings: Settings
) -> None:
    ids = stored(engine, settings, 5)
    bad = ids[2]
    handled: list[int] = []

    def handle(session: Session, received: Received, post: Post, routes: list[Route]) -> None:
        if received.id == bad:
            raise RuntimeError("this message breaks the handler")
        handled.append(received.id)

    worker = Worker(engine, AddressBook(settings.site.domain, settings.lists), handle)
    assert worker.process_pending() == 5
    with Session(engine) as session:
        states = {row.id: (row.state, row.attempts, row.error) for row in session.scalars(select(Received))}
        routes = session.scalars(select(Route.received_id)).all()
    # The group was rolled back at the bad message, then each tried alone: every good one committed
    # once (a route each, none twice), the bad one left for another try with its error.
    assert sorted(routes) == sorted(set(ids) - {bad})
    assert {i: states[i][0] for i in ids} == {i: "new" if i == bad else "processed" for i in ids}
    assert states[bad][1:] == (1, "RuntimeError: this message breaks the handler")
    assert sorted(set(handled)) == sorted(set(ids) - {bad})


def test_a_database_away_at_a_groups_first_read_is_left_to_the_retry(settings: Settings) -> None:
    """Nothing taken yet: the error goes up as it is (Background waits and tries again), not as an
    IndexError from the failure path, which stopped the worker for good (seen in test_faults)."""
    away = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")  # refused at once
    worker = Worker(away, AddressBook(settings.site.domain, settings.lists))
    with pytest.raises(OperationalError):
        worker._process_group([1, 2, 3])


def test_a_group_wakes_only_the_senders_of_what_it_queued_once_committed(
    engine: Engine, settings: Settings
) -> None:
    """Held posts queue notices, not deliveries: only the outbox sender is woken, after the commit (its
    rows are there to claim), and other processes are told within the transaction on PostgreSQL. A
    group that queued nothing wakes no one (each wake-up is a claim, four round trips on PostgreSQL)."""
    ids = stored(engine, settings, 3)
    calls: list[tuple[frozenset[str], bool, int]] = []

    def handle(session: Session, received: Received, post: Post, routes: list[Route]) -> None:
        if received.id != ids[0]:
            enqueue(session, "moderator_held", "ta-en-bounces@x", ["mod@example.org"], b"notice", utc_now())

    def after(queued: frozenset[str], told: bool) -> None:
        with Session(engine) as session:  # committed: another connection sees the queued rows
            calls.append((queued, told, len(session.scalars(select(Outbox.id)).all())))

    worker = Worker(
        engine, AddressBook(settings.site.domain, settings.lists), handle, after, announce=notify_within
    )
    told = engine.dialect.name == "postgresql"
    assert worker._process_group(ids[:1]) == 1
    assert worker._process_group(ids[1:]) == 2
    assert calls == [(frozenset(), False, 0), (frozenset({OUTBOX}), told, 2)]
