"""``listserv serve``, started in two stages (issue 18: the first 220 within 0.6 s of the spawn).

1. The door (``intake/door.py``): the config is validated and the schema checked before, so the SMTP
   ingress answers 220 and stores each message before its 250 while nothing else is imported yet.
2. In a thread, so the loop keeps answering SMTP: the rest is imported (``listserv.forum``: the web app,
   the scheduler, the worker, the senders — most of serve's imports) and built; then started on the loop.
   If that fails, the door is closed and serve ends with the error (exit 1): never half running.

``listserv web-worker`` is here too: like serve it must not pay for the other commands' imports.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from listserv.cli.base import CommandError
from listserv.config import Settings, config_path
from listserv.intake.door import Door
from listserv.intake.ingress import TlsSetupError
from listserv.store import schema

if TYPE_CHECKING:
    from listserv.forum import Forum

log = logging.getLogger(__name__)


def cmd_serve(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if not schema.is_current(engine):
        raise CommandError("the database schema is missing or out of date; run 'listserv init' first")
    try:
        door = Door(settings, engine)
    except TlsSetupError as error:  # files named in the config
        raise CommandError(str(error)) from None
    worker = [sys.executable, "-m", "listserv", "--config", str(config_path(args.config))]
    worker += ["--log-level", args.log_level, "web-worker"]
    asyncio.run(_serve(settings, engine, door, worker))
    return 0


async def _serve(settings: Settings, engine: Engine, door: Door, web_worker_command: list[str]) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)  # a signal during stage 2 stops serve after it
    port = await door.start()
    log.info("SMTP accepting on %s:%d; starting the rest", settings.smtp.host, port)
    try:
        forum = await asyncio.to_thread(_build_rest, settings, engine, door, web_worker_command)
    except BaseException:
        await door.stop()  # what it accepted is committed: the next serve's worker processes it
        raise
    try:
        await forum.start()  # on failure it stops every part it started, the door included, and raises
    except OSError as error:  # a port taken, a web worker that cannot be spawned
        raise CommandError(f"serve could not start: {error.strerror or error}") from None
    await stopping.wait()
    log.info("signal received: shutting down")
    await forum.stop()


def _build_rest(settings: Settings, engine: Engine, door: Door, web_worker_command: list[str]) -> Forum:
    """Stage 2, off the loop: import and build everything but the door."""
    from listserv.admin.translations import check as check_translations
    from listserv.forum import Forum
    from listserv.outgoing.signing import SigningSetupError
    from listserv.outgoing.transport import RelaySetupError
    from listserv.web.i18n import LOCALE_DIR

    for warning in check_translations(settings, LOCALE_DIR)[1]:
        log.warning("%s", warning)
    try:
        return Forum(settings, engine, web_worker_command=web_worker_command, door=door)
    except (RelaySetupError, SigningSetupError) as error:  # files named in the config
        raise CommandError(str(error)) from None


def cmd_web_worker(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    from listserv.forum import serve_web_only  # the web's imports: this process serves nothing else

    serve_web_only(settings, engine, args.fd)
    return 0
