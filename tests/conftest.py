"""Fixtures: every storage test runs on SQLite and on a throwaway PostgreSQL database; the forum runs for
real (SMTP on 127.0.0.1, an ephemeral port) in a thread of the test process or as a subprocess."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from listserv.admin.provision import initialise
from listserv.config import Settings, parse_settings
from listserv.forum import Forum, build_parts, build_site
from listserv.store import directory
from listserv.store.db import make_engine, utc_now
from listserv.store.directory import apply_rows, check_row
from listserv.store.models import Received
from listserv.web.routes import build

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
DOMAIN = "forum.example.org"


def shipped_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One throwaway PostgreSQL database for the whole run, dropped at the end."""
    if os.environ.get("LISTSERV_TEST_PG") == "0":
        reason = "LISTSERV_TEST_PG=0: PostgreSQL half of the suite not run (unset it to run both halves)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run both halves: {reason}")  # an opt-out for a laptop, never for CI
        pytest.skip(reason)
    name = f"listserv_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            raise  # CI must run both halves
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable ({error}); set it up or LISTSERV_TEST_PG=0")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'listserv.db'}"
    url = request.getfixturevalue("pg_database")
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    return url


def make_config(tmp_path: Path, db_url: str, **overrides: Any) -> dict[str, Any]:
    raw = shipped_config()
    raw["site"]["data_dir"] = str(tmp_path / "var")
    raw["database"]["url"] = db_url
    raw["smtp"]["port"] = 0
    raw["web"]["port"] = 0
    raw.update(overrides)
    return raw


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return parse_settings(make_config(tmp_path, db_url))


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database.url)
    initialise(engine, settings)
    yield engine
    engine.dispose()


class RunningForum:
    """``Forum`` on its own event loop in a thread: the real server, reachable on 127.0.0.1."""

    def __init__(
        self, settings: Settings, engine: Engine, clock: Callable[[], datetime] = utc_now, dns: Any = None
    ) -> None:
        self.forum = Forum(settings, engine, clock, dns)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> RunningForum:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.forum.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.forum.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def port(self) -> int:
        assert self.forum.smtp_port is not None
        return self.forum.smtp_port


@pytest.fixture
def forum(settings: Settings, engine: Engine) -> Iterator[RunningForum]:
    with RunningForum(settings, engine) as running:
        yield running


def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pending_count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Received).where(Received.state == "new")) or 0


def wait_processed(engine: Engine) -> None:
    wait_for(lambda: pending_count(engine) == 0, what="the worker to process every stored message")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_cli(config_file: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "listserv", "--config", str(config_file), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config_file.parent,
    )


