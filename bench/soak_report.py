"""The soak's measurements over time (serve's RSS and CPU, the machine's load) and its printed report."""

from __future__ import annotations

import argparse
import math
import os
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from common import ServerRun, cpu_seconds, machine_busy_seconds, rss_mb
from soak_load import Record
from soak_plot import draw
from soak_setup import Run


@dataclass(frozen=True)
class Sample:
    at: float
    rss_mb: float
    serve_cpu: float
    serve_waited: float  # seconds serve's threads were runnable but waited for a CPU (schedstat)
    bench_cpu: float  # this process and the sink's
    machine_busy: float
    load_average: float


@dataclass
class Sampler:
    pid: int
    record: Record
    every: float
    samples: list[Sample] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True, name="sampler").start()

    def stop(self) -> None:
        self._take()
        self.stopping.set()

    def _take(self) -> None:
        sink = [pid for pid in children_of(os.getpid()) if pid != self.pid]  # serve is a child too
        bench = cpu_seconds(os.getpid()) + sum(cpu_seconds(pid) for pid in sink)
        self.samples.append(
            Sample(
                time.monotonic(),
                rss_mb(self.pid),
                cpu_seconds(self.pid),
                run_queue_seconds(self.pid),
                bench,
                machine_busy_seconds(),
                os.getloadavg()[0],
            )
        )

    def _loop(self) -> None:
        while not self.stopping.wait(self.every):
            self._take()


