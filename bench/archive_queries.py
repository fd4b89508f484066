"""Archive page queries at scale: the list page's thread walk against grouping a whole list, month pages,
month counts, activity figures, a thread page's shape, with EXPLAIN of the two thread-list plans.

Set-up (not measured): a fresh database at the newest schema — SQLite in a temp dir, or with
``--postgres`` a throwaway database on 127.0.0.1:5432 (user postgres, dropped at the end) — and
``--posts`` (1,000,000) posts inserted with Core over three years on ta-en / ta-fr / ta-es (50 / 30 / 20 %),
a fifth starting a thread and the rest replying to one of the 30 latest threads of their list. Rows carry
300 bytes of raw message: the queries measured never read it. Then ``ANALYZE``.

Printed: each query's median and p95 over repeated runs in fresh sessions, on the largest list. It
asserts nothing. Target: each query the list, month and thread pages make < 50 ms.

Run:   .venv/bin/python bench/archive_queries.py [--posts N] [--postgres]
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from listserv.store import schema
from listserv.store.db import make_engine
from listserv.store.models import ArchivedPost
from listserv.web import threads

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LISTS = {"ta-en": 0.5, "ta-fr": 0.3, "ta-es": 0.2}
NOW = datetime(2026, 11, 24, tzinfo=UTC)
ZONE = "Europe/Zurich"


def seed(engine: Engine, count: int) -> None:
    rng = random.Random(1)
    start = NOW - timedelta(days=3 * 365)
    step = (NOW - start) / count
    recent: dict[str, list[int]] = {name: [] for name in LISTS}
    rows: list[dict[str, Any]] = []
    with engine.begin() as connection:
        for post_id in range(1, count + 1):
            name = rng.choices(list(LISTS), list(LISTS.values()))[0]
            at = start + step * post_id
            open_threads = recent[name]
            starts = not open_threads or rng.random() < 0.2
            thread = post_id if starts else rng.choice(open_threads[-30:])
            if starts:
                open_threads.append(post_id)
                del open_threads[:-60]
            rows.append(
                {
                    "id": post_id,
                    "list_name": name,
                    "message_id": f"<m{post_id}@example.org>",
                    "sender": f"d{rng.randrange(400)}@example.org",
                    "subject": f"Subject {thread}",
                    "date": at,
                    "raw": b"x" * 300,
                    "archived_at": at,
                    "thread_id": thread,
                    "parent_id": None if starts else thread,
                    "subject_key": f"subject {thread}",
                }
            )
            if len(rows) == 20_000:
                connection.execute(insert(ArchivedPost), rows)
                rows = []
        if rows:
            connection.execute(insert(ArchivedPost), rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE post" if engine.dialect.name != "sqlite" else "ANALYZE")


def timed(engine: Engine, label: str, query: Callable[[Session], object], runs: int = 15) -> None:
    times = []
    for _ in range(runs):
        with Session(engine) as session:
            began = time.perf_counter()
            query(session)
            times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p95 = times[max(0, round(len(times) * 0.95) - 1)]
    print(f"  {label:44s} median {statistics.median(times):8.2f} ms   p95 {p95:8.2f} ms")


def explain(engine: Engine, label: str, statement: Any) -> None:
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    sqlite = engine.dialect.name == "sqlite"
    print(f"  EXPLAIN {label}:")
    with engine.connect() as connection:
        for row in connection.exec_driver_sql(
            ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ANALYZE ") + sql
        ):
            print("     ", row[-1] if sqlite else row[0])


def measure(engine: Engine) -> None:
    biggest = "ta-en"
    latest = func.max(ArchivedPost.archived_at)
    grouped = (
        select(ArchivedPost.thread_id, func.count(), latest)
        .where(ArchivedPost.list_name == biggest)
        .group_by(ArchivedPost.thread_id)
        .order_by(latest.desc())
        .limit(25)
    )
    walk = (
        select(ArchivedPost.archived_at, ArchivedPost.thread_id)
        .where(ArchivedPost.list_name == biggest)
        .order_by(ArchivedPost.archived_at.desc(), ArchivedPost.thread_id.desc())
        .limit(threads.WALK_BATCH)
    )
    with Session(engine) as session:
        size = session.scalar(select(func.count()).where(ArchivedPost.list_name == biggest))
        first = threads.recent_threads(session, biggest, 1)[0][0]
    print(f"  {biggest}: {size:,} posts")
    explain(engine, "grouping the whole list (not used)", grouped)
    explain(engine, "one batch of the walk (used)", walk)
    october = threads.month_bounds(2026, 10, ZONE)
    timed(engine, "grouping the whole list, page 1 (not used)", lambda s: s.execute(grouped).all(), 5)
    timed(engine, "list page 1: walk + figures", lambda s: threads.recent_threads(s, biggest, 1))
    timed(engine, "list page 40", lambda s: threads.recent_threads(s, biggest, 40))
    timed(engine, "month page 2026-10", lambda s: threads.recent_threads(s, biggest, 1, october))
    timed(engine, "month counts of one year", lambda s: threads.month_counts(s, biggest, 2026, ZONE))
    timed(engine, "years with posts", lambda s: threads.archive_years(s, biggest, ZONE, NOW))
    timed(
        engine,
        "activity of 3 lists (30 days)",
        lambda s: threads.activity(s, list(LISTS), NOW - timedelta(30)),
    )
    timed(
        engine,
        "thread page (shape + 20 posts)",
        lambda s: threads.thread_page(s, biggest, first.thread_id, 1, 0),
    )
    timed(engine, "message by Message-ID", lambda s: threads.find_post(s, biggest, "m999@example.org"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true")
    options = parser.parse_args()
    name = f"listserv_bench_{secrets.token_hex(3)}"
    if options.postgres:
        admin = make_engine(PG_ADMIN).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/archive.db"
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        began = time.perf_counter()
        seed(engine, options.posts)
        print(f"{engine.dialect.name}: seeded {options.posts:,} posts in {time.perf_counter() - began:.0f} s")
        measure(engine)
    finally:
        engine.dispose()
        if options.postgres:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
