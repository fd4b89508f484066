"""Digest benchmark: how long ``send_digests`` takes to build and enqueue a day's digests, and its peak
memory. It prints figures and asserts nothing.

Set-up (not measured), in a temp dir: the shipped config.yaml (one room ``ta`` in en, fr, es) on SQLite, or
with ``--postgres`` on a throwaway database on 127.0.0.1:5432 (user postgres, dropped at the end);
the schema; ``--members`` (10,000) members in digest mode, daily, split across the three lists (50 / 30 /
20 %) and alternately ``mime`` and ``plain``, inserted in bulk with SQLAlchemy Core; ``--posts`` (500)
archived posts of the last 24 hours split the same way: 2–8 KB of prose in the list's language, a
third starting a thread and the rest replying in one (In-Reply-To, References, ``Re:``), one in five
``multipart/alternative`` with an HTML version.

Measured: a child process (``--measure``) imports listserv, builds the publisher as ``serve`` does, then
runs ``send_digests(session, settings, publisher, "daily", now)`` in one transaction, commit included.
Printed: the seconds and CPU seconds of that call, the child's peak RSS (``VmHWM`` from
/proc/self/status) next to its RSS before the call, the digest issues created and their sizes, the
delivery rows and recipients queued. A second child runs the same call again: it must find every key
taken and send nothing. Targets: < 20 s, peak RSS < 300 MB.

Run:   .venv/bin/python bench/digests.py [--members N] [--posts N] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from common import PROSE, cpu_seconds, describe_source, free_port, progress, rss_mb, verdict, write_config

# This script's folder is on sys.path (for ``common``); it must not hide the ``digests`` package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
NOW = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # 18:00 in Zurich, the default daily digest time
SHARES = {"ta-en": 0.5, "ta-fr": 0.3, "ta-es": 0.2}
WORDS = {
    "en": PROSE.split(),
    "fr": [
        "la",
        "délégation",
        "soutient",
        "proposition",
        "assistance",
        "technique",
        "programme",
        "budget",
        "examen",
        "bureau",
        "régional",
        "renforcement",
        "des",
        "capacités",
        "formation",
        "atelier",
        "rapport",
        "annexe",
        "paragraphe",
        "projet",
        "amendement",
        "secrétariat",
        "États",
        "membres",
        "mise",
        "en",
        "œuvre",
        "calendrier",
        "financement",
        "évaluation",
        "partenaires",
        "Genève",
    ],
    "es": [
        "la",
        "delegación",
        "apoya",
        "propuesta",
        "asistencia",
        "técnica",
        "programa",
        "presupuesto",
        "revisión",
        "oficina",
        "regional",
        "fortalecimiento",
        "de",
        "capacidades",
        "formación",
        "taller",
        "informe",
        "anexo",
        "párrafo",
        "proyecto",
        "enmienda",
        "secretaría",
        "Estados",
        "miembros",
        "aplicación",
        "calendario",
        "financiación",
        "evaluación",
        "socios",
        "Bogotá",
    ],
}
SUBJECTS = {
    "en": ["Budget review", "Regional workshop", "Training the trainers", "Draft report, annex 2"],
    "fr": ["Examen du budget", "Atelier régional", "Former les formateurs", "Projet de rapport, annexe 2"],
    "es": ["Revisión del presupuesto", "Taller regional", "Formar a los formadores", "Proyecto de informe"],
}


def prose(rng: random.Random, words: list[str], size: int) -> str:
    lines, line, total = [], "", 0
    while total < size:
        word = rng.choice(words)
        if len(line) + len(word) >= 72:
            lines.append(line)
            total += len(line.encode()) + 1
            line = ""
        line = f"{line} {word}" if line else word.capitalize()
    return "\n".join([*lines, line + ".", ""])


def compose(
    rng: random.Random, number: int, list_name: str, at: datetime, parent: dict[str, Any] | None
) -> dict[str, Any]:
    """One post as the archive row holds it (the raw bytes a mail client would have sent)."""
    language = list_name.rsplit("-", 1)[1]
    message_id = f"<bench-{number}.{secrets.token_hex(4)}@example.org>"
    subject = f"Re: {parent['root_subject']}" if parent else f"{rng.choice(SUBJECTS[language])} ({number})"
    sender = f"delegate{rng.randrange(200)}@example.org"
    text = prose(rng, WORDS[language], rng.randint(2_000, 8_000))
    head = [
        f"From: Delegate {sender[8:-12]} <{sender}>",
        f"To: {list_name}@forum.example.org",
        f"Subject: {subject}",
        f"Date: {format_datetime(at)}",
        f"Message-ID: {message_id}",
        *([f"In-Reply-To: {parent['message_id']}", f"References: {parent['message_id']}"] if parent else []),
        "MIME-Version: 1.0",
        f"Content-Language: {language}",
    ]
    if rng.random() < 0.2:
        html = "".join(f"<p>{paragraph}</p>" for paragraph in text.split("\n"))
        boundary = f"alt-{number}"
        body = (
            f"--{boundary}\n{part_head('plain')}\n{text}\n"
            f"--{boundary}\n{part_head('html')}\n<html><body>{html}</body></html>\n--{boundary}--\n"
        )
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    else:
        body = text
        head += ["Content-Type: text/plain; charset=utf-8; format=flowed", "Content-Transfer-Encoding: 8bit"]
    raw = ("\r\n".join(head) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()
    return {
        "id": number,
        "list_name": list_name,
        "message_id": message_id,
        "sender": sender,
        "subject": subject,
        "date": at,
        "raw": raw,
        "archived_at": at,
        "thread_id": parent["thread_id"] if parent else number,
        "parent_id": parent["id"] if parent else None,
        "subject_key": (parent["root_subject"] if parent else subject).lower(),
        "root_subject": parent["root_subject"] if parent else subject,
    }


def part_head(subtype: str) -> str:
    return f"Content-Type: text/{subtype}; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"


def seed(database_url: str, config: Path, members: int, posts: int) -> None:
    from sqlalchemy import insert, select

    from listserv.admin.provision import initialise
    from listserv.config import load_settings
    from listserv.store.db import make_engine
    from listserv.store.models import ArchivedPost, ListRow, Member, Subscription

    settings = load_settings(config)
    engine = make_engine(database_url)
    initialise(engine, settings)
    rng = random.Random(20261123)
    with engine.begin() as connection:
        lists = dict(connection.execute(select(ListRow.name, ListRow.id)).all())
        addresses = [f"reader{number:05d}@example.org" for number in range(members)]
        connection.execute(
            insert(Member),
            [
                {
                    "email": a,
                    "email_key": a,
                    "name": "",
                    "country": "",
                    "role": "delegate",
                    "is_chief": False,
                    "created_at": NOW,
                }
                for a in addresses
            ],
        )
        ids = connection.execute(select(Member.id).where(Member.email_key.like("reader%"))).scalars().all()
        bounds = cumulative(len(ids))
        connection.execute(
            insert(Subscription),
            [
                {
                    "member_id": member_id,
                    "list_id": lists[list_for(index, bounds)],
                    "delivery": "digest",
                    "digest_period": "daily",
                    "digest_format": ("mime", "plain")[index % 2],
                    "bounce_score": 0.0,
                    "created_at": NOW,
                }
                for index, member_id in enumerate(sorted(ids))
            ],
        )
        rows: list[dict[str, Any]] = []
        bounds = cumulative(posts)
        start = NOW - timedelta(hours=24)
        for number in range(1, posts + 1):
            list_name = list_for(number - 1, bounds)
            earlier = [row for row in rows[-60:] if row["list_name"] == list_name]
            parent = rng.choice(earlier) if earlier and rng.random() > 1 / 3 else None
            at = start + timedelta(seconds=(number - 0.5) * 86_400 / posts)
            rows.append(compose(rng, number, list_name, at, parent))
        connection.execute(
            insert(ArchivedPost), [{k: v for k, v in row.items() if k != "root_subject"} for row in rows]
        )
    engine.dispose()


def cumulative(total: int) -> list[tuple[int, str]]:
    bounds, running = [], 0.0
    for name, share in SHARES.items():
        running += share * total
        bounds.append((round(running), name))
    return bounds


def list_for(index: int, bounds: list[tuple[int, str]]) -> str:
    return next(name for bound, name in bounds if index < bound)


def measure(config: Path) -> None:
    """The child: import, build the publisher as serve does, then one timed ``send_digests``."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from digests import send_digests
    from listserv.config import load_settings
    from listserv.forum import build_parts
    from listserv.store.db import make_engine
    from listserv.store.models import Delivery, SentDigest

    settings = load_settings(config)
    engine = make_engine(settings.database.url)
    publisher = build_parts(settings).publisher
    before_mb = rss_mb(os.getpid())
    cpu, started = cpu_seconds(os.getpid()), time.perf_counter()
    with Session(engine) as session, session.begin():
        issues = send_digests(session, settings, publisher, "daily", NOW)
    seconds, cpu = time.perf_counter() - started, cpu_seconds(os.getpid()) - cpu
    peak_mb = rss_mb(os.getpid(), "VmHWM")
    with Session(engine) as session:
        sizes = session.execute(
            select(
                SentDigest.list_name, SentDigest.format, SentDigest.post_count, func.length(SentDigest.raw)
            )
            .where(SentDigest.post_count > 0)
            .order_by(SentDigest.list_name, SentDigest.format)
        ).all()
        deliveries = session.scalars(select(Delivery.recipients)).all()
    engine.dispose()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "before_mb": before_mb,
                "peak_mb": peak_mb,
                "issues": issues,
                "sizes": [list(row) for row in sizes],
                "rows": len(deliveries),
                "recipients": sum(len(r) for r in deliveries),
            }
        )
    )


