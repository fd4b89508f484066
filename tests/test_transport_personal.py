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
from collections.abc import Iterator
from pathlib import Path

import pytest

from listserv.config import RelayConfig
from listserv.outgoing.personal import PLACEHOLDER
from listserv.outgoing.transport import Personal, Transport
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
    assert [(mail, rcpt) for mail, rcpt, _ in sent] == [(c.mail_from, c.rcpt) for c in [*copies, copies[0]]]
    for (_, _, body), copy in zip(sent, copies, strict=False):
        assert f"/u/{copy.token}".encode() in body and PLACEHOLDER not in body
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
    assert delivered == [copies[0].rcpt, copies[1].rcpt]
    # Every copy was confirmed or waits; only the one on the wire when the sink left may go twice.
    assert all(code == 451 for code, _ in refused.values())
    assert {c.rcpt for c in copies} == set(delivered) | set(refused)
    assert len(set(delivered) & set(refused)) <= 1
