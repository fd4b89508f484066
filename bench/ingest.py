"""Ingest benchmark: how fast ``listserv serve`` acknowledges mail, next to a no-op SMTP ceiling.

Three phases in one run, all on loopback, each with the same client load:

  (a) a no-op aiosmtpd server in its own process (listserv's SMTP options; ``handle_DATA`` answers 250 at
      once): the ceiling of aiosmtpd plus this client load on this machine;
  (b) ``listserv serve`` storing on SQLite in a temp dir (the shipped WAL + synchronous=FULL);
  (c) the same on a throwaway PostgreSQL database on 127.0.0.1:5432 (user postgres, trust auth), dropped
      at the end; skipped with ``--skip-pg`` or, with the reason printed, when the server is unreachable.

The load: ``--clients`` smtplib connections (persistent: one EHLO, then MAIL/RCPT/DATA per message) posting
~5 KB messages from a member to ta-en@forum.example.org, dealt over ``--client-procs`` processes (default 2
× clients/2 threads: on this 2-core machine it gave a ceiling ~5 % higher than one process per client, for
~20 % less client CPU). Each connection sends 25 warm-up messages, waits at a barrier, then its share of
``--messages``. Latency is one ``sendmail`` call: MAIL to the 250 after DATA.

Printed per phase: messages/s, p50/p99 acknowledgement latency, % of the no-op ceiling; for listserv the
rows in ``received`` next to the acknowledged count (and acknowledged Message-IDs missing from it); CPU
per message of the server and of the clients, and how busy everything else was (other processes skew every
figure); spawn-to-220-banner time, RSS at the banner and ~2 s idle after the phase once the worker has
drained its backlog (25 s at most); ERROR lines the server logged. Then the targets. It asserts nothing.

Run:   .venv/bin/python bench/ingest.py [--clients 8] [--messages 4000] [--client-procs 2] [--skip-pg]
                                        [--max-seconds 40]
(or ``make bench``). Under 3 minutes: a phase's measured part stops after ``--max-seconds`` however many
messages were sent (the table says so). Internal: ``--serve-noop PORT`` runs the phase (a) server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.queues import SimpleQueue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import (
    MEMBER,
    Cpu,
    Sent,
    ServerRun,
    SqliteStore,
    Store,
    build_message,
    describe_source,
    free_port,
    listserv_command,
    progress,
    running,
    send_all,
    serve_noop,
    verdict,
    write_config,
)

if TYPE_CHECKING:
    import psycopg

WARMUP_PER_CLIENT = 25
STALL_SECONDS, DRAIN_LIMIT = 5.0, 25.0  # stop waiting for the worker: no progress / in all
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
TARGET_RATIO, TARGET_START, TARGET_RSS_MB = 85.0, 1.0, 80.0


# --- client side -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """One connection's part of a phase: its number, its message count, at most this many seconds."""

    client: int
    count: int
    seconds: float


def run_connection(port: int, share: Share, barrier: Barrier, out: list[tuple[Sent, Sent]]) -> None:
    """One persistent connection: warm-up, wait for every other connection, then its messages."""
    client = share.client
    messages = [build_message(client, seq) for seq in range(WARMUP_PER_CLIENT + share.count)]
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.org", timeout=120) as smtp:
            warmup = send_all(smtp, messages[:WARMUP_PER_CLIENT])
            barrier.wait(timeout=120)
            deadline = time.perf_counter() + share.seconds
            out.append((warmup, send_all(smtp, messages[WARMUP_PER_CLIENT:], deadline)))
    except (OSError, threading.BrokenBarrierError) as error:
        barrier.abort()  # nobody waits forever for a connection that failed
        out.append((Sent(), Sent(failures=[f"connection {client}: {type(error).__name__}: {error}"])))


