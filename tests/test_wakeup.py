"""Wake-ups across processes (store/wakeup.py), on SQLite (the wake file) and PostgreSQL (NOTIFY): a
notice from another process, or from another serve in this one, wakes this serve's senders; its own
notice does not wake them a second time (it woke them itself, and each extra wake-up is a claim that
finds nothing)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from listserv.store.wakeup import POLL_SECONDS, Listener, notifier_name, notify_outgoing, notify_within

NOTIFY_FROM_ANOTHER_PROCESS = (
    "import sys; from listserv.store.db import make_engine; "
    "from listserv.store.wakeup import notify_outgoing; notify_outgoing(make_engine(sys.argv[1]))"
)


def test_others_wake_us_and_our_own_notice_does_not(engine: Engine) -> None:
    woken, name = threading.Event(), notifier_name()
    listener = Listener(engine, woken.set, name)
    listener.start()
    try:
        woken.wait(5)  # PostgreSQL wakes once on LISTEN (whatever was notified before it listened)
        time.sleep(4 * POLL_SECONDS)  # SQLite: the watcher has read the file's time
        woken.clear()
        notify_outgoing(engine, name)
        assert not woken.wait(4 * POLL_SECONDS + 1.0), "our own notice woke us again"
        notify_outgoing(engine, notifier_name())  # another serve in this process (the tests run such)
        assert woken.wait(10), "another serve's notice did not wake us"
        woken.clear()
        url = engine.url.render_as_string(hide_password=False)
        subprocess.run([sys.executable, "-c", NOTIFY_FROM_ANOTHER_PROCESS, url], check=True, timeout=60)
        assert woken.wait(10), "another process's notice (the command line's) did not wake us"
    finally:
        listener.stop()


def test_a_notice_within_a_transaction_is_heard_at_its_commit_and_never_after_a_rollback(
    engine: Engine,
) -> None:
    """The worker's group tells other processes inside its own transaction (``notify_within``):
    PostgreSQL delivers the NOTIFY with the commit, when the queued rows are there to be claimed, and
    drops it with a rollback. SQLite has no such notice: False, and the caller touches the file."""
    if engine.dialect.name != "postgresql":
        with Session(engine) as session, session.begin():
            assert notify_within(session, notifier_name()) is False
        return
    woken = threading.Event()
    listener = Listener(engine, woken.set, notifier_name())
    listener.start()
    try:
        assert woken.wait(5), "the listener did not start listening"
        woken.clear()
        with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
            assert notify_within(session, notifier_name()) is True
            raise RuntimeError("the group failed")
        assert not woken.wait(2.0), "a rolled-back transaction's notice was heard"
        with Session(engine) as session, session.begin():
            assert notify_within(session, notifier_name()) is True
            assert not woken.wait(1.0), "the notice was heard before its transaction committed"
        assert woken.wait(10), "the committed notice was not heard"
    finally:
        listener.stop()