class ServeProcess:
    """``listserv serve`` as a real subprocess (for SIGKILL and SIGTERM tests)."""

    def __init__(self, config_file: Path, port: int) -> None:
        self.config_file = config_file
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        log = (self.config_file.parent / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-X",
                "faulthandler",
                "-m",
                "listserv",
                "--config",
                str(self.config_file),
                "serve",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.config_file.parent,
        )
        wait_for(self._accepts, timeout=20, what=f"listserv serve to listen on {self.port}")
        return self

    def fully_started(self) -> ServeProcess:
        """Every part up, web last (``Forum.start``): SMTP answers before the rest of serve is built."""
        wait_for(lambda: "web archive on" in self.log_text(), timeout=30, what="serve to start every part")
        return self

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited early: {self.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                return connection.recv(3) == b"220"
        except OSError:
            return False

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to the log
            self.process.wait(10)
            raise AssertionError(f"serve did not exit within {timeout}s:\n{self.log_text()}") from None

    def log_text(self) -> str:
        return (self.config_file.parent / "serve.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def serve_config(tmp_path: Path, db_url: str) -> tuple[Path, int]:
    """A config file for a serve subprocess on a free port, with the database initialised."""
    port = free_port()
    raw = make_config(tmp_path, db_url)
    raw["smtp"]["port"] = port
    raw["web"]["port"] = free_port()
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = run_cli(config_file, "init")
    assert result.returncode == 0, result.stderr
    return config_file, port


class SteppableClock:
    """An injected clock (after Mailman's DateFactory): tests move time instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Sink:
    """A real SMTP server on 127.0.0.1 standing in for the outgoing relay; keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.raw: list[bytes] = []
        self.defer_all = False  # answer 451 to every DATA: the relay is struggling
        self.refuse: dict[str, str] = {}  # recipient → RCPT answer, e.g. "450 4.2.1 Mailbox busy"
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_RCPT(
        self, server: object, session: object, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        if self.defer_all:
            return "451 4.3.0 Try again later"
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
            self.raw.append(envelope.content)
        return "250 OK"

    def restart(self) -> None:
        """Back on the same port after ``controller.stop()`` (a Controller cannot start twice)."""
        self.controller = Controller(self, hostname="127.0.0.1", port=self.controller.port)
        self.controller.start()

    def recipients(self) -> list[str]:
        """Every recipient of every list copy received, with repeats."""
        with self._lock:
            return [rcpt for _, rcpts, message in self.messages if message["List-Id"] for rcpt in rcpts]

    def to(self, address: str, list_copies: bool = False) -> list[EmailMessage]:
        """Personal mail to ``address`` (notices); with ``list_copies``, only the list's posts."""
        with self._lock:
            return [
                message
                for _, rcpts, message in self.messages
                if address in rcpts and (message["List-Id"] is not None) == list_copies
            ]

    def wait_to(
        self, address: str, count: int = 1, timeout: float = 15.0, list_copies: bool = False
    ) -> list[EmailMessage]:
        wait_for(
            lambda: len(self.to(address, list_copies)) >= count, timeout, f"{count} message(s) to {address}"
        )
        return self.to(address, list_copies)

    def wait_notice(self, address: str, timeout: float = 15.0) -> EmailMessage:
        """The moderation notice to ``address`` (answered through its ``-moderate+CODE`` Reply-To), not
        whatever other mail a moderator happens to receive first (a reminder, a summary)."""

        def notices() -> list[EmailMessage]:
            return [m for m in self.to(address) if "-moderate+" in str(m.get("Reply-To", ""))]

        wait_for(lambda: bool(notices()), timeout, f"a moderation notice to {address}")
        return notices()[0]


@pytest.fixture
def sink() -> Iterator[Sink]:
    running = Sink()
    running.controller.start()
    yield running
    running.controller.stop()


@pytest.fixture
def clock() -> SteppableClock:
    return SteppableClock()


@pytest.fixture
def relayed_settings(tmp_path: Path, db_url: str, sink: Sink) -> Settings:
    raw = make_config(tmp_path, db_url)
    raw["delivery"] = {"relay": {"host": "127.0.0.1", "port": sink.controller.port}}
    return parse_settings(raw)


@pytest.fixture
def relayed_engine(relayed_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(relayed_settings.database.url)
    initialise(engine, relayed_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def live(relayed_settings: Settings, relayed_engine: Engine, clock: SteppableClock) -> Iterator[RunningForum]:
    """The forum with its outgoing mail going to ``sink`` and time given by ``clock``."""
    with RunningForum(relayed_settings, relayed_engine, clock) as running:
        yield running


def add_members(engine: Engine, settings: Settings, *members: dict[str, str]) -> None:
    """Members as the CSV import would add them: ``{"email": …, "lists": "ta-fr;ta-en", …}``."""
    defaults = {"name": "", "country": "", "role": "delegate", "delivery": "each", "language": ""}
    rows = [check_row(defaults | member, settings) for member in members]
    with Session(engine) as session, session.begin():
        apply_rows(session, rows)


PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2's recommended cost takes ~0.1-1 s per hash on this machine; the tests hash hundreds."""
    monkeypatch.setattr(directory, "PASSWORDS", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def set_password(engine: Engine, address: str, password: str = PASSWORD) -> None:
    with Session(engine) as session, session.begin():
        assert directory.set_password(session, address, password), f"{address} is not a member"


class WebClient:
    """Starlette's TestClient on the real app (real database, real templates), signed in or not."""

    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], datetime] = utc_now) -> None:
        site = build_site(build_parts(settings, clock), engine)
        self.site = site
        self.app = build(site)
        # A Secure cookie only comes back over https: speak the scheme the site is configured with.
        base = "https://testserver" if settings.site.base_url.startswith("https") else "http://testserver"
        self.http = TestClient(self.app, base, raise_server_exceptions=False, follow_redirects=False)

    def get(self, path: str, **options: Any) -> Any:
        return self.http.get(path, **options)

    def csrf(self) -> str:
        """The session's CSRF token, as every page's forms carry it (the language switcher at least)."""
        page = self.http.get("/password/forgot")
        found = CSRF_FIELD.search(page.text)
        assert found, "no CSRF field on the page"
        return found.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, csrf: bool = True, **options: Any) -> Any:
        fields = dict(data or {})
        if csrf:
            fields.setdefault("csrf", self.csrf())
        return self.http.post(path, data=fields, **options)

    def sign_in(self, address: str, password: str = PASSWORD) -> WebClient:
        response = self.post("/login", {"email": address, "password": password, "next": "/"})
        assert response.status_code == 303, response.text
        return self


@pytest.fixture
def web(settings: Settings, engine: Engine) -> WebClient:
    return WebClient(settings, engine)
