"""The machinery of tests/test_faults.py: a running forum with a real sink and `each` members, posters
and a moderator who answers notices by reply code, all retrying across faults; what was in flight at
each fault; and the invariants checked at the end."""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import os
import random
import re
import shutil
import smtplib
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
import yaml
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from listserv.config import parse_settings
from listserv.outgoing.transport import FIRST_RETRY_SECONDS
from listserv.store.db import make_engine
from listserv.store.models import (
    ArchivedPost,
    Audit,
    Delivery,
    Held,
    Outbox,
    Received,
    SentDigest,
    SentPrompt,
    Topic,
)
from tests.conftest import (
    RunningForum,
    Sink,
    SteppableClock,
    add_members,
    free_port,
    make_config,
    run_cli,
    wait_for,
)

LIST = "ta-en"
LIST_ADDRESS = "ta-en@forum.example.org"
MODERATOR = "mod-en@forum.example.org"
CODE = re.compile(r"\[#([0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z]{5})\]")
EACH = [f"each{number:02d}@example.org" for number in range(20)]
DIGEST = [f"digest{number}@example.org" for number in range(3)]
POSTERS = EACH[:3]
BATCH_SIZE = 8  # delivery.batch_size here: recipients per delivery row (the shipped default is 100)


def due_after(seconds: float) -> datetime:
    """The first whole minute at least ``seconds`` from now (schedule times have minutes, no seconds)."""
    soon = datetime.now(UTC) + timedelta(seconds=seconds + 59)
    return soon.replace(second=0, microsecond=0)


def forum_config(
    tmp_path: Path,
    db_url: str,
    sink: Sink,
    due: datetime | None = None,
    data_dir: Path | None = None,
    **delivery: Any,
) -> tuple[Path, int]:
    """A serve config relaying to ``sink``, with the daily and weekly digests and this week's prompt
    due at ``due`` (None: at once) on the site's UTC clock; the database initialised, members and a
    topic added."""
    port = free_port()
    raw = make_config(tmp_path, db_url)
    due = due or datetime.now(UTC).replace(hour=0, minute=0)
    today, at = due.strftime("%a").lower(), due.strftime("%H:%M")
    raw["site"]["timezone"] = "UTC"
    raw["site"]["data_dir"] = str(data_dir or tmp_path / "var")
    raw["smtp"]["port"] = port
    raw["web"]["port"] = free_port()
    raw["delivery"] = {
        "relay": {"host": "127.0.0.1", "port": sink.controller.port},
        "batch_size": BATCH_SIZE,
        "connections": 1,
        **delivery,
    }
    raw["schedule"] = {
        "prompt": {"day": today, "time": at},
        "prompt_grace_hours": 48,
        "digest": {"daily": at, "weekly": {"day": today, "time": at}},
    }
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = run_cli(config_file, "init")
    assert result.returncode == 0, result.stderr
    settings = parse_settings(raw)
    engine = make_engine(db_url)
    add_members(engine, settings, *({"email": who, "lists": LIST} for who in EACH))
    add_members(engine, settings, *({"email": who, "lists": LIST, "delivery": "digest"} for who in DIGEST))
    week = datetime.now(UTC).strftime("%G-W%V")
    titles = {"en": "Customs data", "fr": "Données douanières", "es": "Datos aduaneros"}
    with Session(engine) as session, session.begin():
        session.add(Topic(room="ta", week=week, titles=titles, bodies={k: f"Body {k}" for k in titles}))
    engine.dispose()
    return config_file, port


def post_bytes(sender: str, message_id: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {LIST_ADDRESS}\r\nSubject: Fault drill {message_id[1:9]}\r\n"
        f"Message-ID: {message_id}\r\n\r\nA few words about customs data.\r\n"
    ).encode()


