"""Durable storage of acknowledged mail: one writer thread, group commit.

``store()`` returns only once the message's ``received`` row is committed; the SMTP 250 follows.
The writer thread takes every message waiting when it is free and commits them in one transaction,
so concurrent DATA commands share one fsync: durability per message, throughput per batch. The
fsync happens off the event loop, and a whole batch is answered with one wake-up of the loop.
Measured with bench/ingest.py: committing in the loop itself blocked it on every fsync (no faster);
``asyncio.to_thread`` per message was slowest of all (threads fight over the GIL and the lock).
Writes go through the raw driver connection: on this path the ORM's per-row work cost more than
the commit itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from listserv.store.db import utc_now

log = logging.getLogger(__name__)
MAX_BATCH = 256


class StorageError(Exception):
    """The message could not be committed; the sender should retry (SMTP 451)."""

    def __init__(self, message: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


# How each database says it has no room: SQLite's SQLITE_FULL, PostgreSQL's class 53 (DiskFull 53100,
# and 53000 insufficient resources), the OS's ENOSPC.
DISK_FULL = ("database or disk is full", "no space left on device", "could not extend file", "diskfull")


def is_disk_full(error: BaseException) -> bool:
    text = f"{type(getattr(error, 'orig', None) or error).__name__} {error}".lower()
    return any(sign in text for sign in DISK_FULL)


@dataclass(frozen=True)
class Arrival:
    peer: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message_id: str
    raw: bytes


Waiting = tuple[Arrival, "asyncio.Future[None]"]


class _Writer:
    """Inserts a batch of arrivals in one transaction on its own raw driver connection."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._connection: Any = None
        marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        json_value = marker if self.sqlite else f"{marker}::json"
        self._statement = (
            "INSERT INTO received (received_at, peer, mail_from, rcpt_tos, message_id, raw, state, attempts) "
            f"VALUES ({marker}, {marker}, {marker}, {json_value}, {marker}, {marker}, 'new', 0)"
        )

    def insert(self, arrivals: list[Arrival]) -> None:
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        now = utc_now().replace(tzinfo=None)  # naive UTC, as UTCDateTime stores it
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else now  # SQLAlchemy's SQLite format
        rows = [
            (stamp, a.peer, a.mail_from, json.dumps(list(a.rcpt_tos)), a.message_id, a.raw) for a in arrivals
        ]
        cursor = self._connection.cursor()
        try:
            if self.sqlite:
                cursor.execute("BEGIN IMMEDIATE")  # we manage SQLite transactions ourselves (db.py)
            cursor.executemany(self._statement, rows)
            self._connection.commit() if not self.sqlite else cursor.execute("COMMIT")
        except Exception:
            with contextlib.suppress(Exception):
                cursor.close()  # before the connection: closing it after raised and hid the cause
                self._connection.rollback()
            self.close()
            raise
        cursor.close()

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.invalidate()
            self._connection = None


class Spool:
    def __init__(self, engine: Engine, on_stored: Callable[[], None] = lambda: None) -> None:
        self._writer = _Writer(engine)
        self._on_stored = on_stored
        self.last_stored = 0.0  # time.monotonic() of the last commit: tells the worker ingest is busy
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: queue.SimpleQueue[Waiting | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_forever, name="spool-writer", daemon=True)

    def is_busy(self, within_seconds: float) -> bool:
        return time.monotonic() - self.last_stored < within_seconds

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def stop(self) -> None:
        """Commit what is waiting, then end the writer thread."""
        self._waiting.put(None)
        self._thread.join()

    async def store(self, arrival: Arrival) -> None:
        """Return once committed; raise StorageError when it could not be."""
        assert self._loop is not None, "Spool.start() first"
        stored: asyncio.Future[None] = self._loop.create_future()
        self._waiting.put((arrival, stored))
        await stored

    def _write_forever(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if batch:
                self._commit(batch)
        self._writer.close()

    def _next_batch(self) -> tuple[list[Waiting], bool]:
        first = self._waiting.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                item = self._waiting.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, batch: list[Waiting]) -> None:
        error: Exception | None = None
        try:
            self._writer.insert([arrival for arrival, _ in batch])
        except Exception as failure:  # any driver error: the senders retry, nothing was acknowledged
            error = failure
            log.error("could not store %d message(s): %s", len(batch), failure)
        else:
            self.last_stored = time.monotonic()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._answer, batch, error)  # one wake-up per batch

    def _answer(self, batch: list[Waiting], error: Exception | None) -> None:
        for arrival, stored in batch:
            if stored.done():  # the client went away while we committed
                continue
            if error is None:
                stored.set_result(None)
            else:
                log.error("not stored, sender asked to retry: %s", arrival.message_id)
                stored.set_exception(StorageError(str(error), is_disk_full(error)))
        if error is None:
            self._on_stored()
