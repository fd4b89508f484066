"""Nothing acknowledged is lost: SIGKILL `listserv serve` mid-stream, check every 250 is stored exactly
once, restart, and check the worker resumes what was stored. SIGTERM stops cleanly. Both databases."""

from __future__ import annotations

import signal
import smtplib
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.store.db import make_engine
from listserv.store.models import Received, Route
from tests.conftest import ServeProcess, pending_count, wait_for

CLIENTS = 8


def message(client: int, number: int) -> bytes:
    return (
        f"From: Delegate {client} <delegate{client}@example.org>\r\n"
        f"To: ta-en@forum.example.org\r\n"
        f"Subject: Load {client}/{number}\r\n"
        f"Message-ID: <crash-{client}-{number}@example.org>\r\n"
        f"\r\n" + "Some words about technical assistance.\r\n" * 100
    ).encode()


class Sender(threading.Thread):
    """Posts until the server dies; keeps the Message-IDs the server answered 250 to."""

    def __init__(self, number: int, port: int) -> None:
        super().__init__(daemon=True)
        self.number = number
        self.port = port
        self.acknowledged: list[str] = []

    def run(self) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                for count in range(100_000):
                    client.sendmail(
                        "delegate@example.org", ["ta-en@forum.example.org"], message(self.number, count)
                    )
                    self.acknowledged.append(f"<crash-{self.number}-{count}@example.org>")
        except (smtplib.SMTPException, OSError):
            return  # the server was killed: what was not acknowledged may be lost


def stored_ids(url: str) -> Counter[str]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return Counter(session.scalars(select(Received.message_id)))
    finally:
        engine.dispose()


def test_sigkill_loses_nothing_acknowledged(serve_config: tuple[Path, int], db_url: str) -> None:
    config_file, port = serve_config
    server = ServeProcess(config_file, port).start()
    senders = [Sender(number, port) for number in range(CLIENTS)]
    for sender in senders:
        sender.start()
    wait_for(
        lambda: sum(len(s.acknowledged) for s in senders) >= 300, timeout=60, what="300 acknowledgements"
    )
    server.signal(signal.SIGKILL)
    assert server.wait() == -signal.SIGKILL
    for sender in senders:
        sender.join(15)
    acknowledged = [mid for sender in senders for mid in sender.acknowledged]
    counts = stored_ids(db_url)
    assert [mid for mid in acknowledged if counts[mid] != 1] == []
    assert max(counts.values()) == 1  # nothing stored twice

    restarted = ServeProcess(config_file, port).start()
    try:
        engine = make_engine(db_url)
        wait_for(lambda: pending_count(engine) == 0, timeout=60, what="the restarted worker to catch up")
        with Session(engine) as session:
            routed = session.scalar(select(func.count()).select_from(Route).where(Route.kind == "post"))
        engine.dispose()
        assert routed == len(counts)  # every stored message routed exactly once after the restart
    finally:
        restarted.stop()


def test_sigterm_finishes_the_transaction_under_way(serve_config: tuple[Path, int], db_url: str) -> None:
    config_file, port = serve_config
    server = ServeProcess(config_file, port).start()
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo()
    client.mail("delegate@example.org")
    client.rcpt("ta-en@forum.example.org")
    server.signal(signal.SIGTERM)
    time.sleep(0.3)  # the server has stopped listening but waits for this transaction
    code, _ = client.data(message(0, 0))
    assert code == 250
    client.close()
    assert server.wait(30) == 0
    assert "stopped cleanly" in server.log_text()
    assert stored_ids(db_url) == Counter({"<crash-0-0@example.org>": 1})