def try_send(port: int, sender: str, rcpt: str, raw: bytes) -> tuple[int, str]:
    """One SMTP transaction; the final answer's code and text, or (0, why) when the server was away."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail(sender, [rcpt], raw)
            return 250, ""
    except smtplib.SMTPDataError as error:
        return error.smtp_code, error.smtp_error.decode(errors="replace")
    except smtplib.SMTPResponseException as error:
        return error.smtp_code, str(error.smtp_error)
    except (smtplib.SMTPException, OSError) as error:
        return 0, f"{type(error).__name__}: {error}"


@dataclass
class Traffic:
    """Posters and a moderator in threads, until ``stop()``: every answer the forum gave is kept."""

    port: int
    sink: Sink
    pause: float = 1.5  # between one poster's posts: 2 posts a second from the three
    acknowledged: list[str] = field(default_factory=list)  # Message-IDs answered 250
    answers: list[int] = field(default_factory=list)  # every post's answer code (0: no server)
    refusals: list[str] = field(default_factory=list)  # the texts of 4xx answers
    approved_codes: list[str] = field(default_factory=list)  # reply codes whose reply was answered 250
    _stopping: threading.Event = field(default_factory=threading.Event)  # posters stop
    _finished: threading.Event = field(default_factory=threading.Event)  # the moderator stops
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        self._threads = [
            threading.Thread(target=self._post, args=(sender,), daemon=True) for sender in POSTERS
        ] + [threading.Thread(target=self._moderate, daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop_posting(self) -> None:
        """Posters stop and their last transaction ends; the moderator goes on."""
        self._stopping.set()
        for thread in self._threads[:-1]:
            thread.join(30)

    def stop(self) -> None:
        self._stopping.set()
        self._finished.set()
        for thread in self._threads:
            thread.join(30)

    def _post(self, sender: str) -> None:
        number = 0
        while not self._stopping.is_set():
            number += 1
            message_id = f"<{sender.split('@')[0]}-{number:05d}@example.org>"
            code, text = try_send(self.port, sender, LIST_ADDRESS, post_bytes(sender, message_id))
            self.answers.append(code)
            if code == 250:
                self.acknowledged.append(message_id)
            elif 400 <= code < 500:
                self.refusals.append(text)
            time.sleep(self.pause if code == 250 else 0.2)

    def _moderate(self) -> None:
        """Approve each held post once, by replying to its notice; retry a reply until answered 250.
        Runs until stopped and nothing is left unanswered."""
        answered: set[str] = set()
        while True:
            waiting = [
                (code, notice)
                for notice in self.sink.to(MODERATOR)
                for code in CODE.findall(str(notice["Subject"]))
                if code not in answered
            ]
            if not waiting and self._finished.is_set():
                return
            for code, notice in waiting:
                reply = moderator_reply(notice)
                while try_send(self.port, MODERATOR, str(notice["Reply-To"]), reply)[0] != 250:
                    if self._finished.is_set():
                        return
                    time.sleep(0.2)
                answered.add(code)
                self.approved_codes.append(code)
            time.sleep(0.1)


def moderator_reply(notice: EmailMessage) -> bytes:
    reply = EmailMessage()
    reply["From"] = MODERATOR
    reply["To"] = str(notice["Reply-To"])
    reply["Subject"] = "Re: " + str(notice["Subject"])
    reply["Message-ID"] = email.utils.make_msgid(domain="forum.example.org")
    reply.set_content("approve\n")
    return reply.as_bytes(policy=email.policy.SMTP)


@contextmanager
def opened(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


Copy = tuple[str, str]  # (Message-ID of a list copy, recipient)


def in_flight(db_url: str) -> set[Copy]:
    """Copies of the rows a dead serve left ``sending``: the relay may have taken them, unrecorded."""
    with opened(db_url) as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.state == "sending")))
        ids = message_ids(session)
        return {(ids[source(row)], rcpt) for row in rows for rcpt in row.recipients}


def source(row: Delivery) -> tuple[str, int]:
    return ("post", row.post_id) if row.post_id is not None else ("digest", row.digest_id or 0)


def message_ids(session: Session) -> dict[tuple[str, int], str]:
    """Each archived post's and digest issue's Message-ID, by the source a delivery row names."""
    ids = {("post", i): mid for i, mid in session.execute(select(ArchivedPost.id, ArchivedPost.message_id))}
    for i, raw in session.execute(select(SentDigest.id, SentDigest.raw).where(SentDigest.raw.is_not(None))):
        ids[("digest", i)] = str(email.message_from_bytes(raw)["Message-ID"]).strip()
    return ids


def counts(session: Session) -> dict[str, int]:
    """What is still to do, by kind (all 0 when the forum has caught up)."""

    def count(model: Any, *where: Any) -> int:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

    return {
        "new": count(Received, Received.state == "new"),
        "held": count(Held, Held.state == "held"),
        "outbox": count(Outbox, Outbox.state == "queued"),
        "deliveries": count(Delivery, Delivery.state.in_(["queued", "sending"])),
        "digests": count(SentDigest),
        "digests_with_posts": count(SentDigest, SentDigest.post_count > 0),
        "prompts": count(SentPrompt),
    }


def deliveries_in_hand(db_url: str) -> int:
    with opened(db_url) as session:
        return counts(session)["deliveries"]


def caught_up(db_url: str) -> Callable[[], bool]:
    def check() -> bool:
        with opened(db_url) as session:
            left = counts(session)
        todo = left["new"] + left["held"] + left["outbox"] + left["deliveries"]
        return todo == 0 and left["digests"] > 0 and left["prompts"] > 0

    return check


def wait_caught_up(db_url: str, timeout: float) -> None:
    try:
        wait_for(caught_up(db_url), timeout, "the forum to process, decide and deliver everything")
    except AssertionError:
        with opened(db_url) as session:
            raise AssertionError(f"not caught up in {timeout} s: {counts(session)}") from None


def stored_states(db_url: str) -> dict[str, int]:
    with opened(db_url) as session:
        rows = session.execute(select(Received.state, func.count()).group_by(Received.state))
        return {state: number for state, number in rows}


def stored(db_url: str) -> Counter[str]:
    with opened(db_url) as session:
        return Counter(session.scalars(select(Received.message_id)))


def list_copies(sink: Sink) -> Counter[Copy]:
    """Every list copy the sink answered 250 to, by (Message-ID, recipient), with repeats."""
    with sink._lock:
        received = list(sink.messages)
    return Counter(
        (str(message["Message-ID"]).strip(), rcpt)
        for _, rcpts, message in received
        if message["List-Id"] is not None
        for rcpt in rcpts
    )


def check_invariants(db_url: str, traffic: Traffic, sink: Sink, flying: Counter[Copy]) -> dict[str, int]:
    """The promises after the faults; returns figures for the test's printout."""
    kept = stored(db_url)
    assert [mid for mid in traffic.acknowledged if kept[mid] == 0] == [], "acknowledged and not stored"
    copies = list_copies(sink)
    with opened(db_url) as session:
        ids = message_ids(session)
        planned = {
            (ids[source(row)], rcpt) for row in session.scalars(select(Delivery)) for rcpt in row.recipients
        }
        posts = set(session.scalars(select(ArchivedPost.message_id).where(ArchivedPost.list_name == LIST)))
        held = list(session.scalars(select(Held)))
        decided = Counter(
            session.scalars(select(Audit.held_id).where(Audit.action == "approve", Audit.result == "decided"))
        )
        prompts = list(session.scalars(select(SentPrompt.message_id)))
        issues = list(
            session.execute(
                select(SentDigest.list_name, SentDigest.period, SentDigest.format, SentDigest.key)
            )
        )
    # every acknowledged post was held, approved once, archived
    assert {h.message_id for h in held} >= set(traffic.acknowledged)
    assert [h.message_id for h in held if h.state != "approved"] == [], "a decision was lost"
    assert [h.id for h in held if decided[h.id] != 1] == [], "a decision lost or taken twice"
    assert set(traffic.acknowledged) <= posts
    # every approved post (and prompt, and digest issue) reaches every recipient it was planned for
    each = set(EACH)
    unplanned = {mid: each - {rcpt for m, rcpt in planned if m == mid} for mid in posts}
    assert {mid: who for mid, who in unplanned.items() if who} == {}, "not planned for every `each` member"
    assert [pair for pair in planned if copies[pair] == 0] == [], "a planned copy never reached the relay"
    # once more at most for each kill that found the copy in flight (a row may be caught twice running)
    repeated = {pair: n for pair, n in copies.items() if n > 1 + flying[pair]}
    assert repeated == {}, f"copies repeated beyond the rows in flight: {sorted(repeated.items())[:20]}"
    assert len(prompts) == len(set(prompts)) and len(issues) == len(set(issues))
    return {
        "acknowledged": len(traffic.acknowledged),
        "posts": len(posts),
        "copies": sum(copies.values()),
        "repeated": sum(n - 1 for n in copies.values() if n > 1),
        "in_flight_at_kills": sum(flying.values()),
        "prompts": len(prompts),
        "digest_issues": len(issues),
        "digest_copies": sum(n for (mid, _), n in copies.items() if mid.startswith("<digest.")),
    }


