"""Engine and sessions: SQLite (WAL, synchronous=FULL) by default, PostgreSQL with the same code."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, DateTime, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:  # the ORM is not imported for annotations: serve's door needs the engine alone
    from sqlalchemy.orm import Session, SessionTransaction


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out — also on SQLite, which keeps no zone."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; timestamps must be aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


def utc_now() -> datetime:
    return datetime.now(UTC)


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` and use the psycopg 3 driver we depend on."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **options: Any) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine, "connect", _configure_sqlite)
        # pysqlite's own transaction handling is broken (it skips BEGIN before some statements);
        # the documented fix is to switch it off and emit BEGIN ourselves.
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def _begin_sqlite(connection: Connection) -> None:
    """IMMEDIATE by default: a WAL transaction that reads and then writes fails at once (no busy wait)
    if another writer committed in between; taking the write lock first makes it wait its turn
    instead. Read-only work (the web archive) passes ``execution_options(sqlite_deferred=True)``."""
    options = connection.get_execution_options()
    # ``sqlite_synchronous="NORMAL"``: this transaction's commit is not synced to disk (WAL), so a power
    # loss may undo it, a crash of the process cannot. For records whose loss means doing the work
    # again, never losing it: delivery and outbox results (a repeat at worst). Set per connection, only
    # on change.
    synchronous = options.get("sqlite_synchronous", "FULL")
    if connection.info.get("synchronous") != synchronous:
        connection.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
        connection.info["synchronous"] = synchronous
    connection.exec_driver_sql("BEGIN" if options.get("sqlite_deferred", False) else "BEGIN IMMEDIATE")


RELAXED_COMMIT = text("SET LOCAL synchronous_commit TO OFF")


def relax_commit(transaction: Session | Connection) -> None:
    """PostgreSQL's counterpart of ``sqlite_synchronous="NORMAL"`` for this transaction (a Session's or a
    Connection's): its commit does not wait for the disk (a power loss or a crash of the database server
    may undo it, a crash of the process cannot; ``claims.py`` finds the rows such an undo leaves claimed)."""
    connection = transaction if isinstance(transaction, Connection) else transaction.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(RELAXED_COMMIT)  # not the ORM's execute: nothing to flush or load


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we answer 250, even across a power loss.
    cursor.execute("PRAGMA synchronous=FULL")  # _begin_sqlite may relax it for one transaction
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def after_outer_commit(session: Session, action: Callable[[Session], None]) -> None:
    """Run ``action`` once the session's outermost transaction has committed what asked for it.

    SQLAlchemy's ``after_commit`` also fires when a savepoint is released (the worker handles each
    message of a group in one) while the outer transaction, and SQLite's write lock, are still held:
    an action opening its own connection would wait for its own caller. And a savepoint rolled back
    (one failed message of the group) must not run what it asked for, though the group commits."""
    asked_in = session.get_nested_transaction() or session.get_transaction()
    lineage: list[SessionTransaction] = []  # the objects themselves: a freed one's id() is reused
    while asked_in is not None:
        lineage.append(asked_in)
        asked_in = asked_in.parent
    state = {"undone": False, "done": False}

    def undone(_: Session, previous: SessionTransaction) -> None:
        if any(previous is transaction for transaction in lineage):
            state["undone"] = True

    def committed(current: Session) -> None:
        if state["undone"] or state["done"] or current.in_nested_transaction():
            return
        state["done"] = True
        action(current)

    event.listen(session, "after_soft_rollback", undone)
    event.listen(session, "after_commit", committed)
