"""``listserv serve``'s staged start (``cli/serve.py``): the SMTP side accepts and stores mail first, then
the rest of the process comes up — the worker processes what came in meanwhile, the web answers — and a
part that cannot start stops the whole of serve with one clear line, never leaving it half running."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import httpx2
import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from listserv.store.db import make_engine
from listserv.store.models import Received
from tests.conftest import ServeProcess, run_cli, wait_for


def web_answers(base: str) -> bool:
    try:
        with httpx2.Client(base_url=base, trust_env=False, timeout=10) as client:
            return client.get("/healthz").status_code in (200, 503)  # 503: no lease yet, still honest
    except httpx2.TransportError:
        return False


def test_serve_answers_smtp_then_serves_the_web(serve_config: tuple[Path, int]) -> None:
    config_file, port = serve_config
    raw = yaml.safe_load(config_file.read_text())
    serve = ServeProcess(config_file, port).start()  # returns at the first 220
    try:
        message = EmailMessage()
        message["From"], message["To"] = "someone@example.org", "ta-en@forum.example.org"
        message["Subject"], message["Message-ID"] = "Early", "<early@example.org>"
        message.set_content("Sent as soon as serve greeted.")
        with smtplib.SMTP("127.0.0.1", port) as client:
            assert client.send_message(message) == {}  # 250: stored, whatever else is still starting
        base = f"http://127.0.0.1:{raw['web']['port']}"
        wait_for(lambda: web_answers(base), what="the web after the SMTP side")
        with httpx2.Client(base_url=base, trust_env=False, timeout=30) as client:
            page = client.get("/login")
            assert page.status_code == 200 and 'name="csrf"' in page.text
        engine = make_engine(raw["database"]["url"])
        try:

            def processed() -> bool:
                with Session(engine) as session:
                    query = select(func.count()).where(Received.state != "new")
                    return session.scalar(query.select_from(Received)) == 1

            wait_for(processed, what="the worker to take the message stored before it started")
        finally:
            engine.dispose()
        serve.signal(signal.SIGTERM)
        assert serve.wait() == 0
        log = serve.log_text()
        assert log.index("SMTP accepting on") < log.index("web archive on http://")
        assert "Traceback" not in log
    finally:
        serve.stop()


def test_a_part_that_cannot_start_stops_serve_with_one_line(serve_config: tuple[Path, int]) -> None:
    config_file, port = serve_config
    raw = yaml.safe_load(config_file.read_text())
    with socket.socket() as taken:  # the web's port, held by someone else
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", raw["web"]["port"]))
        taken.listen()
        result = run_cli(config_file, "serve")  # returns: nothing is left running
    assert result.returncode == 1
    web = f"127.0.0.1:{raw['web']['port']}"
    expected = f"error: serve could not start: the web archive cannot listen on {web}"
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    with socket.socket() as probe:  # serve's SMTP port was closed with it
        probe.bind(("127.0.0.1", port))


def test_a_file_of_a_later_part_that_cannot_be_read_stops_serve(serve_config: tuple[Path, int]) -> None:
    """The relay's password is read when the senders are built, after the door has opened."""
    config_file, port = serve_config
    raw = yaml.safe_load(config_file.read_text())
    relay = {"host": "127.0.0.1", "port": 2525, "username": "listserv", "password_file": "nowhere"}
    raw["delivery"]["relay"] = relay
    config_file.write_text(yaml.safe_dump(raw))
    result = run_cli(config_file, "serve")
    assert result.returncode == 1
    assert "error: cannot read delivery.relay.password_file" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


# Loaded at first use, not by an idle serve (issue 18: idle RSS < 80 MB): what each would cost it.
NOT_AT_IDLE = {
    "sqlalchemy.dialects.postgresql": "PostgreSQL's dialects, on SQLite (~2 MB)",
    "psycopg": "the PostgreSQL driver, on SQLite (~9 MB)",
    "nh3": "the HTML sanitiser, until HTML mail is shown (2.5 MB)",
    "flanker.mime": "flanker's MIME package (webob, chardet, tld: ~12 MB); only its address parser is used",
    "PIL": "Pillow, until a report chart is drawn",
}


def test_an_idle_serve_on_sqlite_imports_nothing_it_loads_at_first_use() -> None:
    code = "import sys, listserv.cli.serve, listserv.forum; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = set(result.stdout.split())
    assert "listserv.forum" in loaded, result.stderr
    assert {name: why for name, why in NOT_AT_IDLE.items() if name in loaded} == {}