class FlappingRelay:
    """The relay at its worst, at random (seeded) until ``calm()``: 451 to DATA, the connection reset
    after DATA, or a stall longer than the client's timeout (then 250, as a slow relay would: the copy
    went, the client could not know). Keeps every copy it answered 250 to."""

    def __init__(self, seed: int, stall_seconds: float) -> None:
        self._rng = random.Random(seed)
        self._stall = stall_seconds
        self._flapping = True
        self.accepted: Counter[Copy] = Counter()
        self.behaviours: Counter[str] = Counter()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    def calm(self) -> None:
        self._flapping = False

    @property
    def attempts(self) -> int:
        return sum(self.behaviours.values())

    async def handle_DATA(self, server: Any, session: object, envelope: Any) -> str:
        behaviour = self._rng.choice(["ok", "defer", "reset", "stall"]) if self._flapping else "ok"
        self.behaviours[behaviour] += 1
        if behaviour == "defer":
            return "451 4.3.0 Try again later"
        if behaviour == "reset":
            server.transport.abort()  # no answer at all: the client sees the connection drop
            return "421 4.3.0 Gone"
        if behaviour == "stall":
            await asyncio.sleep(self._stall)
        message = email.message_from_bytes(envelope.content)
        for rcpt in envelope.rcpt_tos:
            self.accepted[(str(message["Message-ID"]).strip(), rcpt)] += 1
        return "250 OK"


