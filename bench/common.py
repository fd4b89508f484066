"""Helpers shared by the benchmarks (``ingest.py``, ``fanout.py``): the test post, SMTP servers run as
child processes, CPU and memory read from /proc, the listserv config and commands, the report's wording.

Imported as ``common`` (the scripts run as ``python bench/NAME.py``, so ``bench/`` is on ``sys.path``).
Everything imported here is also imported by the scripts' own server processes: keep it light (psycopg,
for one, stays out: libpq would add ~10 MB to the RSS the ingest benchmark prints for its no-op server).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import os
import random
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol, Self

import yaml
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "forum.example.org"
LIST_ADDRESS = f"ta-en@{DOMAIN}"
MEMBER = "delegate@example.org"
IDLE_SECONDS = 2.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROSE = (
    "the delegation supports proposal technical assistance programme budget review regional office "
    "capacity training workshop report annex paragraph draft amendment secretariat member states "
    "implementation timeline funding evaluation partners coordination café Zürich São Paulo résumé"
)


def make_body(size: int = 4600, seed: int = 7) -> str:
    """Deterministic prose of about ``size`` bytes, in lines of at most 72 characters."""
    rng, words = random.Random(seed), PROSE.split()
    lines, line, total = ["Dear colleagues,", ""], "", 0
    while total < size:
        word = rng.choice(words)
        if len(line) + len(word) >= 72:
            lines.append(line)
            total += len(line.encode()) + 2
            line = ""
        line = f"{line} {word}" if line else word.capitalize()
    return "\r\n".join([*lines, line + ".", "", "Best regards,", "Ana", ""])


BODY = make_body()


def build_message(client: int, seq: int, sender: str = MEMBER) -> tuple[str, bytes]:
    """(Message-ID, raw bytes) of one ~5 KB post from ``sender`` with the headers a real mail client
    sends."""
    message_id = f"<{uuid.uuid4().hex}.{client}.{seq}@example.org>"
    headers = (
        f"From: Ana Delegate <{sender}>\r\nTo: {LIST_ADDRESS}\r\n"
        f"Subject: Budget review, follow-up {seq} from client {client}\r\n"
        f"Date: {formatdate(localtime=True)}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"; format=flowed\r\n'
        "Content-Transfer-Encoding: 8bit\r\nContent-Language: en-GB\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0\r\n\r\n"
    )
    return message_id, (headers + BODY).encode()


# --- client side -------------------------------------------------------------------------------------


@dataclass
class Sent:
    """What some connections sent: acknowledged Message-IDs, their (start, end) times, failures."""

    ids: list[str] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def extend(self, other: Sent) -> None:
        self.ids += other.ids
        self.spans += other.spans
        self.failures += other.failures


def send_all(
    smtp: smtplib.SMTP, messages: list[tuple[str, bytes]], deadline: float = math.inf, sender: str = MEMBER
) -> Sent:
    """Post ``messages`` to the list one after the other on ``smtp``, until ``deadline``."""
    sent = Sent()
    for message_id, raw in messages:
        start = time.perf_counter()
        if start > deadline:
            break
        try:
            smtp.sendmail(sender, [LIST_ADDRESS], raw)
        except smtplib.SMTPException as error:
            sent.failures.append(f"{type(error).__name__}: {error}")
            continue
        sent.spans.append((start, time.perf_counter()))
        sent.ids.append(message_id)
    return sent


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time every CPU spent not idle (user, nice, system, irq, softirq, steal) since boot."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
    return sum(int(value) for value in (user, nice, system, irq, softirq, steal)) / CLOCK_TICKS


class Counters:
    """A frozen dataclass of counters: ``after - before`` is what happened between, field by field."""

    def __sub__(self, other: Self) -> Self:
        return type(self)(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class Cpu(Counters):
    """CPU-seconds used by the server, by the client processes and by the whole machine; wall seconds."""

    server: float = 0.0
    clients: float = 0.0
    machine: float = 0.0
    wall: float = 0.0

    @classmethod
    def now(cls, server_pid: int, client_pids: list[int]) -> Cpu:
        clients = sum(cpu_seconds(pid) for pid in client_pids)
        return cls(cpu_seconds(server_pid), clients, machine_busy_seconds(), time.perf_counter())


# --- server processes --------------------------------------------------------------------------------


class NoopHandler:
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


async def serve_noop(port: int, listserv_class: bool = False) -> None:
    """Phase (a): aiosmtpd with listserv's SMTP options and a handler that does nothing, until SIGTERM;
    with ``listserv_class``, listserv's own SMTP subclass (phase a')."""
    session_class = SMTP
    if listserv_class:
        from listserv.intake.ingress import ListservSMTP  # imported late: phase (a) must not pay for listserv

        session_class = ListservSMTP
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    server = await loop.create_server(
        lambda: session_class(
            NoopHandler(),
            hostname=DOMAIN,  # as listserv does: without it aiosmtpd calls the slow getfqdn()
            data_size_limit=26_214_400,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="noop",
        ),
        host="127.0.0.1",
        port=port,
    )
    await stopping.wait()
    server.close()
    await server.wait_closed()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_banner(port: int) -> bool:
    """True when something on ``port`` greets with 220 (then we say QUIT)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            greeting = sock.makefile("rb").readline()
            sock.sendall(b"QUIT\r\n")
            return greeting.startswith(b"220")
    except OSError:
        return False


