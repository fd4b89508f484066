"""The peer of ``fanout.py`` (a): mlmmj, and the Python counting sink both are measured on.

mlmmj (C) comes from Debian's package, unpacked, never installed: ``apt-get download mlmmj`` into
``~/.cache/listserv-bench/`` and ``dpkg-deb -x`` there (no MTA is installed or started). A list directory
is laid out as ``mlmmj-make-ml`` makes it, with ``control/relayhost`` and ``control/smtpport`` pointing at
the sink and an empty ``control/verp`` (TUNABLES: one transaction per ``maxverprecips`` = 100
recipients, VERP left to nobody), subscribers in ``subscribers.d/``. Each post is piped to
``mlmmj-receive -L LISTDIR`` as an MTA would (it forks ``mlmmj-process``, which runs ``mlmmj-send``; the
binaries find each other by ``argv[0]``'s directory). The driver process makes itself a child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``) so that every forked mlmmj process comes back to it: their CPU is
summed from ``wait4``.

The counting sink (``--serve-counting PORT``): aiosmtpd with no PIPELINING, accepting everything, writing
``mesg=N rcpt=M`` to stdout whenever the counts change (at most every 20 ms), smtp-sink's counter format,
so that ``fanout.Sink.messages()`` reads both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

PR_SET_CHILD_SUBREAPER = 36
LINE_END = re.compile(rb"\r?\n")
LIST = "bench"
DOMAIN = "bench.example.org"


@dataclass(frozen=True)
class Decoration:
    """What a list adds to each copy: header lines, the subject's prefix, a footer."""

    headers: list[str]
    prefix: str
    footer: str

    @classmethod
    def added(cls, original: bytes, copy: bytes) -> Decoration:
        """What turned ``original`` into ``copy``: the header lines whose names ``original`` lacks, the
        subject's new prefix, the body's new tail."""
        head, _, body = original.partition(b"\r\n\r\n")
        copy_head, _, copy_body = LINE_END.sub(b"\r\n", copy).partition(b"\r\n\r\n")
        before, after = header_lines(head), header_lines(copy_head)
        headers = [line for name, line in after.items() if name not in before]
        prefix = after["subject"].removesuffix(before["subject"].partition(":")[2]).partition(":")[2]
        footer = copy_body[len(body) :] if copy_body.startswith(body) else b""
        return cls(headers, prefix.strip(), footer.decode().replace("\r\n", "\n"))


def header_lines(head: bytes) -> dict[str, str]:
    """Each header's name (lower case) → its whole line, folded lines unfolded."""
    lines = re.sub(r"\r\n[ \t]", " ", head.decode()).split("\r\n")
    return {line.partition(":")[0].lower(): line for line in lines}


def obtain_mlmmj(cache: Path) -> Path | str:
    """The directory of mlmmj's binaries, unpacked from the Debian package; or why it cannot be had."""
    root = cache / "mlmmj"
    binaries = root / "usr" / "bin"
    if (binaries / "mlmmj-receive").exists():
        return binaries
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob("mlmmj_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None:
            return "apt-get is not available"
        done = subprocess.run(["apt-get", "download", "mlmmj"], cwd=cache, capture_output=True, text=True)
        debs = sorted(cache.glob("mlmmj_*.deb"))
        if not debs:
            return f"apt-get download mlmmj failed: {done.stderr.strip()[-300:]}"
    done = subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], capture_output=True, text=True)
    if not (binaries / "mlmmj-receive").exists():
        return f"dpkg-deb -x {debs[-1].name} gave no mlmmj-receive: {done.stderr.strip()[-300:]}"
    return binaries


def make_list(
    listdir: Path, members: list[str], sink_port: int, decoration: Decoration | None = None
) -> None:
    """A list directory as ``mlmmj-make-ml`` lays it out; subscribers by first letter, as mlmmj-sub does.
    ``decoration``: what mlmmj adds to each copy (``control/customheaders``, ``prefix``, ``footer``)."""
    for sub in (
        "incoming",
        "queue/discarded",
        "archive",
        "text",
        "subconf",
        "unsubconf",
        "bounce",
        "control",
        "moderation",
        "subscribers.d",
        "digesters.d",
        "requeue",
        "nomailsubs.d",
    ):
        (listdir / sub).mkdir(parents=True, exist_ok=True)
    (listdir / "index").write_text("0\n")
    control = listdir / "control"
    (control / "listaddress").write_text(f"{LIST}@{DOMAIN}\n")
    (control / "relayhost").write_text("127.0.0.1\n")
    (control / "smtpport").write_text(f"{sink_port}\n")
    (control / "verp").write_text("")  # empty: 100 recipients a transaction, no VERP (TUNABLES)
    if decoration is not None:
        (control / "customheaders").write_text("".join(f"{line}\n" for line in decoration.headers))
        (control / "prefix").write_text(f"{decoration.prefix}\n")
        (control / "footer").write_text(decoration.footer)
    by_letter: dict[str, list[str]] = {}
    for address in members:
        by_letter.setdefault(address[0], []).append(address)
    for letter, addresses in by_letter.items():
        (listdir / "subscribers.d" / letter).write_text("".join(f"{a}\n" for a in addresses))


def drive(binaries: Path, listdir: Path, posts: list[Path]) -> dict[str, Any]:
    """Every post piped to mlmmj-receive; then every descendant reaped: their CPU and the wall time."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    started = time.perf_counter()
    failures = 0
    for post in posts:
        with post.open("rb") as data:
            done = subprocess.run([str(binaries / "mlmmj-receive"), "-L", str(listdir)], stdin=data)
        failures += done.returncode != 0
    user = system = 0.0
    while True:
        try:
            _, _, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        user, system = user + usage.ru_utime, system + usage.ru_stime
    own = os.times()
    return {
        "cpu": user + system + own.children_user + own.children_system,
        "seconds": time.perf_counter() - started,
        "failures": failures,
    }


class CountingHandler:
    def __init__(self) -> None:
        self.messages = self.recipients = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages += 1
        self.recipients += len(envelope.rcpt_tos)
        return "250 OK"


async def serve_counting(port: int) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    handler = CountingHandler()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.example.org", decode_data=False, ident="counting sink"),
        host="127.0.0.1",
        port=port,
    )
    shown = (-1, -1)
    while not stopping.is_set():
        if (handler.messages, handler.recipients) != shown:
            shown = (handler.messages, handler.recipients)
            sys.stdout.write(f"mesg={shown[0]} rcpt={shown[1]}\r")
            sys.stdout.flush()
        with_timeout = asyncio.wait_for(stopping.wait(), 0.02)
        with contextlib.suppress(TimeoutError):
            await with_timeout
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    if sys.argv[1] == "--serve-counting":
        asyncio.run(serve_counting(int(sys.argv[2])))
    elif sys.argv[1] == "--drive":  # --drive BINARIES LISTDIR POST...
        result = drive(Path(sys.argv[2]), Path(sys.argv[3]), [Path(p) for p in sys.argv[4:]])
        print(json.dumps(result))