def held_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Held).where(Held.state == "held")) or 0


def approve_all(running: RunningForum, engine: Engine) -> None:
    """The moderator approves every held post, as the command line does (the decision's own path)."""
    moderation = running.forum.parts.moderation
    with Session(engine) as session, session.begin():
        for held in session.scalars(select(Held).where(Held.state == "held")):
            assert moderation.decide(session, held, "approve", MODERATOR, "cli").result == "decided"
    running.forum.deliverer.background.wake()
    running.forum.outbox.background.wake()


def unsent(engine: Engine) -> list[Delivery | Outbox]:
    """List copies and notices not yet taken by the relay (both retried with the same backoff)."""
    with Session(engine) as session:
        rows: list[Delivery | Outbox] = list(
            session.scalars(select(Delivery).where(Delivery.state != "sent"))
        )
        return rows + list(session.scalars(select(Outbox).where(Outbox.state != "sent")))


def attempts_of(rows: list[Delivery | Outbox]) -> dict[tuple[str, int], int]:
    return {(type(row).__name__, row.id): row.attempts for row in rows}


def nothing_due(engine: Engine, now: datetime) -> bool:
    """The round is over: no row in hand, none due now."""
    return all(row.state == "queued" and row.next_attempt_at > now for row in unsent(engine))


