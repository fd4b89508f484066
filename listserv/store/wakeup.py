"""Wake-ups across processes: mail queued in one process (the CLI, the web, another ``serve``) starts
going out from every ``serve`` on the same database within a second or two, not at the senders' idle sweep.

- PostgreSQL: ``NOTIFY listserv_outgoing`` after the commit; every ``serve`` holds one connection that
  ``LISTEN``s (psycopg's ``notifies``) and wakes its senders. A lost listener connection is reopened.
- SQLite: several processes share the file, not a server; the notifying process touches
  ``<database>.wake`` (its mtime changes) and every ``serve`` looks at that one ``stat`` every
  ``POLL_SECONDS`` — microseconds, where a query per tick would take the database's lock.

Notifying is best-effort by design: a lost wake-up only costs the idle sweep's wait, never a message
(the rows are committed before anyone is told). A process's own notice is not heard again by it: it
woke its senders itself, and each extra wake-up is a claim that finds nothing (on PostgreSQL, four round
trips; two per group of held posts in fanout.py (d)). The payload names the notifier (``host:pid``);
on SQLite the watcher skips the mtime its own process set.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from listserv.store.claims import claimant

log = logging.getLogger(__name__)
CHANNEL = "listserv_outgoing"
POLL_SECONDS = 0.25
RECONNECT_SECONDS = 2.0
_touched_here: dict[Path, int] = {}  # the wake file's mtime as this process last set it


def wake_file(engine: Engine) -> Path | None:
    """SQLite's wake file beside the database; None for PostgreSQL (or an in-memory database)."""
    if engine.dialect.name != "sqlite" or not engine.url.database or engine.url.database == ":memory:":
        return None
    return Path(engine.url.database).with_name(Path(engine.url.database).name + ".wake")


def notify_outgoing(engine: Engine) -> None:
    """Tell every ``serve`` on this database that mail may be due. Call it after the commit."""
    try:
        path = wake_file(engine)
        if path is not None:
            path.touch()
            os.utime(path)  # touch() keeps the old time on some filesystems when the file exists
            _touched_here[path] = _mtime(path)
        elif engine.dialect.name == "postgresql":
            with engine.connect() as connection:
                notice = {"channel": CHANNEL, "by": claimant()}
                connection.execute(text("SELECT pg_notify(:channel, :by)"), notice)
                connection.commit()
    except (OSError, SQLAlchemyError) as error:  # the sweep will find the rows anyway
        log.warning("could not wake the senders of other processes: %s", error)


class Listener:
    """A daemon thread that calls ``wake`` whenever another process notified (see the module doc)."""

    def __init__(self, engine: Engine, wake: Callable[[], None]) -> None:
        self._engine = engine
        self._wake = wake
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
                if now != _touched_here.get(path):
                    self._wake()

    def _listen(self) -> None:
        import psycopg  # only a PostgreSQL database needs the driver here

        dsn = self._engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self._wake()  # anything notified while we were not listening
            here = claimant()
            while not self._stopping.is_set():
                if any(notice.payload != here for notice in connection.notifies(timeout=1.0, stop_after=1)):
                    self._wake()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0
