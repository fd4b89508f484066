"""``store.db.after_outer_commit``: what an erasure does after its commit (the erasure journal, the files,
SQLite's vacuum) waits for the outermost commit. The worker handles each message of a group in a
savepoint, and SQLAlchemy's ``after_commit`` fires at each release, while the write lock is held."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from listserv.store.db import after_outer_commit


def test_it_waits_for_the_outer_commit_and_skips_what_a_rollback_undid(engine: Engine) -> None:
    ran: list[str] = []
    with Session(engine) as session, session.begin():
        with session.begin_nested():
            after_outer_commit(session, lambda _: ran.append("kept"))
            session.execute(text("SELECT 1"))
        try:
            with session.begin_nested():
                after_outer_commit(session, lambda _: ran.append("undone"))
                raise RuntimeError("this message failed")
        except RuntimeError:
            pass
        with session.begin_nested():
            session.execute(text("SELECT 2"))
        assert ran == []  # three savepoints released or rolled back; nothing committed yet
    assert ran == ["kept"]


def test_a_plain_transaction_runs_it_once_and_a_rollback_never(engine: Engine) -> None:
    ran: list[str] = []
    with Session(engine) as session, session.begin():
        after_outer_commit(session, lambda _: ran.append("committed"))
    try:
        with Session(engine) as session, session.begin():
            after_outer_commit(session, lambda _: ran.append("rolled back"))
            raise RuntimeError("the whole transaction failed")
    except RuntimeError:
        pass
    assert ran == ["committed"]