def step_until_delivered(
    running: RunningForum, engine: Engine, clock: SteppableClock, relay: FlappingRelay, flaps: int = 4
) -> list[tuple[int, float]]:
    """Let each round of attempts end, check that nothing is tried again before its backoff, then move
    the clock to the next retry; the relay calms down after ``flaps`` rounds. Returns every deferral
    seen as (attempts so far, minutes until the retry)."""
    deferrals: list[tuple[int, float]] = []
    for round_number in range(12):
        wait_for(lambda: nothing_due(engine, clock.now), 60, "every due row to be tried")
        waiting = unsent(engine)
        if not waiting:
            return deferrals
        assert [row.id for row in waiting if row.state != "queued"] == [], "a row failed for good"
        for row in waiting:
            delay = (row.next_attempt_at - clock.now).total_seconds()
            deferrals.append((row.attempts, delay / 60))
            # backoff(attempts - 1): 1 min, 2, 4 … ±20 %, counted from this round's clock
            assert delay >= 0.8 * FIRST_RETRY_SECONDS * 2 ** (row.attempts - 1) - 1, (row.attempts, delay)
        # The clock stands still: none of these rows may be tried again. (Counted per row, not at the
        # relay: a scheduler tick may queue a new notice meanwhile, and that one is due at once.)
        tried = attempts_of(waiting)
        time.sleep(1.0)
        now_tried = attempts_of(unsent(engine))  # a row sent meanwhile is missing here: also a retry
        assert {key: now_tried.get(key) for key in tried} == tried, (
            "a deferred row was retried before its time"
        )
        if round_number + 1 == flaps:
            relay.calm()
        clock.now = max([row.next_attempt_at for row in waiting] + [clock.now + timedelta(hours=1)])
        running.forum.deliverer.background.wake()
        running.forum.outbox.background.wake()
    raise AssertionError(f"still undelivered after 12 rounds: {unsent(engine)}")


def check_relay_promises(engine: Engine, relay: FlappingRelay) -> None:
    """Every row is sent, and sent only if the relay answered 250 for each of its recipients."""
    with Session(engine) as session:
        rows = list(session.scalars(select(Delivery)))
        ids = message_ids(session)
        posts = list(session.scalars(select(ArchivedPost.message_id)))
    assert rows and all(row.state == "sent" for row in rows)
    claimed = {(ids[source(row)], rcpt) for row in rows for rcpt in row.recipients}
    assert [pair for pair in claimed if relay.accepted[pair] == 0] == [], "marked sent, never accepted"
    assert {(mid, rcpt) for mid in posts for rcpt in EACH} <= claimed


class PrivatePostgres:
    """A PostgreSQL server of our own (initdb in a temporary directory, a free loopback port), run as
    the ``postgres`` user, so that it can be stopped and restarted: never the shared one on 5432."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            unable(
                "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (Debian's postgresql package):"
                " the private instance of the restart test cannot run"
            )
        self.bin = found[-1].parent
        self.port = free_port()
        self.dir = Path(
            tempfile.mkdtemp(prefix="listserv-pg-")
        )  # /tmp: readable by postgres, unlike tmp_path
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/listserv"

    def _as_postgres(self, *command: str) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{command[0]} failed: {result.stdout}{result.stderr}"

    def init(self) -> PrivatePostgres:
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as admin:
            admin.execute("CREATE DATABASE listserv")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


def unable(reason: str) -> NoReturn:
    """A fault this machine cannot stage: skipped with the reason, but CI must stage every one."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the faults tests: {reason}")
    pytest.skip(reason)


@contextmanager
def small_disk(folder: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``folder``: a disk that can be filled without filling the machine's."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        unable(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); run as root for the full-disk test"
        )
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)  # still busy: detach


def fill(folder: Path) -> Path:
    """Write a file until the disk has no room left; returns it (delete it to give the room back)."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 20
        while size:  # unbuffered writes, halving the size when one no longer fits
            try:
                os.write(descriptor, b"\0" * size)
            except OSError:
                size //= 2
    finally:
        os.close(descriptor)
    return filler


def big_post(number: int) -> tuple[str, bytes]:
    message_id = f"<disk-{number}@example.org>"
    return message_id, post_bytes(POSTERS[0], message_id) + b"Words about customs data.\r\n" * 8000
