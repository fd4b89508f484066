"""Batches sent together in lockstep to a relay without PIPELINING (aiosmtpd offers none): each outcome is
what ``send`` would give for that batch alone — recipients refused, the message refused or deferred — the
relay receives exactly the accepted ones, and one thread opens no more than ``LOCKSTEP_CONNECTIONS``
connections. No database: this is the transport alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from listserv.config import RelayConfig
from listserv.outgoing.transport import LOCKSTEP_CONNECTIONS, PermanentFailure, TransientFailure, Transport
from tests.conftest import Sink, free_port


def message(subject: str) -> bytes:
    return f"Subject: {subject}\r\n\r\nBody of {subject}.\r\n.dot at a line's start\r\n".encode()


class Refusing(Sink):
    """Answers DATA as the subject asks: ``refuse`` → 554, ``defer`` → 451."""

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        if b"Subject: refuse" in envelope.content:
            return "554 5.6.0 Content refused"
        if b"Subject: defer" in envelope.content:
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)


def test_each_batch_gets_its_own_answer_and_only_the_accepted_arrive(tmp_path: Path) -> None:
    relay = Refusing()
    relay.refuse = {"bad@example.net": "550 5.1.1 No such user", "gone@example.net": "550 5.1.1 Gone"}
    relay.controller.start()
    transport = Transport(RelayConfig(host="127.0.0.1", port=relay.controller.port), tmp_path / "outbox")
    bounces = "ta-en-bounces@f.org"
    batches = [
        (bounces, ["a1@example.net", "a2@example.net"], message("accepted one")),
        (bounces, ["b1@example.net", "bad@example.net"], message("one refused")),
        (bounces, ["bad@example.net", "gone@example.net"], message("all refused")),
        (bounces, ["c1@example.net"], message("refuse")),
        (bounces, ["d1@example.net"], message("defer")),
        (bounces, ["e1@example.net", "e2@example.net"], message("accepted two")),  # a second hand of four
    ]
    try:
        outcomes = transport.send_together(batches)
        opened = len(transport._open)
    finally:
        transport.close()
        relay.controller.stop()
    assert transport.pipelining is False
    assert opened == LOCKSTEP_CONNECTIONS
    assert outcomes[0] == {}
    assert outcomes[1] == {"bad@example.net": (550, b"5.1.1 No such user")}
    assert outcomes[2] == {
        "bad@example.net": (550, b"5.1.1 No such user"),
        "gone@example.net": (550, b"5.1.1 Gone"),
    }
    assert isinstance(outcomes[3], PermanentFailure) and "554" in str(outcomes[3])
    assert isinstance(outcomes[4], TransientFailure) and "451" in str(outcomes[4])
    assert outcomes[5] == {}
    received = sorted((message["Subject"], rcpts) for _, rcpts, message in relay.messages)
    assert received == [
        ("accepted one", ["a1@example.net", "a2@example.net"]),
        ("accepted two", ["e1@example.net", "e2@example.net"]),
        ("one refused", ["b1@example.net"]),
    ]
    assert all(b"\r\n.dot at a line's start" in raw for raw in relay.raw)  # unstuffed on arrival


def test_no_relay_defers_every_batch(tmp_path: Path) -> None:
    transport = Transport(RelayConfig(host="127.0.0.1", port=free_port()), tmp_path / "outbox")
    outcomes = transport.send_together([("b@f.org", ["x@example.net"], message("x"))] * 3)
    assert len(outcomes) == 3
    assert all(isinstance(outcome, TransientFailure) for outcome in outcomes)
    assert all("cannot connect to the relay" in str(outcome) for outcome in outcomes)
