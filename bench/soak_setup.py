"""The soak's forum: config, database (SQLite in the temp dir or a throwaway PostgreSQL database), members,
the week's topic, the reader who signs in, and the schedule that makes the digests and the prompt due in
the middle of the run."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from common import free_port, listserv_command, write_config
from soak_sink import TOPIC_TITLE

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
READER, PASSWORD = "soak-reader@example.org", "soak-reader-password"
CSV_HEADER = "email,name,country,lists,role,delivery,language"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class Run:
    config: Path
    url: str
    smtp_port: int
    web_base: str
    posters: list[str]
    recipients: int  # of each approved post: ta-en's subscriptions in delivery each
    prompt_recipients: int  # every each subscription of the room's lists


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    """None for SQLite (a file in the temp dir), else the URL of a PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    name = f"listserv_soak_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def listserv_blocks(sink_port: int) -> dict[str, Any]:
    """Batch mode (one copy per 100 recipients, as fanout.py's scenarios): personal copies of every
    approved post would be 5,000 transactions a post, beyond what a Python sink takes on 2 shared cores."""
    relay = {"host": "127.0.0.1", "port": sink_port}
    return {"delivery": {"relay": relay, "batch_size": 100, "connections": 4, "personalize": "off"}}


def edit_config(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(config)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")


def cli(config: Path, *words: str) -> str:
    done = subprocess.run(listserv_command(config, *words), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"listserv {' '.join(words)} failed: {done.stderr.strip()[-1500:]}")
    return done.stdout


def roster(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """CSV rows: the members (each), the digest readers of both periods, the reader (delivery none)."""
    members = [f"member{number:05d}@members.example.org" for number in range(args.members)]
    rows = [f"{address},Member {number},CL,ta-en,delegate,each,en" for number, address in enumerate(members)]
    for period in ("daily", "weekly"):
        rows += [
            f"{period}{number:04d}@members.example.org,Reader {number},CL,ta-en,delegate,digest,en"
            for number in range(args.digest_members)
        ]
    rows.append(f"{READER},Soak Reader,CL,ta-en,delegate,none,en")
    return members, rows


def prepare(tmp: Path, url: str | None, sink_port: int, args: argparse.Namespace) -> Run:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from listserv.store import directory

    smtp_port, url = free_port(), url or f"sqlite:///{tmp / 'listserv.db'}"
    config = write_config(tmp, url, smtp_port, listserv_blocks(sink_port))
    edit_config(config, lambda c: c["site"].update(timezone="UTC"))
    cli(config, "init")
    members, rows = roster(args)
    (tmp / "members.csv").write_text("\n".join([CSV_HEADER, *rows]) + "\n", encoding="utf-8")
    cli(config, "members", "import", "--no-welcome", str(tmp / "members.csv"))
    week = datetime.now(UTC).isocalendar()
    topic = {
        "room": "ta",
        "week": f"{week.year}-W{week.week:02d}",
        "titles": {lang: f"{TOPIC_TITLE} ({lang})" for lang in ("en", "fr", "es")},
        "bodies": {lang: "What has worked for you this week?\n" for lang in ("en", "fr", "es")},
    }
    (tmp / "topic.yaml").write_text(yaml.safe_dump(topic), encoding="utf-8")
    cli(config, "topics", "add", str(tmp / "topic.yaml"))
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        session.execute(
            text(
                "UPDATE subscription SET digest_period = 'weekly' WHERE member_id IN "
                "(SELECT id FROM member WHERE email LIKE 'weekly%')"
            )
        )
        directory.set_password(session, READER, PASSWORD)
    each = (
        "SELECT count(*) FROM subscription JOIN mailing_list ON mailing_list.id = subscription.list_id "
        "WHERE subscription.delivery = 'each'"
    )
    with engine.connect() as connection:
        recipients = connection.scalar(text(each + " AND mailing_list.name = 'ta-en'"))
        everyone = connection.scalar(text(each))
    engine.dispose()
    web_port = yaml.safe_load(config.read_text(encoding="utf-8"))["web"]["port"]
    posters = members[: args.posters]
    return Run(
        config, url, smtp_port, f"http://127.0.0.1:{web_port}", posters, recipients or 0, everyone or 0
    )


def schedule_mid_run(run: Run, minutes: float) -> str:
    """The daily and weekly digests and this week's prompt due at the first whole minute after the
    middle of the run (the scheduler ticks every minute); returns what was set."""
    mid = datetime.now(UTC) + timedelta(seconds=minutes * 30 + 5)
    due = (mid + timedelta(minutes=1)).replace(second=0, microsecond=0)
    clock, day = due.strftime("%H:%M"), WEEKDAYS[due.weekday()]

    def change(config: dict[str, Any]) -> None:
        config["schedule"] = {
            "prompt": {"day": day, "time": clock},
            "digest": {"daily": clock, "weekly": {"day": day, "time": clock}},
        }

    edit_config(run.config, change)
    return f"digests and prompt due {day} {clock} UTC"


def sign_in(base: str) -> Callable[[], Any]:
    """A factory of httpx2 clients sharing one signed-in session (the form's CSRF token comes with the
    session cookie from any page with a form)."""
    import httpx2

    with httpx2.Client(base_url=base, follow_redirects=False, timeout=60) as client:
        token = None
        for _ in range(200):  # the web side may come up a little after the SMTP banner
            with contextlib.suppress(httpx2.HTTPError):
                token = re.search(r'name="csrf" value="([^"]+)"', client.get("/password/forgot").text)
            if token:
                break
            time.sleep(0.1)
        if token is None:
            raise RuntimeError("no CSRF token on /password/forgot")
        form = {"email": READER, "password": PASSWORD, "csrf": token.group(1), "next": "/lists/"}
        answer = client.post("/login", data=form)
        if answer.status_code != 303:
            raise RuntimeError(f"sign-in answered {answer.status_code}, not 303")
        cookies = httpx2.Cookies(client.cookies)
    return lambda: httpx2.Client(base_url=base, cookies=cookies, follow_redirects=False, timeout=60)