def client_process(
    port: int, shares: list[Share], barrier: Barrier, results: SimpleQueue[list[tuple[Sent, Sent]]]
) -> None:
    """One client process: a thread per connection in ``shares``."""
    out: list[tuple[Sent, Sent]] = []
    threads = [threading.Thread(target=run_connection, args=(port, share, barrier, out)) for share in shares]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        results.put(out)  # always: the parent waits for one answer per process


@dataclass
class Load:
    warmup: Sent
    measured: Sent
    cpu: Cpu = field(default_factory=Cpu)

    @property
    def seconds(self) -> float:
        spans = self.measured.spans
        return max(end for _, end in spans) - min(start for start, _ in spans) if spans else math.nan

    @property
    def rate(self) -> float:
        return len(self.measured.spans) / self.seconds if self.measured.spans else 0.0

    def latency_ms(self, percent: float) -> float:
        latencies = sorted(end - start for start, end in self.measured.spans)
        if not latencies:
            return math.nan
        return 1000 * latencies[min(len(latencies) - 1, math.ceil(percent / 100 * len(latencies)) - 1)]


def split_load(args: argparse.Namespace) -> list[list[Share]]:
    """Every connection's share of the messages, dealt round-robin over the client processes."""
    clients, messages = args.clients, args.messages
    shares: list[list[Share]] = [[] for _ in range(min(args.client_procs, clients))]
    for client in range(clients):
        count = messages // clients + (1 if client < messages % clients else 0)
        shares[client % len(shares)].append(Share(client, count, args.max_seconds))
    return shares


