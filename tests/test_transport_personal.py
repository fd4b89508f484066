"""Personal transactions over a relay that offers PIPELINING: Postfix's smtp-sink (from the installed
postfix package) keeps a dump of every transaction with its envelope. One transaction per recipient,
each with its own token and VERP envelope, dots stuffed right; a relay that goes away midway leaves the
recipients not yet confirmed deferred, none lost. No database: this is the transport alone."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from listserv.config import RelayConfig
from listserv.outgoing.personal import PLACEHOLDER
from listserv.outgoing.smtp_steps import Personal
from listserv.outgoing.transport import LOCKSTEP_CONNECTIONS, Transport
from tests.conftest import free_port

SMTP_SINK = next(
    (p for p in ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink") if Path(p).exists()), None
)
RAW = (
    b"Subject: Formation\r\n\r\nBonjour,\r\n.point en debut de ligne\r\nhttps://f.org/u/"
    + PLACEHOLDER
    + b"\r\n"
)


@pytest.fixture
def dump_dir() -> Iterator[Path]:
    """Where smtp-sink writes: it drops to ``nobody`` (it refuses root), who cannot enter pytest's
    private tmp folders."""
    folder = Path(tempfile.mkdtemp(prefix="listserv-smtp-sink-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_sink(folder: Path, *options: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    if SMTP_SINK is None:
        pytest.skip("Postfix's smtp-sink is not installed (apt-get install postfix)")
    port, dump = free_port(), folder / "dump"
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    sink = subprocess.Popen([SMTP_SINK, *user, "-D", str(dump), *options, f"127.0.0.1:{port}", "10"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return sink, port, dump
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise AssertionError("smtp-sink did not start")


@pytest.fixture
def copies() -> Iterator[list[Personal]]:
    yield [
        Personal(f"m{n}@example.net", f"ta-en-bounces+{'t' * 31}{n}@f.org", f"{'t' * 31}{n}")
        for n in range(5)
    ]


def transactions(dump: Path) -> list[tuple[str, str, bytes]]:
    """(MAIL FROM, RCPT TO, body) of each transaction in smtp-sink's dump."""
    found = []
    for chunk in re.split(rb"(?m)^(?=X-Client-Addr:)", dump.read_bytes()):
        if chunk.strip():
            mail = re.search(rb"X-Mail-Args: <([^>]*)>", chunk).group(1).decode()
            rcpts = re.findall(rb"X-Rcpt-Args: <([^>]*)>", chunk)
            assert len(rcpts) == 1
            found.append((mail, rcpts[0].decode(), chunk.split(b"\n\n", 1)[1]))
    return found


def test_one_pipelined_transaction_per_recipient_with_its_token(
    tmp_path: Path, dump_dir: Path, copies: list[Personal]
) -> None:
    sink, port, dump = start_sink(dump_dir)
    transport = Transport(RelayConfig(host="127.0.0.1", port=port), tmp_path / "outbox")
    try:
        assert transport.send_personal(RAW, copies) == {}
        assert transport.pipelining is True
        assert transport.send_personal(RAW, copies[:1]) == {}  # the kept-open connection, again
    finally:
        transport.close()
        time.sleep(0.2)
        sink.terminate()
        sink.wait()
    sent = transactions(dump)
    # The copies go over several connections in lockstep: each once, in no particular order.
    assert sorted((mail, rcpt) for mail, rcpt, _ in sent) == sorted(
        (c.mail_from, c.rcpt) for c in [*copies, copies[0]]
    )
    tokens = {copy.rcpt: copy.token for copy in copies}
    for _, rcpt, body in sent:
        assert f"/u/{tokens[rcpt]}".encode() in body and PLACEHOLDER not in body
        assert b"\n.point en debut de ligne" in body.replace(b"\r\n", b"\n")  # stuffed, then unstuffed


def test_a_relay_gone_midway_defers_the_unconfirmed(
    tmp_path: Path, dump_dir: Path, copies: list[Personal]
) -> None:
    sink, port, dump = start_sink(dump_dir, "-M", "2")  # smtp-sink exits after two messages
    transport = Transport(RelayConfig(host="127.0.0.1", port=port), tmp_path / "outbox")
    try:
        refused = transport.send_personal(RAW, copies)
    finally:
        transport.close()
        sink.wait(10)
    delivered = [rcpt for _, rcpt, _ in transactions(dump)]
    assert len(delivered) == 2 and set(delivered) <= {c.rcpt for c in copies}
    # Every copy was confirmed or waits; only those on the wire when the sink left (one per
    # connection) may go twice.
    assert all(code == 451 for code, _ in refused.values())
    assert {c.rcpt for c in copies} == set(delivered) | set(refused)
    assert len(set(delivered) & set(refused)) <= LOCKSTEP_CONNECTIONS


def test_a_connection_lost_defers_only_the_copies_it_carried(tmp_path: Path, dump_dir: Path) -> None:
    many = [
        Personal(f"m{n}@example.net", f"ta-en-bounces+{'t' * 31}{n}@f.org", f"{'t' * 31}{n}")
        for n in range(8)
    ]
    sink, port, dump = start_sink(dump_dir)
    transport = Transport(RelayConfig(host="127.0.0.1", port=port), tmp_path / "outbox")
    try:
        assert transport.send_personal(RAW, many[:LOCKSTEP_CONNECTIONS]) == {}  # opens the connections
        transport._open[1].sock.shutdown(socket.SHUT_RDWR)  # the second one drops
        refused = transport.send_personal(RAW, many)
        carried = many[1::LOCKSTEP_CONNECTIONS]  # the second connection's hand
        assert set(refused) == {copy.rcpt for copy in carried}
        assert all(code == 451 for code, _ in refused.values())
        assert transport.send_personal(RAW, carried) == {}  # a new connection takes its place
    finally:
        transport.close()
        time.sleep(0.2)
        sink.terminate()
        sink.wait()
    delivered = Counter(rcpt for _, rcpt, _ in transactions(dump))
    assert delivered == Counter({copy.rcpt: 2 if copy in many[:LOCKSTEP_CONNECTIONS] else 1 for copy in many})