def run_queue_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but not running, from /proc/PID/task/*/schedstat."""
    waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            waited += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return waited / 1e9


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with open(task / "children") as children:
            found += [int(child) for child in children.read().split()]
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def row(kind: str, values: list[float], seconds: float) -> str:
    """count, per second, p50 and p99 in ms"""
    rate = len(values) / seconds if seconds > 0 else math.nan
    p50, p99 = 1000 * percentile(values, 0.5), 1000 * percentile(values, 0.99)
    return f"| {kind} | {len(values):,} | {rate:,.2f} | {p50:,.1f} | {p99:,.1f} |"


def latency_rows(record: Record, seconds: float) -> list[str]:
    acked, replies = record.acked, record.replies
    approved = [n for n, (_, _, word) in replies.items() if word == "approve"]
    turnaround = [
        record.last_copy[n] - record.notices[n]
        for n in approved
        if n in record.last_copy and n in record.notices
    ]
    lines = [
        "| kind | count | per second | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
        row(
            "post: SMTP acknowledgement (MAIL → 250 after DATA)", [e - s for s, e in acked.values()], seconds
        ),
        row(
            "post: 250 → moderator's notice in the sink",
            [record.notices[n] - acked[n][1] for n in acked if n in record.notices],
            seconds,
        ),
        row("moderator's reply: SMTP acknowledgement", [e - s for s, e, _ in replies.values()], seconds),
        row("moderation turnaround: notice → reply 250 → last copy in the sink", turnaround, seconds),
        row(
            "… of which reply 250 → last copy",
            [record.last_copy[n] - replies[n][1] for n in approved if n in record.last_copy],
            seconds,
        ),
    ]
    for kind in ("list", "thread", "message", "search"):
        spans = [end - start for page_kind, start, end, _ in record.pages if page_kind == kind]
        lines.append(row(f"web: {kind} page", spans, seconds))
    return lines


def thirds(samples: list[Sample], began: float, ended: float) -> tuple[float, float, float]:
    """Mean RSS in the second and last thirds of the load, and the peak."""
    third = (ended - began) / 3
    middle = [s.rss_mb for s in samples if began + third <= s.at < began + 2 * third]
    last = [s.rss_mb for s in samples if began + 2 * third <= s.at <= ended]
    peak = max((s.rss_mb for s in samples), default=math.nan)
    return (
        (statistics.fmean(middle) if middle else math.nan),
        (statistics.fmean(last) if last else math.nan),
        peak,
    )


def machine_rows(sampler: Sampler, began: float, ended: float) -> list[str]:
    during = [s for s in sampler.samples if began <= s.at <= ended]
    if len(during) < 2:
        return ["(too few samples)"]
    first, last = during[0], during[-1]
    wall = last.at - first.at
    serve = (last.serve_cpu - first.serve_cpu) / wall
    bench = (last.bench_cpu - first.bench_cpu) / wall
    rest = (last.machine_busy - first.machine_busy) / wall - serve - bench
    loads = [s.load_average for s in during]
    waited = (last.serve_waited - first.serve_waited) / wall
    return [
        f"CPU during the load, in cores: serve {serve:.2f}, the bench (clients + sink) {bench:.2f}, "
        f"everything else on the machine {max(rest, 0):.2f} (of {os.cpu_count()})",
        f"serve's threads waited for a CPU (runnable, not running) {waited:.2f} thread-seconds per second",
        f"load average (1 min) during the load: min {min(loads):.1f}, mean {statistics.fmean(loads):.1f}, "
        f"max {max(loads):.1f}",
    ]


def undelivered(record: Record, run: Run) -> tuple[int, int, int]:
    """(approved posts short of copies, acknowledged posts without a notice, notices without a reply)."""
    approved = [n for n, (_, _, word) in record.replies.items() if word == "approve"]
    short = sum(1 for n in approved if record.copies.get(n, 0) < run.recipients)
    return short, len(set(record.acked) - set(record.notices)), len(set(record.notices) - set(record.replies))


def scheduled_rows(record: Record, began: float) -> list[str]:
    lines = []
    for kind in ("digest", "prompt", "held-ack", "other"):
        got = [r for r in record.received if r.kind == kind]
        if not got:
            lines.append(f"- {kind}: none received")
            continue
        first, last = min(r.at for r in got) - began, max(r.at for r in got) - began
        lines.append(
            f"- {kind}: {len(got):,} transactions, {sum(r.recipients for r in got):,} recipients, "
            f"from {first:,.0f} s to {last:,.0f} s into the run"
        )
        if kind in ("digest", "other"):
            subjects = Counter(r.subject[:70] for r in got)
            lines += [f"    {count} × {subject}" for subject, count in subjects.most_common(6)]
    return lines


def report(
    args: argparse.Namespace,
    run: Run,
    record: Record,
    sampler: Sampler,
    server: ServerRun,
    began: float,
    ended: float,
    drain_seconds: float,
    schedule: str,
    log_path: Path,
) -> None:
    seconds = ended - began
    delivered = sum(recipients for _, recipients in record.deliveries)
    print(f"\nSoak: {args.database}, {seconds / 60:.1f} minutes of load, then {drain_seconds:.0f} s to drain")
    print(
        f"posts at {args.rate:g}/s over {args.connections} connections from {len(run.posters)} members; "
        f"1 in {args.approve_every} approved (the rest discarded) to {run.recipients:,} recipients each; "
        f"{args.readers} readers pausing {args.think:g} s on average; {schedule}\n"
    )
    print("\n".join(latency_rows(record, seconds)))
    print(
        f"\ndelivered copies of posts: {delivered:,} recipients in {len(record.deliveries):,} transactions "
        f"({delivered / seconds:,.0f} recipients/s over the load)"
    )
    print("\n".join(scheduled_rows(record, began)))
    middle, last, peak = thirds(sampler.samples, began, ended)
    growth = last - middle
    print(
        f"\nserve RSS: start {server.start_rss_mb:.0f} MB, second third {middle:.1f} MB, last third "
        f"{last:.1f} MB ({growth:+.1f} MB, {100 * growth / middle:+.1f} %), peak {peak:.0f} MB"
    )
    print("\n".join(machine_rows(sampler, began, ended)))
    short, no_notice, no_reply = undelivered(record, run)
    errors = dict(record.errors)
    errors |= {
        "ERROR lines in serve's log": len(server.errors),
        "approved posts not delivered to every recipient": short,
        "acknowledged posts without a notice": no_notice,
        "notices without a reply acknowledged": no_reply,
        "digests missing": 0 if any(r.kind == "digest" for r in record.received) else 1,
        "prompts missing": 0 if any(r.kind == "prompt" for r in record.received) else 1,
    }
    print(f"\nerrors: {sum(errors.values())}")
    for kind, count in errors.items():
        print(
            f"- {kind}: {count}"
            + (f" (e.g. {record.error_samples[kind]})" if kind in record.error_samples else "")
        )
    for line in server.errors[:10]:
        print(f"    {line[:240]}")
    warnings = [line for line in log_path.read_text(errors="replace").splitlines() if " WARNING " in line]
    print(f"WARNING lines in serve's log: {len(warnings)} (the log: {log_path})")
    for text, count in Counter(line.split(" WARNING ", 1)[1][:120] for line in warnings).most_common(5):
        print(f"    {count} × {text}")
    if args.plot:
        draw(args.plot, record, sampler.samples, began, ended, ended + drain_seconds)
        print(f"\nplot: {args.plot}")