def start_server(
    command: list[str], port: int, log_path: Path, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], float]:
    """Spawn ``command`` (with ``env`` added to the environment); return it and the seconds from spawn to
    its first 220 banner."""
    environment = {**os.environ, **env} if env else None
    with log_path.open("wb") as log:  # a file, not a pipe: a full pipe would stall the server
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    while not read_banner(port):
        if process.poll() is not None or time.perf_counter() - started > 60:
            stop_server(process)
            raise RuntimeError(f"{command[-1]} did not start; its output:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.005)
    return process, time.perf_counter() - started


def stop_server(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then wait (SIGKILL only if it is still there after a minute); the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """The process's resident set size now (``VmHWM``: its peak so far), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return math.nan


@dataclass
class ServerRun:
    """One server process: spawn-to-banner time, RSS, exit status and the errors it logged."""

    process: subprocess.Popen[bytes]
    start_seconds: float
    start_rss_mb: float
    idle_rss_mb: float = math.nan
    exit_code: int | None = None
    errors: list[str] = field(default_factory=list)

    def measure_idle_rss(self) -> None:
        time.sleep(IDLE_SECONDS)
        self.idle_rss_mb = rss_mb(self.process.pid)


@contextlib.contextmanager
def running(
    command: list[str], port: int, log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[ServerRun]:
    process, start_seconds = start_server(command, port, log_path, env)
    server = ServerRun(process, start_seconds, rss_mb(process.pid))
    try:
        yield server
    finally:
        server.exit_code = stop_server(process)
        text = log_path.read_text(encoding="utf-8", errors="replace")
        server.errors = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]


# --- storage -----------------------------------------------------------------------------------------


class Store(Protocol):
    @property
    def url(self) -> str: ...

    def query(self, statement: str) -> list[tuple[Any, ...]]: ...


@dataclass
class SqliteStore:
    path: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(statement).fetchall()


# --- listserv ----------------------------------------------------------------------------------------


def write_config(tmp: Path, database_url: str, port: int, extra: Mapping[str, Any] | None = None) -> Path:
    """The shipped config.yaml with this run's database, data dir and ports, and the top-level blocks in
    ``extra`` (``{"delivery": {...}}``) in place of the shipped ones."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config.update(extra or {})
    config["site"]["data_dir"] = str(tmp / "var")
    config["database"]["url"] = database_url
    config["smtp"]["port"] = port
    config["web"]["port"] = free_port()
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def wait_started(config: Path, limit: float = 60.0) -> float:
    """Seconds until serve's web archive answers ``/healthz`` (with any status): every part has started.

    SMTP answers first (serve takes mail while the rest starts, ~0.5 s), so a run timed from the first
    220 would count that start (issue 18's own figure) inside a fan-out's or the worker's."""
    web = yaml.safe_load(config.read_text(encoding="utf-8"))["web"]
    url = f"http://127.0.0.1:{web['port']}/healthz"
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return time.perf_counter() - started
        except urllib.error.HTTPError:  # answered: 503 says a check failed, not that serve is starting
            return time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"serve's web archive did not answer {url} within {limit:.0f} s")


def listserv_command(config: Path, *words: str) -> list[str]:
    return [sys.executable, "-m", "listserv", "--config", str(config), *words]


# --- report ------------------------------------------------------------------------------------------


def describe_source() -> str:
    """Where ``listserv`` is imported from, and its git commit (+ whether listserv/ has changes)."""
    spec = importlib.util.find_spec("listserv")
    package = Path(spec.origin).parent if spec and spec.origin else None
    if package is None:
        return "listserv not importable"
    git = ["git", "-C", str(package.parent)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--", "listserv"], capture_output=True, text=True
    )
    if commit.returncode:
        return f"listserv from {package} (not a git checkout)"
    dirty = " + uncommitted changes in listserv/" if changed.stdout.strip() else ""
    return f"listserv from {package} at commit {commit.stdout.strip()}{dirty}"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def progress(text: str) -> None:
    print(f"… {text}", file=sys.stderr, flush=True)
