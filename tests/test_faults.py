"""Faults (issue 20, `pytest -m faults`): serve killed at random moments, a flapping relay, PostgreSQL
restarted under it, a full disk under SQLite — then what was promised still holds. test_crash.py kills
serve once mid-ingest; these kill it through moderation, delivery, digests and prompts too.

Delivery's bound, from listserv/outgoing: a delivery row holds ``delivery.batch_size`` recipients
(8 here, 100 shipped); results are committed row by row as they come back, over at most
``delivery.connections`` × ``UNPIPELINED_WIDTH`` lanes (a relay without PIPELINING) — so a kill can repeat
only the rows then on the wire, each copy at most once more. The test records the rows each killed serve left
``sending`` and allows a copy one more time per kill that found its row so (a requeued row can be
caught again by the next kill)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from listserv.admin.provision import initialise
from listserv.config import parse_settings
from listserv.outgoing.delivery import UNPIPELINED_WIDTH
from listserv.scheduler import acquire_lease
from listserv.store.db import make_engine
from listserv.store.models import Lease
from tests.conftest import (
    RunningForum,
    ServeProcess,
    Sink,
    SteppableClock,
    add_members,
    make_config,
    wait_for,
)
from tests.faults_support import (
    BATCH_SIZE,
    EACH,
    LIST,
    LIST_ADDRESS,
    POSTERS,
    Copy,
    FlappingRelay,
    PrivatePostgres,
    Traffic,
    approve_all,
    big_post,
    check_invariants,
    check_relay_promises,
    counts,
    deliveries_in_hand,
    due_after,
    fill,
    forum_config,
    held_count,
    in_flight,
    list_copies,
    opened,
    post_bytes,
    small_disk,
    step_until_delivered,
    stored,
    stored_states,
    try_send,
    wait_caught_up,
)

pytestmark = pytest.mark.faults


def kill_plan(db_url: str) -> tuple[int, random.Random]:
    """20 kills on SQLite; 4 on PostgreSQL (the time budget: each life costs a start of serve)."""
    seed = int(os.environ.get("LISTSERV_FAULT_SEED", random.randrange(2**32)))
    kills = 20 if db_url.startswith("sqlite") else 4
    print(f"fault seed {seed} (LISTSERV_FAULT_SEED={seed} repeats this run), {kills} kills")
    return kills, random.Random(seed)


def test_sigkill_at_random_moments_keeps_every_promise(tmp_path: Path, db_url: str, sink: Sink) -> None:
    sqlite = db_url.startswith("sqlite")
    # Both delivery paths, one per database; on SQLite's longer run digests and the prompt come due
    # mid-run (on PostgreSQL at the first tick).
    due = due_after(40) if sqlite else None
    config_file, port = forum_config(tmp_path, db_url, sink, due, personalize="on" if sqlite else "off")
    kills, rng = kill_plan(db_url)
    flying: Counter[Copy] = Counter()  # copies of rows left ``sending``, once per kill that found them
    server = ServeProcess(config_file, port).start()
    traffic = Traffic(port, sink).start()
    try:
        for kill in range(kills):
            wait_seconds = rng.uniform(0.5, 6.5)  # the scheduler's first tick comes 5 s after a start
            time.sleep(wait_seconds)
            server.signal(signal.SIGKILL)
            assert server.wait() == -signal.SIGKILL
            caught = in_flight(db_url)
            flying.update(caught)
            with opened(db_url) as session:
                state = counts(session)
            kept = stored(db_url)
            assert [mid for mid in list(traffic.acknowledged) if kept[mid] == 0] == []
            print(f"kill {kill + 1} after {wait_seconds:.1f} s: {len(caught)} copies in flight, {state}")
            server = ServeProcess(config_file, port).start()
        traffic.stop_posting()
        wait_caught_up(db_url, timeout=120)
    finally:
        traffic.stop()
        server.stop()
    lanes = 1 * UNPIPELINED_WIDTH  # delivery.connections (1 here) x UNPIPELINED_WIDTH
    figures = check_invariants(db_url, traffic, sink, flying)
    print(f"{figures}; bound per kill: {lanes} lanes x {BATCH_SIZE} recipients")
    assert figures["repeated"] <= kills * lanes * BATCH_SIZE  # only what was on the wire went twice
    assert figures["posts"] > kills  # the drill really published under the kills
    assert figures["digest_copies"] > 0 and figures["prompts"] == 3


STALL_SECONDS = 2.5  # a relay stall longer than the client's timeout (the 30 s, scaled down)
RELAY_TIMEOUT = 1.0  # delivery.relay.timeout_seconds here (60 shipped)


@pytest.fixture
def relay() -> Iterator[FlappingRelay]:
    seed = int(os.environ.get("LISTSERV_FAULT_SEED", random.randrange(2**32)))
    print(f"relay seed {seed}")
    flapping = FlappingRelay(seed, STALL_SECONDS)
    flapping.controller.start()
    yield flapping
    flapping.controller.stop()


def test_a_flapping_relay_delivers_everything_once_calm_and_backs_off(
    tmp_path: Path, relay: FlappingRelay
) -> None:
    db_url = f"sqlite:///{tmp_path / 'listserv.db'}"  # the relay's faults: one database is enough
    raw = make_config(tmp_path, db_url)
    raw["delivery"] = {
        "relay": {"host": "127.0.0.1", "port": relay.controller.port, "timeout_seconds": RELAY_TIMEOUT},
        "batch_size": BATCH_SIZE,
        "connections": 2,
        "personalize": "off",  # one transaction per row: a row is sent exactly when the relay said 250
    }
    settings = parse_settings(raw)
    engine = make_engine(db_url)
    initialise(engine, settings)
    add_members(engine, settings, *({"email": who, "lists": LIST} for who in EACH))
    clock = SteppableClock()
    clock.now = datetime.now(UTC)
    with RunningForum(settings, engine, clock) as running:
        for sender in POSTERS * 2:
            assert try_send(running.port, sender, LIST_ADDRESS, post_bytes(sender, make_msgid()))[0] == 250
        wait_for(lambda: held_count(engine) == len(POSTERS) * 2, what="the posts to be held")
        approve_all(running, engine)
        delays = step_until_delivered(running, engine, clock, relay)
    check_relay_promises(engine, relay)
    waits: dict[int, list[float]] = {}
    for attempts, minutes in delays:
        waits.setdefault(attempts, []).append(minutes)
    spans = {n: f"{min(m):.1f}-{max(m):.1f} min" for n, m in sorted(waits.items())}
    print(f"relay behaviours {dict(relay.behaviours)}; retry after n attempts: {spans}")
    assert relay.behaviours["stall"] and relay.behaviours["reset"] and relay.behaviours["defer"]
    engine.dispose()


def test_a_killed_serves_scheduler_lease_is_taken_over_at_once(db_url: str) -> None:
    """A SIGKILLed serve cannot give its lease back; a restart on the same host must not wait the lease
    out (150 s) — a serve crashing more often than that never ran a digest or a prompt."""
    engine = make_engine(db_url)
    initialise(engine, parse_settings(make_config(Path("/nonexistent"), db_url)))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process now
    living = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    host, now = socket.gethostname(), datetime.now(UTC)
    try:
        with Session(engine) as session, session.begin():
            assert acquire_lease(session, f"{host}:{living.pid}", now)
            assert not acquire_lease(session, f"{host}:{os.getpid()}", now)  # its holder lives
            assert not acquire_lease(session, "elsewhere:1", now)
        living.kill()
        living.wait()
        with Session(engine) as session, session.begin():
            assert acquire_lease(session, f"{host}:{os.getpid()}", now)  # the dead holder's, at once
            assert not acquire_lease(session, f"{host}:{dead.pid}", now)  # and now ours
            session.execute(update(Lease).values(holder=f"elsewhere:{dead.pid}"))
            assert not acquire_lease(session, f"{host}:{os.getpid()}", now)  # another host's: unknowable
    finally:
        living.kill()
        engine.dispose()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server.init()
    finally:
        server.remove()


def test_postgresql_restarted_under_ingest_and_delivery(
    tmp_path: Path, private_pg: PrivatePostgres, sink: Sink
) -> None:
    config_file, port = forum_config(tmp_path, private_pg.url, sink, personalize="off")
    # A crash while serving, not while starting: a part that cannot reach the database at its start
    # stops serve with one line (tests/test_serve_start.py), for the supervisor to start it again.
    server = ServeProcess(config_file, port).start().fully_started()
    traffic = Traffic(port, sink, pause=0.5).start()
    try:
        wait_for(lambda: len(traffic.acknowledged) >= 6, 30, "posts acknowledged")
        # Delivery claims and results commit with synchronous_commit off (store/db.relax_commit: "a power
        # loss can repeat, never lose"), so a crash of the database may undo the last ones and those
        # copies go out once more: each copy the relay had before the crash may come twice, no more.
        # The later "fast" stop is clean (it flushes the WAL): nothing sent after the crash may repeat.
        private_pg.stop("immediate")  # a crash of the database, mid-ingest
        # What the relay has once the database is down and a transaction then in flight has ended: a copy
        # sent while the stop was under way counts too (seen: a post's 20 copies sent just before, twice).
        time.sleep(1)
        flying = Counter(dict.fromkeys(list_copies(sink), 1))
        refused = len(traffic.refusals)
        wait_for(lambda: len(traffic.refusals) >= refused + 3, 30, "posts refused while the database is down")
        private_pg.start()
        wait_for(lambda: deliveries_in_hand(private_pg.url) > 0, 60, "a delivery under way")
        private_pg.stop("fast")  # a restart, mid-delivery
        time.sleep(2)
        private_pg.start()
        acknowledged = len(traffic.acknowledged)
        wait_for(lambda: len(traffic.acknowledged) > acknowledged + 3, 60, "ingress accepting again")
        traffic.stop_posting()
        wait_caught_up(private_pg.url, timeout=120)
        assert server.process is not None and server.process.poll() is None, "serve died"
    finally:
        traffic.stop()
        server.stop()
    figures = check_invariants(private_pg.url, traffic, sink, flying)
    print(f"{figures}; answers {Counter(traffic.answers)}; a refusal: {traffic.refusals[0]!r}")
    assert set(traffic.answers) <= {250, 451}  # never a 5xx, never a dropped session
    assert all("try again" in text for text in traffic.refusals)


def test_a_full_disk_under_sqlite_answers_451_and_resumes(tmp_path: Path, sink: Sink) -> None:
    with small_disk(tmp_path / "disk") as disk:
        config_file, port = forum_config(tmp_path, f"sqlite:///{disk / 'listserv.db'}", sink, data_dir=disk)
        db_url = f"sqlite:///{disk / 'listserv.db'}"
        server = ServeProcess(config_file, port).start()
        acknowledged: list[str] = []
        answers: list[tuple[int, str]] = []

        def post(number: int) -> int:
            message_id, raw = big_post(number)
            code, text = try_send(port, POSTERS[0], LIST_ADDRESS, raw)
            answers.append((code, text))
            if code == 250:
                acknowledged.append(message_id)
            return code

        try:
            assert [post(number) for number in range(3)] == [250] * 3
            filler = fill(disk)
            for number in range(3, 40):  # until the spool's next write needs room it has not
                if post(number) == 451 and sum(code == 451 for code, _ in answers) == 3:
                    break
            assert 451 in [code for code, _ in answers], f"a full disk was never refused: {answers}"
            filler.unlink()  # the operator makes room
            wait_for(lambda: post(len(answers)) == 250, 30, "posts accepted again")
            wait_for(lambda: stored_states(db_url).get("new", 0) == 0, 60, "every stored post processed")
            assert server.process is not None and server.process.poll() is None, "serve died"
        finally:
            server.stop()
        kept = stored(db_url)
        assert [mid for mid in acknowledged if kept[mid] != 1] == [], "acknowledged and not stored"
        assert set(stored_states(db_url)) == {"processed"}  # nothing failed for want of room
    refusals = {text for code, text in answers if code == 451}
    print(f"answers {Counter(code for code, _ in answers)}; refusals {refusals}")
    assert refusals == {"4.3.1 Insufficient system storage (disk full); please try again later"}
