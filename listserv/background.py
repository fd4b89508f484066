"""A loop that runs blocking work off the event loop until told to stop: the worker and the outbox
sender are both one of these. ``work()`` returns how many items it handled; a full batch means more
may be waiting, so it runs again at once, otherwise it sleeps until woken or the idle sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)
RETRY_SECONDS = 2.0


class Background:
    def __init__(self, name: str, work: Callable[[], int], batch: int, idle_seconds: float) -> None:
        self.name = name
        self._work = work
        self._batch = batch
        self._idle_seconds = idle_seconds
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Thread-safe: there is new work."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def stop(self) -> None:
        """Let the item in hand finish (its transaction commits), then end. A flag, not cancel():
        in Python 3.11 a cancel that races a wakeup can be swallowed by wait_for."""
        self.stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            self._wakeup.clear()
            try:
                handled = await loop.run_in_executor(self._executor, self._work)
            except SQLAlchemyError as error:  # the database is away: nothing is lost, try again later
                log.error("%s: database unavailable (%s); retry in %.0f s", self.name, error, RETRY_SECONDS)
                handled = 0
                await asyncio.sleep(RETRY_SECONDS)
            if handled < self._batch and not self.stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle_seconds):
                        await self._wakeup.wait()
