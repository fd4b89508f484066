"""Durable storage of acknowledged mail: one writer thread, group commit.

``store()`` returns only once the message's ``received`` row is committed; the SMTP 250 follows. The
writer thread takes every message waiting at the moment it is free and commits them together, so
concurrent DATA commands share one fsync: durability per message, throughput per batch. (Measured:
``asyncio.to_thread`` per message was slowest — threads fight over the GIL and SQLite's write lock.)
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import Engine, insert
from sqlalchemy.exc import SQLAlchemyError

from listserv.db import utc_now
from listserv.models import Received

log = logging.getLogger(__name__)
MAX_BATCH = 256


class StorageError(Exception):
    """The message could not be committed; the sender should retry (SMTP 451)."""


@dataclass(frozen=True)
class Arrival:
    peer: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message_id: str
    raw: bytes


class Spool:
    def __init__(self, engine: Engine, on_stored: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._on_stored = on_stored
        self._waiting: queue.SimpleQueue[tuple[Arrival, Future[int]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_forever, name="spool-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Commit what is waiting, then end the writer thread."""
        self._waiting.put(None)
        self._thread.join()

    async def store(self, arrival: Arrival) -> int:
        """The new row's id once committed; StorageError when it could not be."""
        done: Future[int] = Future()
        self._waiting.put((arrival, done))
        return await asyncio.wrap_future(done)

    def _write_forever(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if batch:
                self._commit(batch)

    def _next_batch(self) -> tuple[list[tuple[Arrival, Future[int]]], bool]:
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

    def _commit(self, batch: list[tuple[Arrival, Future[int]]]) -> None:
        now = utc_now()
        rows = [
            {
                "received_at": now,
                "peer": arrival.peer,
                "mail_from": arrival.mail_from,
                "rcpt_tos": list(arrival.rcpt_tos),
                "message_id": arrival.message_id,
                "raw": arrival.raw,
                "state": "new",
                "attempts": 0,
            }
            for arrival, _ in batch
        ]
        statement = insert(Received).returning(Received.id, sort_by_parameter_order=True)
        try:
            with self._engine.begin() as connection:
                ids = connection.execute(statement, rows).scalars().all()
        except SQLAlchemyError as error:
            log.error("could not store %d message(s): %s", len(batch), error)
            for arrival, done in batch:
                log.error("not stored, sender asked to retry: %s", arrival.message_id)
                done.set_exception(StorageError(str(error)))
            return
        for (_, done), row_id in zip(batch, ids, strict=True):
            done.set_result(row_id)
        self._on_stored()
