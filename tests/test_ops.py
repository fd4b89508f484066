"""For the operators' monitoring: ``/metrics`` parsed by prometheus-client's own parser, its counters
matching what the test did; ``/healthz`` 200, then 503 with the reason when PostgreSQL cannot be reached
(the forum reaches the database through a TCP proxy the test cuts — the machine's PostgreSQL server is
shared and stays up), then 200 again; ``--log-format json``."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from listserv.admin.provision import initialise
from listserv.config import Settings, parse_settings
from listserv.scheduler import acquire_lease
from listserv.store.db import make_engine, utc_now
from listserv.store.models import Delivery, Held, Outbox
from tests.conftest import (
    RunningForum,
    ServeProcess,
    Sink,
    SteppableClock,
    WebClient,
    add_members,
    make_config,
    wait_for,
    wait_processed,
)
from tests.test_moderation import CODE, DELEGATE, MOD_EN, reply_to_notice, send

TOKEN = "s3cret-metrics-token-for-tests"
LIST = "ta-en@forum.example.org"
CHECKS = ("loop", "database", "scheduler", "queue")


def with_token(settings: Settings) -> Settings:
    return settings.model_copy(update={"web": settings.web.model_copy(update={"metrics_token": TOKEN})})


def scrape(web: WebClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def held(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Held)) or 0


def test_metrics_count_what_happened(
    live: RunningForum, sink: Sink, relayed_engine: Engine, relayed_settings: Settings, clock: SteppableClock
) -> None:
    add_members(relayed_engine, relayed_settings, {"email": DELEGATE, "lists": "ta-en"})
    for number in range(3):
        send(live.port, DELEGATE, LIST, f"Question {number}", "Hello all.")
    wait_for(lambda: held(relayed_engine) == 3, what="three posts held")
    notices = sorted(
        (n for n in sink.wait_to(MOD_EN, 3) if CODE.search(str(n["Subject"]))),
        key=lambda n: str(n["Subject"]),
    )
    for notice, word in zip(notices, ("approve", "reject off topic", "discard"), strict=True):
        reply_to_notice(live.port, notice, MOD_EN, word)
    send(live.port, DELEGATE, LIST, "Out of office", "Away.", Auto_Submitted="auto-replied")  # the policy
    wait_processed(relayed_engine)
    wait_for(lambda: sink.recipients() != [], what="the approved post delivered")
    wait_for(lambda: settled(relayed_engine), what="every notice sent")

    web = WebClient(with_token(relayed_settings), relayed_engine, clock)
    assert web.get("/metrics").status_code == 401
    assert web.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (
        WebClient(relayed_settings, relayed_engine, clock).get("/metrics").status_code == 404
    )  # no token set
    got = scrape(web)
    assert got[("listserv_received_total", ())] == 7  # 3 posts, 3 replies, 1 automatic
    assert got[("listserv_held_total", (("kind", "post"),))] == 3
    for name in ("approved", "rejected", "discarded"):
        assert got[(f"listserv_{name}_total", (("by", "moderator"),))] == 1, name
    assert got[("listserv_discarded_total", (("by", "policy"),))] == 1
    assert got[("listserv_approved_total", (("by", "policy"),))] == 0
    copies = [rcpts for _, rcpts, message in sink.messages if message["List-Id"] is not None]
    assert len(copies) >= 2  # personal delivery: one transaction per member
    assert got[("listserv_delivered_total", (("kind", "post"),))] == sum(len(rcpts) for rcpts in copies)
    assert got[("listserv_delivered_total", (("kind", "notice"),))] == len(sink.messages) - len(copies)
    assert got[("listserv_queue_depth", (("queue", "held"),))] == 0
    assert got[("listserv_moderation_latency_seconds_count", ())] == 3
    assert got[("listserv_delivery_latency_seconds_count", ())] == 1
    assert got[("listserv_deferred_total", ())] == 0 and got[("listserv_bounced_total", ())] == 0


def settled(engine: Engine) -> bool:
    with Session(engine) as session:
        waiting = [
            session.scalar(select(func.count()).select_from(t).where(t.state.in_(["queued", "sending"])))
            for t in (Delivery, Outbox)
        ]
    return waiting == [0, 0]


def test_healthz_names_what_failed(settings: Settings, engine: Engine) -> None:
    web = WebClient(settings, engine)
    response = web.get("/healthz")  # no serve runs: nobody holds the scheduler lease
    assert response.status_code == 503 and response.headers["content-type"] == "application/json"
    assert response.json() == {
        "status": "fail",
        "checks": {
            "loop": "ok",
            "database": "ok",
            "scheduler": "no serve process holds the scheduler lease",
            "queue": "ok",
        },
    }
    with Session(engine) as session, session.begin():
        assert acquire_lease(session, "test", utc_now())
    assert web.get("/healthz").json() == {"status": "ok", "checks": dict.fromkeys(CHECKS, "ok")}
    with Session(engine) as session, session.begin():  # due for longer than ops.max_queue_age (900 s)
        late = utc_now() - timedelta(seconds=1000)
        session.add(
            Outbox(purpose="t", mail_from="a@b.c", recipients=["x@y.z"], raw=b"x", next_attempt_at=late)
        )
    response = web.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["queue"].startswith("the oldest due mail has waited 10")


class Proxy:
    """A TCP proxy on loopback in front of PostgreSQL: ``cut()`` closes every connection and refuses
    new ones (the database is unreachable), ``mend()`` forwards again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.cut_off = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.cut_off.set()
        with self.lock:
            for connection in self.open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self.open.clear()

    def mend(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def proxied(tmp_path: Path, pg_database: str) -> Iterator[tuple[Settings, Proxy]]:
    proxy = Proxy(("127.0.0.1", 5432))
    url = pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    settings = parse_settings(make_config(tmp_path, url))
    yield settings, proxy
    proxy.close()


def test_healthz_turns_503_while_postgresql_is_unreachable_and_back(
    proxied: tuple[Settings, Proxy], tmp_path: Path
) -> None:
    settings, proxy = proxied
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(settings.model_dump(mode="json")), encoding="utf-8")
    engine = make_engine(settings.database.url)
    initialise(engine, settings)
    try:
        with RunningForum(settings, engine):
            web = WebClient(settings, engine)
            wait_for(lambda: web.get("/healthz").status_code == 200, what="healthy")
            proxy.cut()
            response = web.get("/healthz")
            assert response.status_code == 503
            assert response.json()["checks"]["database"].startswith("unreachable")
            proxy.mend()
            wait_for(lambda: web.get("/healthz").status_code == 200, timeout=30, what="healthy again")
    finally:
        engine.dispose()


def test_json_logs_are_one_object_a_line(serve_config: tuple[Path, int]) -> None:
    config_file, port = serve_config
    raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    raw["logging"] = {"format": "json"}
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    serve = ServeProcess(config_file, port).start()
    try:
        message_id = send(port, "stranger@example.net", LIST, "Hello", "Not a member.")
        wait_for(lambda: message_id in serve.log_text(), what="a log line about the post")
    finally:
        serve.stop()
    entries = [json.loads(line) for line in serve.log_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "event"} <= set(entry) for entry in entries)
    about = [entry for entry in entries if entry.get("message_id") == message_id]
    assert about and about[0]["list"] == "ta-en", about
