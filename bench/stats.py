"""How long the participation figures take at scale: ``stats_rows`` (what ``listserv stats``, ``/stats``
and the monthly report run) over 12 weeks × 3 lists of a SQLite archive of ``--posts`` posts, beside
a ceiling measured in the same run: one aggregate query (count, distinct senders) grouped by list over
the same span, which is the least any answer could cost. Figures on a shared machine are only
meaningful next to that ceiling.

    .venv/bin/python bench/stats.py --posts 100000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from listserv.admin.provision import initialise
from listserv.archive.stats import stats_rows
from listserv.archive.stats_periods import periods
from listserv.config import parse_settings
from listserv.store.db import make_engine
from listserv.store.models import ArchivedPost, Held, ListRow, Member, Subscription

LISTS = ["ta-en", "ta-fr", "ta-es"]
START = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday; 12 weeks to 30 November


def fill(engine: object, posts: int, members: int) -> None:
    rng = random.Random(15)
    countries = [f"{a}{b}" for a in "ABCDEFGHIJ" for b in "ABCDEFGHIJKLMNOPQRST"][:190]
    with Session(engine) as session, session.begin():  # type: ignore[arg-type]
        ids = dict(session.execute(select(ListRow.name, ListRow.id)).all())
        session.execute(
            insert(Member),
            [
                {"email": f"m{i}@x.example", "email_key": f"m{i}@x.example", "country": rng.choice(countries)}
                for i in range(members)
            ],
        )
        member_ids = list(session.scalars(select(Member.id).where(Member.email_key.like("m%@x.example"))))
        session.execute(
            insert(Subscription),
            [{"member_id": m, "list_id": ids[rng.choice(LISTS)], "created_at": START} for m in member_ids],
        )
        rows = []
        for i in range(posts):
            at = START + timedelta(seconds=rng.randrange(84 * 86400))
            rows.append(
                {
                    "list_name": rng.choice(LISTS),
                    "message_id": f"<p{i}@x>",
                    "sender": f"m{rng.randrange(members)}@x.example",
                    "raw": b"",
                    "archived_at": at,
                    "thread_id": i,
                }
            )
        session.execute(insert(ArchivedPost), rows)
        session.execute(
            insert(Held),
            [
                {
                    "list_name": rng.choice(LISTS),
                    "message_id": f"<h{i}@x>",
                    "code_hash": f"{i:064d}",
                    "code_nonce": "n",
                    "expires_at": START + timedelta(days=100),
                    "held_at": START + timedelta(seconds=i * 600),
                    "decided_at": START + timedelta(seconds=i * 600 + rng.randrange(7200)),
                    "state": "approved",
                }
                for i in range(posts // 10)
            ],
        )


def timed(run: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        raw = yaml.safe_load(
            (Path(__file__).resolve().parent.parent / "config.yaml").read_text(encoding="utf-8")
        )
        raw["site"]["data_dir"], raw["database"]["url"] = folder, f"sqlite:///{folder}/bench.db"
        settings = parse_settings(raw)
        engine = make_engine(settings.database.url)
        initialise(engine, settings)
        started = time.perf_counter()
        fill(engine, args.posts, args.members)
        print(f"filled {args.posts} posts, {args.members} members in {time.perf_counter() - started:.1f} s")
        spans = periods(date(2026, 9, 7), date(2026, 11, 29), "week", settings.site.timezone)

        def figures() -> None:
            with Session(engine) as session:
                stats_rows(session, LISTS, spans)

        def ceiling() -> None:
            with Session(engine) as session:
                session.execute(
                    select(ArchivedPost.list_name, func.count(), func.count(ArchivedPost.sender.distinct()))
                    .where(
                        ArchivedPost.archived_at >= spans[0].start, ArchivedPost.archived_at < spans[-1].end
                    )
                    .group_by(ArchivedPost.list_name)
                ).all()

        for name, run in (
            ("ceiling: one grouped count", ceiling),
            ("stats_rows, 12 weeks x 3 lists", figures),
        ):
            times = timed(run, args.repeat)
            print(f"{name}: median {statistics.median(times):.0f} ms, best {min(times):.0f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
