"""Wake-ups across processes: mail queued in one process (the CLI, the web, another ``serve``) starts
going out from every ``serve`` on the same database within a second or two, not at the senders' idle sweep.

- PostgreSQL: ``NOTIFY listserv_outgoing`` after the commit, or inside the transaction that queued the
  mail (``notify_within``: delivered with its commit, dropped with its rollback); every ``serve`` holds one
  connection that ``LISTEN``s (psycopg's ``notifies``) and wakes its senders. A lost listener connection
  is reopened.
- SQLite: several processes share the file, not a server; the notifying process touches
  ``<database>.wake`` (its mtime changes) and every ``serve`` looks at that one ``stat`` every
  ``POLL_SECONDS`` — microseconds, where a query per tick would take the database's lock.

Notifying is best-effort by design: a lost wake-up only costs the idle sweep's wait, never a message
(the rows are committed before anyone is told). A ``serve``'s own notice is not heard again by it: it
woke its senders itself, and each extra wake-up is a claim that finds nothing (on PostgreSQL, four round
trips; two per group of held posts in fanout.py (d)). The notice names its notifier (``host:pid`` and a
mark per ``serve``, so two in one process, as in the tests, still hear each other): PostgreSQL's
payload; on SQLite, beside the mtime it set.

Within one process, a transaction says what it queued (``note_queued``: outbox notices, deliveries of
posts) so that the worker wakes only the sender with work: a group of held posts queues notices, no
deliveries, and waking the deliverer for it was an empty claim per group.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from listserv.store.claims import claimant

log = logging.getLogger(__name__)
CHANNEL = "listserv_outgoing"
POLL_SECONDS = 0.25
RECONNECT_SECONDS = 2.0
_touched: dict[Path, tuple[int, str]] = {}  # the wake file's mtime as this process last set it, and by whom
NOTIFY = text("SELECT pg_notify(:channel, :by)")
OUTBOX = "outbox"  # notices and other single messages (outgoing/outbox.py)
DELIVERY = "delivery"  # copies of posts and digests (outgoing/delivery.py)
QUEUED = "listserv.queued"  # Session.info key: the kinds of mail the session's transaction queued


def note_queued(session: Session, kind: str) -> None:
    """Say that ``session``'s transaction queued mail of ``kind`` (OUTBOX or DELIVERY)."""
    session.info.setdefault(QUEUED, set()).add(kind)


def queued_in(session: Session) -> frozenset[str]:
    """The kinds of mail ``session`` said it queued (``note_queued``)."""
    return frozenset(session.info.get(QUEUED, ()))


def notifier_name() -> str:
    """A name for one ``serve``'s notices: its process and a mark of its own."""
    return f"{claimant()}#{secrets.token_hex(4)}"


def wake_file(engine: Engine) -> Path | None:
    """SQLite's wake file beside the database; None for PostgreSQL (or an in-memory database)."""
    if engine.dialect.name != "sqlite" or not engine.url.database or engine.url.database == ":memory:":
        return None
    return Path(engine.url.database).with_name(Path(engine.url.database).name + ".wake")


def notify_outgoing(engine: Engine, by: str = "") -> None:
    """Tell every ``serve`` on this database that mail may be due. Call it after the commit; ``by``: the
    ``notifier_name`` of the ``serve`` notifying, whose own listener will not wake it again."""
    try:
        path = wake_file(engine)
        if path is not None:
            path.touch()
            os.utime(path)  # touch() keeps the old time on some filesystems when the file exists
            _touched[path] = (_mtime(path), by)
        elif engine.dialect.name == "postgresql":
            with engine.connect() as connection:
                connection.execute(NOTIFY, {"channel": CHANNEL, "by": by})
                connection.commit()
    except (OSError, SQLAlchemyError) as error:  # the sweep will find the rows anyway
        log.warning("could not wake the senders of other processes: %s", error)


def notify_within(session: Session, by: str = "") -> bool:
    """On PostgreSQL, NOTIFY inside ``session``'s transaction: heard once its rows are committed, never
    if it rolls back, and without a connection of its own (a checkout, its ping and two round trips per
    group of held posts). False on SQLite, whose wake file can only be touched after the commit: the
    caller calls ``notify_outgoing`` then."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    session.connection().execute(NOTIFY, {"channel": CHANNEL, "by": by})
    return True


class Listener:
    """A daemon thread that calls ``wake`` whenever another process notified (see the module doc)."""

    def __init__(self, engine: Engine, wake: Callable[[], None], name: str = "") -> None:
        self._engine = engine
        self._wake = wake
        self._name = name  # the notifier_name of the serve it wakes: its own notices are not heard
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wakeup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.ident is not None:  # started: not so when another part of serve failed first
            self._thread.join(5)

    def _run(self) -> None:
        path = wake_file(self._engine)
        if path is not None:
            self._watch(path)
        elif self._engine.dialect.name == "postgresql":
            while not self._stopping.is_set():
                try:
                    self._listen()
                except Exception as error:  # the server went away: listen again when it is back
                    log.warning("wake-up listener: %s; again in %.0f s", error, RECONNECT_SECONDS)
                    self._stopping.wait(RECONNECT_SECONDS)

    def _watch(self, path: Path) -> None:
        seen = _mtime(path)
        while not self._stopping.wait(POLL_SECONDS):
            now = _mtime(path)
            if now != seen:
                seen = now
                if not self._name or _touched.get(path) != (now, self._name):
                    self._wake()

    def _listen(self) -> None:
        import psycopg  # only a PostgreSQL database needs the driver here

        dsn = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self._wake()  # anything notified while we were not listening
            while not self._stopping.is_set():
                notices = connection.notifies(timeout=1.0, stop_after=1)
                if any(not self._name or notice.payload != self._name for notice in notices):
                    self._wake()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0
