"""Soak: one ``listserv serve`` under a sustained mix for ``--minutes`` (10), on loopback.

The mix, all at once:
  - posts to ta-en (``--members`` 5,000 members in delivery ``each``) from ``--posters`` (200) of them at
    ``--rate`` (20) per second, paced, over ``--connections`` (4) SMTP connections; every post is held
    (the shipped ``moderation.hold: all``), its notice goes to mod-en and the poster gets a held notice;
  - the moderator replies to each notice as it arrives in the sink (the reply code's address, the decision
    on the first line): ``approve`` one post in ``--approve-every`` (50), ``discard`` the others;
  - the approved posts' copies to every ``each`` member, through the relay: an aiosmtpd sink in its own
    process that counts what it receives (batch mode, 100 recipients a transaction: see the docstring of
    ``soak_setup.listserv_blocks``);
  - ``--readers`` (8) signed-in members browsing (list pages, threads, messages) and searching, each
    pausing ``--think`` (1 s, exponential) between pages;
  - the daily and weekly digests (``--digest-members`` members in each period) and the weekly prompt of
    this ISO week, scheduled for the middle of the run.

Printed: throughput and p50/p99 latency per kind (SMTP acknowledgement of posts and replies, moderation
turnaround = notice in the sink → reply acknowledged → last copy in the sink, web pages per kind,
searches), serve's RSS over time (last third against second third), errors (SMTP, HTTP non-200, ERROR
lines in serve's log, posts not delivered to every member by the end) and the load of the rest of the
machine. Plot: ``--plot`` (docs/soak.png). It asserts nothing and exits 0.

Run:   .venv/bin/python bench/soak.py [--minutes 10] [--database sqlite|postgresql] [--plot docs/soak.png]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, describe_source, free_port, listserv_command, progress, read_banner, running
from soak_load import Record, browse_loop, collect_loop, moderate_loop, post_loop
from soak_report import Sampler, report
from soak_setup import Run, database, prepare, schedule_mid_run, sign_in
from soak_sink import Received, sink_main


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--posters", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="posts per second")
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections of the posters")
    parser.add_argument("--approve-every", type=int, default=50)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between a reader's pages, s")
    parser.add_argument("--digest-members", type=int, default=100, help="in each period (daily, weekly)")
    parser.add_argument("--drain-seconds", type=float, default=600.0, help="after the load, at most")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png")
    return parser.parse_args()


def start_sink(events: multiprocessing.Queue[Received]) -> tuple[multiprocessing.Process, int]:
    port = free_port()
    process = multiprocessing.Process(target=sink_main, args=(port, events), daemon=True)
    process.start()
    deadline = time.monotonic() + 30
    while not read_banner(port):
        if time.monotonic() > deadline or not process.is_alive():
            raise RuntimeError("the sink did not start")
        time.sleep(0.02)
    return process, port


def drained(record: Record, run: Run) -> bool:
    """Every approved post delivered to every recipient, every acknowledged post's notice received and
    answered, the digests and the prompt received (due after the load in a run of a minute or two)."""
    with record.lock:
        if not {"digest", "prompt"} <= {received.kind for received in record.received}:
            return False
        approved = [n for n, (_, _, word) in record.replies.items() if word == "approve"]
        delivered = all(record.copies.get(n, 0) >= run.recipients for n in approved)
        return (
            delivered
            and set(record.acked) <= set(record.notices)
            and len(record.replies) >= len(record.notices)
        )


def load(args: argparse.Namespace, run: Run, record: Record, smtp_port: int) -> float:
    """Every actor for ``--minutes``; returns the monotonic time the load began."""
    start = time.monotonic() + 1.0
    end = start + args.minutes * 60
    client = sign_in(run.web_base)
    actors = [
        threading.Thread(
            target=post_loop,
            args=(smtp_port, lane, args.connections, args.rate, start, end, run.posters, record),
            name=f"poster-{lane}",
        )
        for lane in range(args.connections)
    ]
    actors += [
        threading.Thread(
            target=browse_loop, args=(client, end, args.think, seed, record), name=f"reader-{seed}"
        )
        for seed in range(args.readers)
    ]
    for actor in actors:
        actor.start()
    for actor in actors:
        actor.join()
    return start


def main() -> int:
    args = arguments()
    print(describe_source())
    events: multiprocessing.Queue[Received] = multiprocessing.Queue()
    sink, sink_port = start_sink(events)
    record, notices = Record(), queue.Queue[Received | None]()
    stop_collecting = threading.Event()
    collector = threading.Thread(target=collect_loop, args=(events, notices, record, stop_collecting))
    with tempfile.TemporaryDirectory(prefix="listserv-soak-") as tmp, database(args.database) as url:
        run = prepare(Path(tmp), url, sink_port, args)
        schedule = schedule_mid_run(run, args.minutes)
        log_path = Path(tmp) / "serve.log"
        with running(listserv_command(run.config, "serve"), run.smtp_port, log_path) as server:
            progress(f"serve up in {server.start_seconds:.2f} s; {schedule}")
            sampler = Sampler(server.process.pid, record, args.sample_seconds)
            sampler.start()
            collector.start()
            moderators = [
                threading.Thread(
                    target=moderate_loop, args=(run.smtp_port, notices, args.approve_every, record)
                )
                for _ in range(2)
            ]
            for moderator in moderators:
                moderator.start()
            began = load(args, run, record, run.smtp_port)
            load_end = time.monotonic()
            progress("load over; waiting for the deliveries")
            while not drained(record, run) and time.monotonic() - load_end < args.drain_seconds:
                time.sleep(1)
            drain_seconds = time.monotonic() - load_end
            for _ in moderators:
                notices.put(None)
            for moderator in moderators:
                moderator.join()
            sampler.stop()
        stop_collecting.set()
        collector.join()
        sink.terminate()
        sink.join(10)
        kept = Path(tempfile.gettempdir()) / f"soak-serve-{os.getpid()}.log"
        shutil.copyfile(log_path, kept)
        report(args, run, record, sampler, server, began, load_end, drain_seconds, schedule, kept)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
