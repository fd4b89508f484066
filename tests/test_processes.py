"""Several processes, one database: two real ``listserv serve`` processes take posts, decide and deliver;
a decision made in any process (either serve by mail, the command line) is sent at once by a wake-up
(PostgreSQL LISTEN/NOTIFY; on SQLite the wake file), not at the senders' 30 s idle sweep. And ``jobs run
--at`` a future time builds as of then but is due now."""

from __future__ import annotations

import smtplib
import time
from collections import Counter
from datetime import UTC, timedelta
from email.message import EmailMessage
from pathlib import Path

import yaml
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from listserv.config import parse_settings
from listserv.store import directory
from listserv.store.db import make_engine, utc_now
from listserv.store.models import Delivery, Held, Outbox, Topic
from listserv.weekly.calendar import iso_week, prompt_time
from tests.conftest import ServeProcess, Sink, add_members, free_port, make_config, run_cli, wait_for
from tests.test_moderation import CODE, MOD_EN

POSTER = "poster@example.org"
READERS = [f"reader{n}@example.org" for n in range(5)]
POSTS = 200
CLI_APPROVALS = 3


def configs(tmp_path: Path, db_url: str, sink: Sink) -> list[tuple[Path, int]]:
    """Two serve configs on one database and one data_dir (the site secret is shared), own ports."""
    made = []
    for name in ("a", "b"):
        raw = make_config(tmp_path, db_url)
        raw["delivery"] = {"relay": {"host": "127.0.0.1", "port": sink.controller.port}}
        raw["smtp"]["port"], raw["web"]["port"] = free_port(), free_port()
        folder = tmp_path / name
        folder.mkdir()
        config_file = folder / "config.yaml"
        config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
        made.append((config_file, raw["smtp"]["port"]))
    return made


def post(port: int, number: int) -> str:
    message = EmailMessage()
    message["From"], message["To"] = POSTER, "ta-en@forum.example.org"
    message["Subject"], message["Message-ID"] = f"Post {number}", f"<post-{number}@example.org>"
    message.set_content(f"Post number {number}.")
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.send_message(message)
    return message["Message-ID"]


def approve_by_mail(port: int, notice: EmailMessage) -> None:
    reply = EmailMessage()
    reply["From"], reply["To"] = MOD_EN, notice["Reply-To"]
    reply["Subject"] = "Re: " + notice["Subject"]
    reply.set_content("approve\n")
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.send_message(reply)


def held_notices(sink: Sink) -> list[EmailMessage]:
    return [n for n in sink.to(MOD_EN) if n["Reply-To"] and CODE.search(str(n["Subject"]))]


def list_members_of(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return [member.email for member, _ in directory.list_members(session, "ta-en")]


def held_count(engine: Engine, state: str) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Held).where(Held.state == state)) or 0


def copies(sink: Sink) -> Counter[tuple[str, str]]:
    """(Message-ID, recipient) of every list copy the relay received."""
    with sink._lock:
        return Counter(
            (str(message["Message-ID"]), rcpt)
            for _, rcpts, message in sink.messages
            if message["List-Id"]
            for rcpt in rcpts
        )


def test_two_serve_processes_moderate_and_deliver_each_post_once(
    tmp_path: Path, db_url: str, sink: Sink
) -> None:
    (config_a, port_a), (config_b, port_b) = configs(tmp_path, db_url, sink)
    assert run_cli(config_a, "init").returncode == 0
    settings = parse_settings(yaml.safe_load(config_a.read_text(encoding="utf-8")))
    engine = make_engine(settings.database.url)
    add_members(
        engine,
        settings,
        {"email": POSTER, "lists": "ta-en"},
        *({"email": r, "lists": "ta-en"} for r in READERS),
    )
    serves = [ServeProcess(config_a, port_a), ServeProcess(config_b, port_b)]
    try:
        for serve in serves:
            serve.start()
        ids = [post((port_a, port_b)[n % 2], n) for n in range(POSTS)]
        wait_for(lambda: held_count(engine, "held") == POSTS, timeout=180, what=f"{POSTS} posts held")
        wait_for(lambda: len(held_notices(sink)) >= POSTS, timeout=120, what="the moderators' notices")
        by_subject = {str(n["Subject"]): n for n in held_notices(sink)}
        assert len(by_subject) == POSTS  # one notice per post, whichever process held it
        # All but a few approved by mail, alternately through each serve; the rest from the CLI.
        for number, notice in enumerate(sorted(by_subject.values(), key=lambda n: str(n["Subject"]))):
            if number >= CLI_APPROVALS:
                approve_by_mail((port_a, port_b)[number % 2], notice)
        wait_for(
            lambda: held_count(engine, "held") == CLI_APPROVALS, timeout=180, what="the mailed approvals"
        )
        members = list_members_of(engine)
        assert {POSTER, *READERS} <= set(members)
        wanted = (POSTS - CLI_APPROVALS) * len(members)
        wait_for(lambda: len(copies(sink)) >= wanted, timeout=180, what="the approved posts delivered")
        time.sleep(1)  # let anything left settle before the timed approval
        with Session(engine) as session:
            remaining = session.scalars(select(Held.id).where(Held.state == "held").order_by(Held.id)).all()
        delays = []
        for held_id in remaining:
            before = len(copies(sink))
            result = run_cli(config_a, "approve", f"#{held_id}")
            decided = time.monotonic()
            assert result.returncode == 0, result.stderr
            wait_for(
                lambda b=before: len(copies(sink)) >= b + len(members),
                timeout=40,
                what="CLI approval sent",
            )
            delays.append(time.monotonic() - decided)
        print(f"CLI approval → relay: {', '.join(f'{d:.2f} s' for d in delays)}")
        assert max(delays) < 2.0, delays  # the contract; the idle sweep alone would take up to 30 s
        got = copies(sink)
        expected = {(mid, rcpt) for mid in ids for rcpt in members}
        assert set(got) == expected and set(got.values()) == {1}  # every member, each post, once
        for serve in serves:
            serve.stop()
            assert "Traceback" not in serve.log_text()
    finally:
        for serve in serves:
            serve.stop()
        engine.dispose()


def test_jobs_run_at_a_future_time_is_built_then_but_sent_now(serve_config: tuple[Path, int]) -> None:
    config_file, _ = serve_config
    settings = parse_settings(yaml.safe_load(config_file.read_text(encoding="utf-8")))
    timezone, when = settings.site.timezone, settings.schedule.prompt
    week = iso_week(utc_now() + timedelta(days=14), timezone)
    at = prompt_time(week, when.day, when.time, timezone) + timedelta(minutes=1)
    engine = make_engine(settings.database.url)
    add_members(engine, settings, {"email": "reader@example.org", "lists": "ta-en"})
    with Session(engine) as session, session.begin():
        session.add(Topic(room="ta", week=week, titles={"en": "Data"}, bodies={"en": "Body"}))
    before = utc_now()
    result = run_cli(config_file, "jobs", "run", "prompts", "--at", at.isoformat())
    assert result.returncode == 0, result.stderr
    try:
        with Session(engine) as session:
            rows = session.execute(select(Delivery.created_at, Delivery.next_attempt_at)).all()
            notices = session.execute(select(Outbox.created_at, Outbox.next_attempt_at)).all()
        assert rows, result.stdout
        for created, due in [*rows, *notices]:
            assert created == at.astimezone(UTC) or created < at  # built as of --at
            assert due <= utc_now() and due >= before - timedelta(seconds=1)  # but due now
    finally:
        engine.dispose()