def run_load(port: int, server_pid: int, args: argparse.Namespace) -> Load:
    """Warm-up, then the measured messages from every client at once; CPU used during the latter."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(args.clients + 1)  # + this process, which starts the CPU clocks
    results = context.SimpleQueue()
    processes = [
        context.Process(target=client_process, args=(port, share, barrier, results), daemon=True)
        for share in split_load(args)
    ]
    for process in processes:
        process.start()
    pids = [process.pid for process in processes if process.pid is not None]
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=300)
    before, load = Cpu.now(server_pid, pids), Load(Sent(), Sent())
    for _ in processes:
        for warmup, measured in results.get():
            load.warmup.extend(warmup)
            load.measured.extend(measured)
    load.cpu = Cpu.now(server_pid, pids) - before  # the clients have exited but are not reaped yet
    for process in processes:
        process.join()
    return load


# --- server processes --------------------------------------------------------------------------------


# --- storage -----------------------------------------------------------------------------------------


@dataclass
class PostgresStore:
    dbname: str

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.dbname}"

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        with pg_connect(f"host=127.0.0.1 port=5432 user=postgres dbname={self.dbname}") as db:
            return db.execute(statement).fetchall()


def pg_connect(conninfo: str) -> psycopg.Connection[tuple[Any, ...]]:
    """psycopg is imported here, not at the top: the phase (a) server runs this file, and libpq would
    add ~10 MB to the RSS we print for it."""
    import psycopg

    return psycopg.connect(conninfo, autocommit=True)


def create_database() -> PostgresStore:
    """A fresh database on 127.0.0.1:5432 (psycopg.OperationalError when the server is unreachable)."""
    store = PostgresStore(f"listserv_bench_{os.getpid()}")
    with pg_connect(PG_ADMIN) as admin:
        admin.execute(f'CREATE DATABASE "{store.dbname}"')
    return store


def drop_database(store: PostgresStore) -> None:
    with pg_connect(PG_ADMIN) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{store.dbname}" WITH (FORCE)')


@dataclass
class Drain:
    seconds: float
    at_start: int  # rows still 'new' when the load ended
    left: int  # rows still 'new' when we stopped waiting
    stalled: bool  # no progress for STALL_SECONDS


def count_new(store: Store) -> int:
    return int(store.query("SELECT count(*) FROM received WHERE state = 'new'")[0][0])


def wait_until_processed(store: Store) -> Drain:
    """Wait while the worker works through the backlog: up to DRAIN_LIMIT, or until STALL_SECONDS
    pass without progress (a worker that died or cannot write)."""
    started = progress_at = time.perf_counter()
    at_start = left = count_new(store)
    while left:
        now = time.perf_counter()
        if now - progress_at > STALL_SECONDS or now - started > DRAIN_LIMIT:
            break
        time.sleep(0.2)
        now_left = count_new(store)
        if now_left < left:
            progress_at = time.perf_counter()
        left = now_left
    ended = time.perf_counter()
    return Drain(ended - started, at_start, left, stalled=bool(left) and ended - progress_at > STALL_SECONDS)


# --- phases ------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    load: Load
    server: ServerRun
    stored: int | None = None  # rows in received
    missing: int | None = None  # acknowledged Message-IDs not in received
    drain: Drain | None = None


def prepare_listserv(config: Path) -> None:
    for words in (("init",), ("members", "add", MEMBER, "--lists", "ta-en", "--name", "Ana Delegate")):
        done = subprocess.run(listserv_command(config, *words), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"listserv {' '.join(words)} failed:\n{done.stderr}")


def run_noop_phase(args: argparse.Namespace, tmp: Path, listserv_class: bool = False) -> Phase:
    port = free_port()
    command = [sys.executable, str(Path(__file__).resolve()), "--serve-noop", str(port)]
    if listserv_class:
        command.append("--noop-listserv-class")
    with running(command, port, tmp / "noop.log") as server:
        load = run_load(port, server.process.pid, args)
        server.measure_idle_rss()
    return Phase("(a') no-op, listserv SMTP" if listserv_class else "(a) no-op aiosmtpd", load, server)


def run_listserv_phase(
    name: str, args: argparse.Namespace, tmp: Path, make_store: Callable[[Path], Store]
) -> Phase:
    store, port = make_store(tmp), free_port()
    config = write_config(tmp, store.url, port)
    prepare_listserv(config)
    with running(listserv_command(config, "serve"), port, tmp / "serve.log") as server:
        load = run_load(port, server.process.pid, args)
        stored = {row[0] for row in store.query("SELECT message_id FROM received")}
        drain = wait_until_processed(store)
        server.measure_idle_rss()
    acked = set(load.warmup.ids) | set(load.measured.ids)
    return Phase(name, load, server, len(stored), len(acked - stored), drain)


def run_postgres_phase(args: argparse.Namespace, tmp: Path) -> Phase | str:
    """Phase (c) on a throwaway database, dropped even on error; or the reason it was skipped."""
    import psycopg

    try:
        store = create_database()
    except psycopg.OperationalError as error:
        return f"skipped: the server on 127.0.0.1:5432 is unreachable ({' '.join(str(error).split())})"
    try:
        return run_listserv_phase("(c) listserv PostgreSQL", args, tmp, lambda _: store)
    finally:
        drop_database(store)


# --- report ------------------------------------------------------------------------------------------


def print_header(args: argparse.Namespace) -> None:
    procs = len(split_load(args))
    print(
        f"listserv ingest benchmark: {args.clients} SMTP clients ({procs} process(es), "
        f"{math.ceil(args.clients / procs)} connection(s) each), {args.messages} messages per phase after "
        f"{args.clients * WARMUP_PER_CLIENT} warm-up, {len(build_message(0, 0)[1])} bytes each, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(describe_source(), flush=True)


def ceiling_of(phases: list[Phase]) -> float:
    """The faster no-op server: stock aiosmtpd, or aiosmtpd with listserv's SMTP class (which fixes a
    per-command hot spot) — so the ratio measures durable storage, not that fix."""
    return max(phase.load.rate for phase in phases if phase.name.startswith("(a"))


def print_table(phases: list[Phase], messages: int) -> None:
    ceiling = ceiling_of(phases)
    print(
        f"\n{'phase':<26}{'msg/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'acked':>8}{'in received':>13}"
        f"{'missing':>9}{'failed':>8}{'vs (a)':>9}"
    )
    for phase in phases:
        load = phase.load
        acked = len(load.warmup.ids) + len(load.measured.ids)
        failed = len(load.warmup.failures) + len(load.measured.failures)
        stored = "-" if phase.stored is None else str(phase.stored)
        missing = "-" if phase.missing is None else str(phase.missing)
        print(
            f"{phase.name:<26}{load.rate:>8.0f}{load.latency_ms(50):>9.2f}{load.latency_ms(99):>9.2f}"
            f"{acked:>8}{stored:>13}{missing:>9}{failed:>8}{100 * load.rate / ceiling:>8.1f}%"
        )
    for phase in phases:
        sent = len(phase.load.measured.spans) + len(phase.load.measured.failures)
        if sent < messages:
            print(f"{phase.name}: stopped at --max-seconds after {sent} of {messages} measured messages")
    print("acked / in received include the warm-up; msg/s and latencies are the measured messages only;")
    print("missing: acknowledged Message-IDs not found in the received table.")
    stock = phases[0].load.rate
    ratios = [
        f"{p.name[1]}/a = {100 * p.load.rate / ceiling:.1f} % "
        f"(vs stock aiosmtpd {100 * p.load.rate / stock:.1f} %)"
        for p in phases
        if not p.name.startswith("(a")
    ]
    print(f"ratios, a = the faster no-op: {', '.join(ratios) or '-'}")


def print_processes(phases: list[Phase]) -> None:
    print("\nserver process (spawn → first 220 banner; RSS at the banner; RSS idle ~2 s after the phase)")
    for phase in phases:
        server = phase.server
        print(
            f"  {phase.name:<26} start {server.start_seconds:5.2f} s   "
            f"RSS at start {server.start_rss_mb:5.1f} MB   idle RSS {server.idle_rss_mb:5.1f} MB   "
            f"exit status after SIGTERM {server.exit_code}"
        )


def cpu_share(seconds: float, count: int, wall: float) -> str:
    return f"{1000 * seconds / count:5.2f} ms/msg ({100 * seconds / wall:3.0f} %)"


def print_cpu(phases: list[Phase]) -> None:
    print(f"\nCPU during the measured messages ({os.cpu_count()} CPUs; 100 % = one core busy all along)")
    for phase in phases:
        cpu, count = phase.load.cpu, max(1, len(phase.load.measured.spans))
        other = cpu.machine - cpu.server - cpu.clients
        print(
            f"  {phase.name:<26} server {cpu_share(cpu.server, count, cpu.wall)}"
            f"   clients {cpu_share(cpu.clients, count, cpu.wall)}"
            f"   everything else {max(0.0, 100 * other / cpu.wall):3.0f} %"
        )


def describe_drain(drain: Drain, stored: int | None) -> str:
    if drain.stalled:
        left = f"{drain.left} of {stored} rows still 'new'"
        return f"worker STALLED: {left}, no progress for {STALL_SECONDS:.0f} s"
    if drain.left:
        rate = (drain.at_start - drain.left) / drain.seconds
        return (
            f"worker still behind {drain.seconds:.0f} s after the load: {drain.left} of {stored} rows "
            f"'new' ({drain.at_start} when the load ended; drained {rate:.0f} rows/s meanwhile)"
        )
    return f"worker processed every row {drain.seconds:.1f} s after the load ({drain.at_start} were left)"


def print_worker(phases: list[Phase]) -> None:
    print("\nworker and server log after the load")
    for phase in phases:
        if phase.drain is not None:
            print(f"  {phase.name}: {describe_drain(phase.drain, phase.stored)}")
        errors = phase.server.errors
        if errors:
            print(f"  {phase.name}: {len(errors)} ERROR/Traceback line(s) logged; first: {errors[0][:150]}")
        failures = phase.load.warmup.failures + phase.load.measured.failures
        for failure in sorted(set(failures))[:5]:
            print(f"  {phase.name}: {failures.count(failure)} × {failure[:150]}")


def print_targets(phases: list[Phase], clients: int) -> None:
    print()
    sqlite = next((phase for phase in phases if "SQLite" in phase.name), None)
    ratio = 100 * sqlite.load.rate / ceiling_of(phases) if sqlite else math.nan
    outcome = f"{ratio:.1f} %: {verdict(ratio >= TARGET_RATIO)}" if sqlite else "not measured"
    this_run = "" if clients == 8 else f" (this run: {clients} clients)"
    print(f"target: SQLite ≥ {TARGET_RATIO:.0f} % of the no-op ceiling at 8 clients: {outcome}{this_run}")
    for phase in (phase for phase in phases if not phase.name.startswith("(a")):
        kind, server = phase.name.split()[-1], phase.server
        print(
            f"target: start < {TARGET_START:.0f} s ({kind}): {server.start_seconds:.2f} s: "
            f"{verdict(server.start_seconds < TARGET_START)}"
        )
        print(
            f"target: idle RSS < {TARGET_RSS_MB:.0f} MB ({kind}): {server.idle_rss_mb:.1f} MB: "
            f"{verdict(server.idle_rss_mb < TARGET_RSS_MB)}"
        )


# --- main --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent SMTP connections (default 8)")
    parser.add_argument("--messages", type=int, default=4000, help="measured messages per phase (4000)")
    parser.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="client processes, connections dealt round-robin over them (default 2: measured best here)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=40.0,
        help="stop a phase's measured part after this long, however many were sent (default 40)",
    )
    parser.add_argument("--skip-pg", action="store_true", help="skip phase (c), PostgreSQL")
    parser.add_argument("--serve-noop", type=int, metavar="PORT", help="internal: run the phase (a) server")
    parser.add_argument("--noop-listserv-class", action="store_true", help="internal: phase (a') server")
    args = parser.parse_args(argv)
    args.client_procs = max(1, min(args.client_procs, args.clients))
    return args


def sqlite_store(directory: Path) -> SqliteStore:
    return SqliteStore(directory / "listserv.db")


def run_phases(args: argparse.Namespace, tmp: Path) -> tuple[list[Phase], list[str]]:
    """The phases that ran, and one line for each that was skipped or failed."""
    progress("phase (a): no-op aiosmtpd")
    phases, notes = [run_noop_phase(args, tmp / "a")], []
    progress("phase (a'): no-op with listserv's SMTP class")
    phases.append(run_noop_phase(args, tmp / "a2", listserv_class=True))
    progress("phase (b): listserv on SQLite")
    try:
        phases.append(run_listserv_phase("(b) listserv SQLite", args, tmp / "b", sqlite_store))
    except RuntimeError as error:  # serve or init did not work: still report the rest
        notes.append(f"(b) SQLite: FAILED: {error}")
    if args.skip_pg:
        return phases, [*notes, "(c) PostgreSQL: skipped (--skip-pg)"]
    progress("phase (c): listserv on PostgreSQL")
    try:
        outcome = run_postgres_phase(args, tmp / "c")
    except RuntimeError as error:
        outcome = f"FAILED: {error}"
    if isinstance(outcome, str):
        return phases, [*notes, f"(c) PostgreSQL: {outcome}"]
    return [*phases, outcome], notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_noop is not None:
        asyncio.run(serve_noop(args.serve_noop, args.noop_listserv_class))
        return 0
    print_header(args)
    with tempfile.TemporaryDirectory(prefix="listserv-bench-") as tmp:
        for sub in ("a", "a2", "b", "c"):
            (Path(tmp) / sub).mkdir()
        phases, notes = run_phases(args, Path(tmp))
    print_table(phases, args.messages)
    for note in notes:
        print(note)
    print_cpu(phases)
    print_processes(phases)
    print_worker(phases)
    print_targets(phases, args.clients)
    return 0


if __name__ == "__main__":
    sys.exit(main())