def run_child(config: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--measure", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode:
        raise RuntimeError(f"the measuring process failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextmanager
def database(postgres: bool, tmp: Path):  # type: ignore[no-untyped-def]
    if not postgres:
        yield f"sqlite:///{tmp / 'listserv.db'}"
        return
    import psycopg

    name = f"listserv_bench_digests_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(args: argparse.Namespace, label: str, first: dict[str, Any], again: dict[str, Any]) -> None:
    print(
        f"digests: {args.members:,} daily digest members on ta-en/fr/es (mime and plain), {args.posts} posts"
    )
    print(f"database: {label}; {describe_source()}")
    print(
        f"send_digests(daily): {first['seconds']:.2f} s ({first['cpu']:.2f} s CPU), "
        f"{first['issues']} issues, {first['rows']} delivery rows, {first['recipients']:,} recipients"
    )
    for list_name, fmt, count, size in first["sizes"]:
        print(f"  {list_name} {fmt:<5}: {count:>3} posts, {size / 1024:,.0f} KB")
    print(f"peak RSS (VmHWM) {first['peak_mb']:.0f} MB; {first['before_mb']:.0f} MB before the call")
    print(
        f"second run: {again['seconds']:.2f} s, {again['issues']} issues, "
        f"{again['rows'] - first['rows']} new delivery rows (every key already taken)"
    )
    fast, small = verdict(first["seconds"] < 20), verdict(first["peak_mb"] < 300)
    print(f"target < 20 s: {fast}; peak RSS < 300 MB: {small}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--postgres", action="store_true", help="a throwaway database on 127.0.0.1:5432")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    with tempfile.TemporaryDirectory(prefix="listserv-bench-digests-") as name:
        tmp = Path(name)
        with database(args.postgres, tmp) as url:
            config = write_config(tmp, url, free_port())
            progress(f"seeding {args.members:,} members and {args.posts} posts")
            started = time.perf_counter()
            seed(url, config, args.members, args.posts)
            progress(f"seeded in {time.perf_counter() - started:.1f} s; measuring send_digests in a child")
            first = run_child(config)
            again = run_child(config)
            report(args, "PostgreSQL" if args.postgres else "SQLite (WAL, synchronous=FULL)", first, again)


if __name__ == "__main__":
    main()
