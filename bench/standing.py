"""The per-minute cost of the two tasks issue 13 adds to the scheduler's tick, and the day the
reconfirmation mails go out. It prints figures and asserts nothing.

Set-up (not measured), in a temp dir: the shipped config.yaml on SQLite with ``rooms[0].open`` set to
a window that is closed at the measured moment and ``membership.reconfirm_days: 365``; ``--members``
(10,000) delegates of one state on the three lists, inserted in bulk; ``--held`` (1,000) held posts, a
tenth held only because the room is closed.

Measured, in this process, each run in its own transaction, commit included:
- the quiet tick: ``jobs.run("reconfirm")`` when nobody is due, ``jobs.run("windows")`` while the room is
  closed, and, as the peer measured in the same run on the same data, the existing ``reminders`` task;
- the busy day: ``reconfirm`` when every member is due (one mail each queued in the outbox), then at the
  opening ``windows`` releasing the posts that waited for it alone.
Targets: a quiet tick of each new task under 100 ms at 10,000 members (the tick runs every minute; the
reminders task is printed beside them as the peer, same data, same run);
on the busy day no tick holds the database's write lock for 5 s or more (the intake spool waits on it):
the task asks 100 members per tick.

Run:   .venv/bin/python bench/standing.py [--members N] [--held N]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from common import describe_source, free_port, progress, verdict, write_config
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from listserv.admin.provision import initialise  # noqa: E402
from listserv.config import load_settings  # noqa: E402
from listserv.forum import build_jobs, build_parts  # noqa: E402
from listserv.store.db import make_engine  # noqa: E402
from listserv.store.models import Held, ListRow, Member, Received, Subscription  # noqa: E402

MONDAY = datetime(2027, 1, 11, 8, 0, tzinfo=UTC)  # the window opens on Tuesdays


def populate(engine: object, members: int, held: int, joined: datetime) -> None:
    with Session(engine) as session, session.begin():  # type: ignore[arg-type]
        lists = list(session.scalars(select(ListRow)))
        rows = [
            {
                "email": f"d{n}@minrel.cl",
                "email_key": f"d{n}@minrel.cl",
                "name": f"Delegate {n}",
                "country": "CL",
                "role": "delegate",
                "language": lists[n % len(lists)].language,
                "created_at": joined,
                "protocol_accepted_at": joined,
            }
            for n in range(members)
        ]
        session.execute(insert(Member), rows)
        ids = session.scalars(select(Member.id).where(Member.email_key.like("d%@minrel.cl"))).all()
        session.execute(
            insert(Subscription),
            [{"member_id": i, "list_id": lists[i % len(lists)].id, "delivery": "each"} for i in ids],
        )
        raw = b"From: d@minrel.cl\r\nSubject: Post\r\nMessage-ID: <h@minrel.cl>\r\n\r\nText.\r\n"
        received = session.scalars(
            insert(Received).returning(Received.id),
            [
                {"mail_from": "d@minrel.cl", "rcpt_tos": [], "message_id": f"<h{n}@minrel.cl>", "raw": raw}
                for n in range(held)
            ],
        ).all()
        session.execute(
            insert(Held),
            [
                {
                    "received_id": received[n],
                    "list_name": lists[n % len(lists)].name,
                    "kind": "post",
                    "message_id": f"<h{n}@minrel.cl>",
                    "sender": f"d{n}@minrel.cl",
                    "subject": f"Post {n}",
                    "reasons": [{"key": "room_closed", "params": {}}]
                    + ([] if n % 10 == 0 else [{"key": "held_by_policy", "params": {}}]),
                    "code_hash": secrets.token_hex(32),
                    "code_nonce": secrets.token_hex(8),
                    "expires_at": MONDAY + timedelta(days=14),
                    "held_at": MONDAY - timedelta(hours=1),
                    "reminded_at": MONDAY,
                }
                for n in range(held)
            ],
        )


def timed(run: object, *args: object) -> tuple[float, int]:
    start = time.perf_counter()
    done = run(*args)  # type: ignore[operator]
    return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--held", type=int, default=1_000)
    args = parser.parse_args()
    print(describe_source())
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        rooms = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))["rooms"]
        rooms[0]["open"] = {"days": ["tue"]}
        extra = {"membership": {"reconfirm_days": 365}, "rooms": rooms}
        settings = load_settings(write_config(tmp, f"sqlite:///{tmp / 'bench.db'}", free_port(), extra))
        engine = make_engine(settings.database.url)
        initialise(engine, settings)
        progress(f"{args.members} members, {args.held} held posts")
        populate(engine, args.members, args.held, MONDAY - timedelta(days=100))
        now = MONDAY
        jobs = build_jobs(build_parts(settings, lambda: now), engine, lambda: None)

        tasks = ("reminders", "reconfirm", "windows")
        quiet = {task: min(timed(jobs.run, task, now)[0] for _ in range(5)) for task in tasks}
        print("quiet tick, best of 5 (s):", {task: round(seconds, 4) for task, seconds in quiet.items()})
        for task in ("reconfirm", "windows"):
            ratio = quiet[task] / quiet["reminders"]
            print(f"  {task}: {ratio:.1f}× the reminders task {verdict(quiet[task] < 0.1)}")

        with Session(engine) as session, session.begin():
            session.execute(update(Member).values(created_at=MONDAY - timedelta(days=400)))
        ticks = []
        while (tick := timed(jobs.run, "reconfirm", now))[1]:
            ticks.append(tick)
        asked, total, longest = sum(n for _, n in ticks), sum(s for s, _ in ticks), max(s for s, _ in ticks)
        print(
            f"busy day: {asked} reconfirmation mails queued in {len(ticks)} ticks, {total:.1f} s in all; "
            f"longest tick (the write lock held) {longest:.2f} s {verdict(longest < 5)}"
        )
        now = MONDAY + timedelta(days=1)
        seconds, released = timed(jobs.run, "windows", now)
        print(f"opening: {released} posts released in {seconds:.2f} s")
        engine.dispose()


if __name__ == "__main__":
    main()
